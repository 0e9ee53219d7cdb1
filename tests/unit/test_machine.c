/*
 * test_machine — the router's state machine, in process: a table of rows
 * (initial state, input) -> (new state, effects), each run against its own
 * temporary LMDB with the real router modules (turns, handoff, evtable,
 * purge, outbox, batch), no processes and no sockets.
 *
 * A row names a given state, built by applying earlier inputs through the
 * same entry points (each in its batch, committed, its effects carried out
 * into dispatch as router.c does), optionally adjusted by a small prep
 * function that writes through the store API. Then the row's input is
 * applied in one batch (batch_begin, the entry point, batch_commit, inside
 * metrics_stage_begin/end as router.c wraps a batch) and the row's
 * expectations are checked:
 *   - the effects collected in b->fx, in order, rendered as text:
 *       ACK:<status>            an acknowledgement (OK, DUPLICATE, FAILED, BUSY)
 *       ADD:<kind>[:<op>]       a new job (op of flex jobs, "ai" for AI answers)
 *                               "+delay" when it must not start yet, "/tmpl" for a template send
 *       DONE:<kind>[:<op>]      a finished job
 *       RETRY:<kind>[:<op>]#n   a job put back for a retry, n its attempts now
 *   - the conversation's mode (or that it does not exist), key fields, the
 *     timeline entries and history turns the input added, the pending turns,
 *     the first send job's body and the first Flex job's shape;
 *   - always: every FX_ADD/FX_RETRY job is in the store with its kind and
 *     conversation, and every FX_DONE job is gone (a store write is paired
 *     with its effect, router/batch.h).
 *
 * Where the code and the README read differently, the row documents what
 * the code does now, with a comment saying so.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "clock.h"
#include "log.h"
#include "testenv.h"
#include "xalloc.h"

#define CUST "whatsapp:+14155550100"
#define BIZ "whatsapp:+14155238886"
#define KEY CUST "|" BIZ
#define SM1 "SM00000000000000000000000000000001"
#define SM2 "SM00000000000000000000000000000002"
#define SM3 "SM00000000000000000000000000000003"
#define SMOUT1 "SM0000000000000000000000000000aa01"
#define IM1 "IM00000000000000000000000000000001"
#define IM2 "IM00000000000000000000000000000002"
#define CH1 "CH00000000000000000000000000000001"
#define CH9 "CH00000000000000000000000000000009"
#define MB1 "MB00000000000000000000000000000001"
#define KD1 "KD00000000000000000000000000000001"
#define UO1 "UO00000000000000000000000000000001"
#define WT1 "WT00000000000000000000000000000001"
#define WT9 "WT00000000000000000000000000000009"
#define AGENT "Gonzalo"

#define HOLDING "Your conversation is being transferred to our team."

/* ------------------------------------------------------------------ */
/* Inputs */

enum in_kind { IN_END = 0, IN_MSG, IN_AI, IN_SEND, IN_FLEX, IN_EVENT, IN_TIMER };
/* Which job a worker's result is for: the last one added of that kind/op. */
enum jobref { J_NONE = 0, J_AI, J_SEND, J_HANDOFF };

struct input {
	enum in_kind kind;
	const char *op;   /* IN_EVENT, IN_TIMER */
	enum jobref job;  /* results */
	int status;
	const char *sid, *from, *to, *body, *name, *conv;
	const char *text, *trigger, *reason, *summary, *err;
	const char *ch, *mb, *kd, *uo, *wt;
	const char *media, *transcripts; /* MSG: media.h JSON; results: "trs" JSON */
	int64_t code;
	bool escalate;
	bool wrong_attempt; /* a result naming an attempt other than the running one */
	bool same_attempt;  /* a result naming the job's latest attempt */
	bool twice;         /* sent twice in one batch (again before the ack came) */
};

#define MSG(s, t) { .kind = IN_MSG, .sid = s, .from = CUST, .to = BIZ, .body = t, .name = "Ana" }
#define VOICE_MEDIA "{\"type\":\"audio\",\"items\":[{\"url\":\"https://api.twilio.com/m/ME1\"," \
		    "\"ct\":\"audio/ogg\"}]}"
#define VOICE(s) { .kind = IN_MSG, .sid = s, .from = CUST, .to = BIZ, .body = "", .name = "Ana", \
		   .media = VOICE_MEDIA }
#define AI_TR(t, trs) { .kind = IN_AI, .job = J_AI, .status = ST_OK, .text = t, .transcripts = trs }
#define AI_OK(t) { .kind = IN_AI, .job = J_AI, .status = ST_OK, .text = t }
#define AI_ESC(trig, why)                                                                     \
	{ .kind = IN_AI, .job = J_AI, .status = ST_OK, .text = "Let me find someone.",        \
	  .escalate = true, .trigger = trig, .reason = why, .summary = "Ana wants a person" }
#define AI_FAIL { .kind = IN_AI, .job = J_AI, .status = ST_FAILED, .err = "LLM timed out" }
#define SEND_OK(s) { .kind = IN_SEND, .job = J_SEND, .status = ST_OK, .sid = s }
#define SEND_ERR(st, c) { .kind = IN_SEND, .job = J_SEND, .status = st, .code = c, .err = "Twilio said no" }
#define FLEX_DONE                                                                            \
	{ .kind = IN_FLEX, .job = J_HANDOFF, .status = ST_OK, .ch = CH1, .mb = MB1, .kd = KD1, \
	  .uo = UO1, .wt = WT1 }
#define FLEX_PROGRESS { .kind = IN_FLEX, .job = J_HANDOFF, .status = ST_PROGRESS, .ch = CH1 }
#define FLEX_FAIL                                                                            \
	{ .kind = IN_FLEX, .job = J_HANDOFF, .status = ST_RETRY, .code = 503,                  \
	  .err = "Service Unavailable" }
#define FLEX_FAIL_AS(...)                                                                     \
	{ .kind = IN_FLEX, .job = J_HANDOFF, .status = ST_RETRY, .code = 503,                  \
	  .err = "Service Unavailable", __VA_ARGS__ }
#define EV(op_, ...) { .kind = IN_EVENT, .op = op_, __VA_ARGS__ }
#define TIMER(op_) { .kind = IN_TIMER, .op = op_, .conv = KEY }
#define ADMIN(op_, ...) EV(op_, .from = CUST, .to = BIZ, __VA_ARGS__)

/* ------------------------------------------------------------------ */
/* Given states: the inputs that lead to them */

#define S_AI_BUSY MSG(SM1, "Where is the clinic?")
#define S_AI_REPLIED S_AI_BUSY, AI_OK("It is at 12 Main St.")
#define S_AI_IDLE S_AI_REPLIED, SEND_OK(SMOUT1)
#define S_ESCALATING S_AI_IDLE, MSG(SM2, "I want to talk to a human")
#define S_ESC_PROGRESS S_ESCALATING, FLEX_PROGRESS
#define S_HUMAN S_ESCALATING, FLEX_DONE
#define S_ACCEPTED S_HUMAN, EV(EV_ACCEPTED, .wt = WT1, .name = AGENT)
#define S_AGENT                                                                               \
	S_ACCEPTED, EV(EV_MESSAGE_ADDED, .ch = CH1, .sid = IM1, .from = AGENT,                  \
		       .body = "Hi Ana, Gonzalo here.")

enum mode_x { M_ANY = 0, M_AI, M_ESC, M_HUMAN, M_GONE };

enum given_id {
	G_NONE,
	G_AI_BUSY,      /* ai, the first message's AI job in flight */
	G_VOICE_BUSY,   /* ai, the first message was a voice note, its AI job in flight */
	G_AI_PEND,      /* ai, AI job in flight and a second message waiting */
	G_AI_REPLIED,   /* ai, the answer's send job queued */
	G_AI_IDLE,      /* ai, answered and sent (SMOUT1), nothing in flight */
	G_WINDOW_CLOSED,/* ai, a status callback said 63016 */
	G_ESCALATING,   /* escalating (rule), the Flex handoff job in flight */
	G_ESC_AI,       /* escalating while an AI job was in flight */
	G_ESC_PROGRESS, /* escalating, the Flex conversation CH1 exists */
	G_ESC_FAILED1,  /* escalating, one failed handoff attempt */
	G_ESC_NOAGENT,  /* escalating, accept timeout applied (wait) */
	G_ESC_BACK,     /* handed back (operator) while the handoff job still runs */
	G_ESC_TAKEN,    /* an agent wrote into CH1 while escalating: human, job still running */
	G_HUMAN,        /* human: task WT1 in CH1, not accepted */
	G_ACCEPTED,     /* human, reservation accepted by Gonzalo */
	G_AGENT,        /* human, Gonzalo wrote */
	G_AGENT_CLOSED, /* back to ai: Gonzalo closed CH1 */
	G_HANDED_BACK,  /* back to ai after human (close), no agent message ever */
	G_COUNT
};

struct given {
	enum mode_x mode;
	struct input steps[12];
};

static const struct given givens[G_COUNT] = {
	[G_NONE] = { M_GONE, { { 0 } } },
	[G_AI_BUSY] = { M_AI, { S_AI_BUSY } },
	[G_VOICE_BUSY] = { M_AI, { VOICE(SM1) } },
	[G_AI_PEND] = { M_AI, { S_AI_BUSY, MSG(SM2, "And the hours?") } },
	[G_AI_REPLIED] = { M_AI, { S_AI_REPLIED } },
	[G_AI_IDLE] = { M_AI, { S_AI_IDLE } },
	[G_WINDOW_CLOSED] = { M_AI, { S_AI_IDLE,
				      EV(EV_MESSAGE_FAILED, .sid = SMOUT1, .code = 63016) } },
	[G_ESCALATING] = { M_ESC, { S_ESCALATING } },
	[G_ESC_AI] = { M_ESC, { S_AI_BUSY, MSG(SM2, "I need a human") } },
	[G_ESC_PROGRESS] = { M_ESC, { S_ESC_PROGRESS } },
	[G_ESC_FAILED1] = { M_ESC, { S_ESCALATING, FLEX_FAIL } },
	[G_ESC_NOAGENT] = { M_ESC, { S_ESCALATING, TIMER("timer_no_agent") } },
	[G_ESC_BACK] = { M_AI, { S_ESCALATING, ADMIN(EV_ADMIN_HANDBACK) } },
	[G_ESC_TAKEN] = { M_HUMAN, { S_ESC_PROGRESS,
				     EV(EV_MESSAGE_ADDED, .ch = CH1, .sid = IM1, .from = AGENT,
					.body = "Hello, I can help.") } },
	[G_HUMAN] = { M_HUMAN, { S_HUMAN } },
	[G_ACCEPTED] = { M_HUMAN, { S_ACCEPTED } },
	[G_AGENT] = { M_HUMAN, { S_AGENT } },
	[G_AGENT_CLOSED] = { M_AI, { S_AGENT, EV(EV_CONV_CLOSED, .ch = CH1) } },
	[G_HANDED_BACK] = { M_AI, { S_HUMAN, EV(EV_CONV_CLOSED, .ch = CH1) } },
};

/* ------------------------------------------------------------------ */
/* Rows */

enum tri { ANY = 0, SET, ZERO };

struct expect {
	enum mode_x mode;      /* required */
	const char *fx;        /* effects, in order ("" = none) */
	const char *tl;        /* timeline events added, in order ("" = none) */
	const char *tl_detail; /* detail of the last one (NULL = not checked) */
	const char *hist;      /* roles of the history turns added ("" = none) */
	const char *hist_text; /* in the last turn added (NULL = not checked) */
	const char *turn1;     /* history turn 1's text after the batch, exactly (NULL = not checked) */
	enum tri turn1_transcript; /* turn 1 marked as a voice note's transcript */
	int pend;              /* customer turns waiting behind the AI job */
	const char *send;      /* in the body of the first send job added */
	const char *flex;      /* the first Flex job added: "handoff TRIGGER FROM..UPTO",
				* "forward SEQ" or "close CH" */
	const char *trigger, *reason, *agent;
	const char *ch;        /* flex_ch ("-" = none) */
	enum tri ai_job, handoff_job, accepted, window_closed, no_agent_done, first_agent,
		queued;
	int64_t err_code;
	const char *metric;    /* a line of the metrics text after the batch */
	bool stale;            /* batch_job_of() says BATCH_STALE for the input */
	bool audit;            /* purged: record gone, its history gone, an audit record */
};

struct row {
	const char *name;
	enum given_id given;
	const char *conf;                /* settings of this row (config file lines) */
	char *(*conf_fn)(void);          /* more of them, computed (malloc'd) */
	void (*prep)(void *fixture);     /* after the given state, before the input */
	bool abort;                      /* abort the batch instead of committing it */
	struct input in;
	struct expect ex;
};

static char *conf_closed_now(void);
static char *conf_closed_queue(void);
static void prep_old_customer(void *fixture);
static void prep_dispatch_all(void *fixture);
static void prep_send_uncertain(void *fixture);
static void prep_flex_failed_once(void *fixture);
static void prep_flex_worker_lost(void *fixture);

#define M_ESCALATIONS(trig, n) "baton_router_escalations_total{trigger=\"" trig "\"} " #n
#define M_HANDBACKS(path, n) "baton_router_handbacks_total{path=\"" path "\"} " #n

static const struct row rows[] = {
	/* --- ai mode: customer turns ------------------------------------ */
	{ "ai: customer message starts an AI job", G_NONE, .in = MSG(SM1, "Where is the clinic?"),
	  .ex = { .mode = M_AI, .fx = "ADD:ai ACK:OK", .tl = "", .hist = "customer",
		  .ai_job = SET, .handoff_job = ZERO,
		  .metric = "baton_router_customer_messages_total{mode=\"ai\"} 1" } },
	{ "ai: second message while the AI job runs waits, no new job", G_AI_BUSY,
	  .in = MSG(SM2, "And the hours?"),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "", .hist = "", .pend = 1, .ai_job = SET } },
	{ "ai: with ai.burst_ms a message joins the AI turn not yet dispatched", G_AI_BUSY,
	  .conf = "ai.burst_ms = 2000\n", .in = MSG(SM2, "And the hours?"),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "", .hist = "customer", .ai_job = SET } },
	{ "ai: duplicate MessageSid acknowledged, not processed again", G_AI_BUSY,
	  .in = MSG(SM1, "Where is the clinic?"),
	  .ex = { .mode = M_AI, .fx = "ACK:DUPLICATE", .tl = "", .hist = "", .ai_job = SET,
		  .metric = "baton_router_duplicate_webhooks_total 1" } },
	{ "ai: MessageSid over 64 bytes refused", G_NONE,
	  .in = MSG(SM1 SM1 "x", "hello"),
	  .ex = { .mode = M_GONE, .fx = "ACK:FAILED" } },
	{ "ai: 'reset' in ai mode is an ordinary message", G_AI_IDLE, .conf = "debug.reset_word = true\n",
	  .in = MSG(SM2, "reset"),
	  .ex = { .mode = M_AI, .fx = "ADD:ai ACK:OK", .tl = "", .hist = "customer", .ai_job = SET } },

	/* --- AI results ---------------------------------------------------- */
	{ "ai result: a voice note's transcript becomes its turn's text", G_VOICE_BUSY,
	  .in = AI_TR("Let me check.", "[{\"seq\":1,\"text\":\"I have a rash\"}]"),
	  .ex = { .mode = M_AI, .fx = "DONE:ai ADD:send:ai", .tl = "", .hist = "ai",
		  .turn1 = "I have a rash", .turn1_transcript = SET, .ai_job = ZERO } },
	{ "ai result: a transcript for a turn that is no voice note is ignored", G_AI_BUSY,
	  .in = AI_TR("Downtown.", "[{\"seq\":1,\"text\":\"forged\"}]"),
	  .ex = { .mode = M_AI, .fx = "DONE:ai ADD:send:ai", .tl = "", .hist = "ai",
		  .turn1 = "Where is the clinic?", .turn1_transcript = ZERO, .ai_job = ZERO } },
	{ "ai result: malformed transcripts are ignored, the answer goes on", G_VOICE_BUSY,
	  .in = AI_TR("Let me check.", "[{\"seq\":\"1\",\"text\":7},{\"seq\":-1}]"),
	  .ex = { .mode = M_AI, .fx = "DONE:ai ADD:send:ai", .tl = "", .hist = "ai",
		  .turn1 = "", .turn1_transcript = ZERO, .ai_job = ZERO } },
	{ "ai result: an answer becomes a send job", G_AI_BUSY, .in = AI_OK("It is at 12 Main St."),
	  .ex = { .mode = M_AI, .fx = "DONE:ai ADD:send:ai", .tl = "", .hist = "ai",
		  .hist_text = "12 Main St.", .send = "It is at 12 Main St.", .ai_job = ZERO } },
	{ "ai result: the waiting turn gets the next AI job", G_AI_PEND, .in = AI_OK("Downtown."),
	  .ex = { .mode = M_AI, .fx = "DONE:ai ADD:send:ai ADD:ai", .tl = "", .hist = "ai customer",
		  .hist_text = "And the hours?", .send = "Downtown.", .ai_job = SET } },
	{ "ai result: escalate by tool -> holding message + Flex handoff, escalating", G_AI_BUSY,
	  .in = AI_ESC("tool", "wants a refund"),
	  .ex = { .mode = M_ESC, .fx = "DONE:ai ADD:flex:handoff ADD:send", .tl = "escalated",
		  .tl_detail = "tool: wants a refund", .hist = "ai", .hist_text = HOLDING,
		  .send = HOLDING, .flex = "handoff tool 1..1", .trigger = "tool",
		  .reason = "wants a refund", .ai_job = ZERO, .handoff_job = SET, .ch = "-",
		  .metric = M_ESCALATIONS("tool", 1) } },
	{ "ai result: escalate by tag (no trigger, no reason)", G_AI_BUSY, .in = AI_ESC(NULL, NULL),
	  .ex = { .mode = M_ESC, .fx = "DONE:ai ADD:flex:handoff ADD:send", .tl = "escalated",
		  .hist = "ai", .send = HOLDING, .flex = "handoff tag 1..1", .trigger = "tag",
		  .reason = "model asked for a human", .handoff_job = SET,
		  .metric = M_ESCALATIONS("tag", 1) } },
	{ "ai result: failed for good, ai.on_failure=escalate", G_AI_BUSY, .in = AI_FAIL,
	  .ex = { .mode = M_ESC, .fx = "DONE:ai ADD:flex:handoff ADD:send", .tl = "escalated",
		  .tl_detail = "ai_failure: ai_unavailable", .hist = "ai", .send = HOLDING,
		  .trigger = "ai_failure", .reason = "ai_unavailable", .handoff_job = SET } },
	{ "ai result: failed for good, ai.on_failure=apologize", G_AI_BUSY,
	  .conf = "ai.on_failure = apologize\n", .in = AI_FAIL,
	  /* the apology is not an AI answer (op none): an escalation would not withdraw it */
	  .ex = { .mode = M_AI, .fx = "DONE:ai ADD:send", .tl = "", .hist = "ai",
		  .send = "Sorry, I could not process", .ai_job = ZERO } },
	{ "ai result: answer after the escalation is dropped", G_ESC_AI, .in = AI_OK("Downtown."),
	  .ex = { .mode = M_ESC, .fx = "DONE:ai", .tl = "", .hist = "", .handoff_job = SET } },
	{ "ai result: outside the 24 h window, no template -> nothing sent, window_closed",
	  G_AI_BUSY, .prep = prep_old_customer, .in = AI_OK("Downtown."),
	  .ex = { .mode = M_AI, .fx = "DONE:ai", .tl = "window_closed",
		  .tl_detail = "free-form message after 24 h", .hist = "ai",
		  .window_closed = SET } },
	{ "ai result: outside the 24 h window with whatsapp.template_sid -> template",
	  G_AI_BUSY, .conf = "whatsapp.template_sid = HX00000000000000000000000000000001\n",
	  .prep = prep_old_customer, .in = AI_OK("Downtown."),
	  .ex = { .mode = M_AI, .fx = "DONE:ai ADD:send:ai/tmpl", .tl = "", .hist = "ai",
		  .send = "Downtown.", .window_closed = ZERO } },

	/* --- send results -------------------------------------------------- */
	{ "send result: failed for now -> retried with backoff", G_AI_REPLIED,
	  .in = SEND_ERR(ST_RETRY, 503),
	  .ex = { .mode = M_AI, .fx = "RETRY:send:ai#1", .tl = "", .hist = "" } },
	{ "send result: 63016 for good -> window_closed", G_AI_REPLIED,
	  .in = SEND_ERR(ST_FAILED, 63016),
	  .ex = { .mode = M_AI, .fx = "DONE:send:ai", .tl = "window_closed",
		  .tl_detail = "Twilio error 63016", .hist = "", .window_closed = SET,
		  .err_code = 63016 } },

	/* --- deterministic escalation (rules) -------------------------------- */
	{ "rule: phrase escalates before the AI (case and accents ignored)", G_AI_IDLE,
	  .in = MSG(SM2, "Quero falar com um HUMANO"),
	  .ex = { .mode = M_ESC, .fx = "ADD:flex:handoff ADD:send ACK:OK", .tl = "escalated",
		  .tl_detail = "rule: customer wrote 'humano'", .hist = "customer ai",
		  .hist_text = HOLDING, .send = HOLDING, .flex = "handoff rule 1..3",
		  .trigger = "rule", .reason = "customer wrote 'humano'", .ai_job = ZERO,
		  .handoff_job = SET, .metric = M_ESCALATIONS("rule", 1) } },
	{ "rule: while an AI job runs -> the turn joins history, the AI job is dropped",
	  G_AI_BUSY, .in = MSG(SM2, "I need a human"),
	  .ex = { .mode = M_ESC, .fx = "ADD:flex:handoff ADD:send ACK:OK", .tl = "escalated",
		  .hist = "customer ai", .pend = 0, .flex = "handoff rule 1..2",
		  .trigger = "rule", .ai_job = ZERO, .handoff_job = SET } },
	{ "rule: the pending turns move into history before the handoff", G_AI_PEND,
	  .in = MSG(SM3, "human please"),
	  .ex = { .mode = M_ESC, .fx = "ADD:flex:handoff ADD:send ACK:OK", .tl = "escalated",
		  .hist = "customer customer ai", .pend = 0, .flex = "handoff rule 1..3",
		  .ai_job = ZERO } },
	{ "rule: an AI answer still in the outbox is withdrawn", G_AI_REPLIED,
	  .in = MSG(SM2, "human"),
	  .ex = { .mode = M_ESC, .fx = "DONE:send:ai ADD:flex:handoff ADD:send ACK:OK",
		  .tl = "escalated", .hist = "customer ai", .send = HOLDING } },
	{ "rule: an AI answer whose last send may have reached Twilio stays to be reconciled",
	  G_AI_REPLIED, .prep = prep_send_uncertain, .in = MSG(SM2, "human"),
	  .ex = { .mode = M_ESC, .fx = "ADD:flex:handoff ADD:send ACK:OK",
		  .tl = "escalated", .hist = "customer ai", .send = HOLDING } },
	{ "rule: outside business hours -> the closed message", G_AI_IDLE,
	  .conf_fn = conf_closed_now, .in = MSG(SM2, "human"),
	  .ex = { .mode = M_ESC, .fx = "ADD:flex:handoff ADD:send ACK:OK", .tl = "escalated",
		  .hist = "customer ai", .send = "Our team is available", .queued = ZERO } },
	{ "rule: outside business hours, after_hours=queue -> task waits for the opening",
	  G_AI_IDLE, .conf_fn = conf_closed_queue, .in = MSG(SM2, "human"),
	  .ex = { .mode = M_ESC, .fx = "ADD:flex:handoff+delay ADD:send ACK:OK",
		  .tl = "handoff_queued escalated", .hist = "customer ai",
		  .send = "Our team is available", .queued = SET, .handoff_job = SET } },
	{ "rule: an aborted batch leaves no trace (store, dedupe, counters)", G_AI_IDLE,
	  .abort = true, .in = MSG(SM2, "human"),
	  .ex = { .mode = M_AI, .fx = "ADD:flex:handoff ADD:send ACK:OK", .tl = "", .hist = "",
		  .handoff_job = ZERO, .metric = M_ESCALATIONS("rule", 0) } },

	/* --- escalating / human: customer turns ----------------------------- */
	{ "escalating: customer message is forwarded behind the handoff, no AI", G_ESCALATING,
	  .in = MSG(SM3, "Hello?"),
	  .ex = { .mode = M_ESC, .fx = "ADD:flex:forward ACK:OK", .tl = "", .hist = "customer",
		  .flex = "forward 5", .ai_job = ZERO,
		  .metric = "baton_router_customer_messages_total{mode=\"escalating\"} 1" } },
	{ "human: customer message -> forward job, no AI", G_HUMAN, .in = MSG(SM3, "Tuesday?"),
	  .ex = { .mode = M_HUMAN, .fx = "ADD:flex:forward ACK:OK", .tl = "", .hist = "customer",
		  .flex = "forward 5", .ai_job = ZERO } },
	{ "human: a rule phrase does not escalate again", G_HUMAN, .in = MSG(SM3, "agent?"),
	  .ex = { .mode = M_HUMAN, .fx = "ADD:flex:forward ACK:OK", .tl = "", .hist = "customer" } },
	{ "human: customer message seen in the Flex conversation is recorded, not forwarded",
	  G_HUMAN, .in = EV(EV_MESSAGE_ADDED, .ch = CH1, .sid = IM2, .from = CUST, .body = "Hi?"),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:OK", .tl = "", .hist = "customer" } },
	{ "human: Flex message delivered twice -> duplicate", G_AGENT,
	  .in = EV(EV_MESSAGE_ADDED, .ch = CH1, .sid = IM1, .from = AGENT, .body = "Hi Ana"),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:DUPLICATE", .tl = "", .hist = "" } },
	{ "human: 'reset' with debug.reset_word hands back and closes Flex", G_HUMAN,
	  .conf = "debug.reset_word = true\n", .in = MSG(SM3, " RESET "),
	  .ex = { .mode = M_AI, .fx = "ADD:flex:close ACK:OK", .tl = "handed_back",
		  .tl_detail = "reset", .hist = "customer system", .flex = "close " CH1,
		  .metric = M_HANDBACKS("reset", 1) } },
	{ "human: 'reset' without debug.reset_word is forwarded", G_HUMAN, .in = MSG(SM3, "reset"),
	  .ex = { .mode = M_HUMAN, .fx = "ADD:flex:forward ACK:OK", .tl = "", .hist = "customer" } },

	/* --- Flex handoff results ------------------------------------------ */
	{ "flex: handoff done -> human, SIDs recorded", G_ESCALATING, .in = FLEX_DONE,
	  .ex = { .mode = M_HUMAN, .fx = "DONE:flex:handoff", .tl = "task_created",
		  .tl_detail = WT1, .hist = "", .ch = CH1, .handoff_job = ZERO, .accepted = ZERO } },
	{ "flex: progress records the conversation, still escalating", G_ESCALATING,
	  .in = FLEX_PROGRESS,
	  .ex = { .mode = M_ESC, .fx = "", .tl = "", .hist = "", .ch = CH1, .handoff_job = SET } },
	{ "flex: failed attempt -> retried with backoff", G_ESCALATING, .in = FLEX_FAIL,
	  .ex = { .mode = M_ESC, .fx = "RETRY:flex:handoff#1", .tl = "", .hist = "",
		  .handoff_job = SET } },
	{ "flex: second failure with max_attempts=3 -> retried again", G_ESC_FAILED1,
	  .in = FLEX_FAIL,
	  .ex = { .mode = M_ESC, .fx = "RETRY:flex:handoff#2", .tl = "", .handoff_job = SET } },
	{ "flex: give up after handoff.max_attempts -> failure message, back to ai",
	  G_ESC_FAILED1, .conf = "handoff.max_attempts = 2\n", .in = FLEX_FAIL,
	  .ex = { .mode = M_AI, .fx = "DONE:flex:handoff ADD:send", .tl = "handoff_failed",
		  .tl_detail = "Service Unavailable", .hist = "ai",
		  .send = "Sorry, we could not reach our team", .handoff_job = ZERO,
		  .err_code = 503, .metric = "baton_router_handoffs_failed_total 1" } },
	{ "flex: give up after a conversation was created -> it is closed", G_ESC_PROGRESS,
	  .conf = "handoff.max_attempts = 1\n", .in = FLEX_FAIL,
	  .ex = { .mode = M_AI, .fx = "DONE:flex:handoff ADD:flex:close ADD:send",
		  .tl = "handoff_failed", .hist = "ai", .flex = "close " CH1,
		  .handoff_job = ZERO } },
	/* README: "after handoff.max_attempts tells the customer handoff.failure_message
	 * and returns the conversation to ai". Current code when an agent took the
	 * conversation over while the pipeline still ran: the mode stays human, yet
	 * the Flex conversation the agent writes in is closed and the failure message
	 * ("I am still here to help") is sent to the customer. */
	{ "flex: give up after an agent took over -> stays human, CH closed, customer told",
	  G_ESC_TAKEN, .conf = "handoff.max_attempts = 1\n", .in = FLEX_FAIL,
	  .ex = { .mode = M_HUMAN, .fx = "DONE:flex:handoff ADD:flex:close ADD:send",
		  .tl = "handoff_failed", .hist = "ai", .flex = "close " CH1,
		  .handoff_job = ZERO } },
	{ "flex: late handoff result after a hand-back closes what it created", G_ESC_BACK,
	  .in = FLEX_DONE,
	  .ex = { .mode = M_AI, .fx = "DONE:flex:handoff ADD:flex:close", .tl = "", .hist = "",
		  .flex = "close " CH1, .ch = "-", .handoff_job = ZERO } },
	{ "flex: failure of an earlier attempt is stale while a later one runs", G_ESCALATING,
	  .prep = prep_dispatch_all,
	  .in = { .kind = IN_FLEX, .job = J_HANDOFF, .status = ST_FAILED, .code = 500,
		  .wrong_attempt = true },
	  .ex = { .mode = M_ESC, .fx = "", .tl = "", .hist = "", .stale = true,
		  .handoff_job = SET } },
	{ "flex: a failure sent again after its retry committed is stale", G_ESCALATING,
	  .prep = prep_flex_failed_once, .in = FLEX_FAIL_AS(.same_attempt = true),
	  .ex = { .mode = M_ESC, .fx = "", .tl = "", .hist = "", .stale = true,
		  .handoff_job = SET } },
	{ "flex: the same failure twice in one batch is retried once", G_ESCALATING,
	  .prep = prep_dispatch_all, .in = FLEX_FAIL_AS(.same_attempt = true, .twice = true),
	  .ex = { .mode = M_ESC, .fx = "RETRY:flex:handoff#1", .tl = "", .hist = "",
		  .handoff_job = SET } },
	{ "flex: the failure of an attempt whose worker was written off counts", G_ESCALATING,
	  .prep = prep_flex_worker_lost, .in = FLEX_FAIL_AS(.same_attempt = true),
	  .ex = { .mode = M_ESC, .fx = "RETRY:flex:handoff#1", .tl = "", .hist = "",
		  .handoff_job = SET } },
	{ "flex: success of an earlier attempt still counts", G_ESCALATING,
	  .prep = prep_dispatch_all,
	  .in = { .kind = IN_FLEX, .job = J_HANDOFF, .status = ST_OK, .ch = CH1, .wt = WT1,
		  .kd = KD1, .wrong_attempt = true },
	  .ex = { .mode = M_HUMAN, .fx = "DONE:flex:handoff", .tl = "task_created", .ch = CH1 } },

	/* --- TaskRouter / Conversations events ------------------------------ */
	{ "taskrouter: reservation accepted", G_HUMAN,
	  .in = EV(EV_ACCEPTED, .wt = WT1, .name = AGENT),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:OK", .tl = "accepted", .tl_detail = AGENT,
		  .hist = "", .agent = AGENT, .accepted = SET } },
	{ "taskrouter: reservation accepted again is recorded once", G_ACCEPTED,
	  .in = EV(EV_ACCEPTED, .wt = WT1, .name = "Marta"),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:OK", .tl = "", .agent = AGENT, .accepted = SET } },
	{ "conversations: agent message -> agent turn, first_agent_reply", G_ACCEPTED,
	  .in = EV(EV_MESSAGE_ADDED, .ch = CH1, .sid = IM1, .from = AGENT, .body = "Hi Ana"),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:OK", .tl = "first_agent_reply", .tl_detail = AGENT,
		  .hist = "agent", .hist_text = "Hi Ana", .agent = AGENT, .first_agent = SET } },
	{ "conversations: our own injected history is ignored", G_HUMAN,
	  .in = EV(EV_MESSAGE_ADDED, .ch = CH1, .sid = IM2, .from = "baton", .body = "history"),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:OK", .tl = "", .hist = "" } },
	{ "conversations: agent writing while escalating takes the conversation", G_ESC_PROGRESS,
	  .in = EV(EV_MESSAGE_ADDED, .ch = CH1, .sid = IM1, .from = AGENT, .body = "Hello"),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:OK", .tl = "first_agent_reply", .hist = "agent",
		  .agent = AGENT, .handoff_job = SET } },
	{ "conversations: agent writing in ai mode takes over at once", G_HANDED_BACK,
	  .in = EV(EV_MESSAGE_ADDED, .ch = CH1, .sid = IM1, .from = AGENT, .body = "Still there?"),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:OK", .tl = "first_agent_reply agent_takeover",
		  .hist = "agent", .agent = AGENT, .accepted = SET, .ai_job = ZERO } },
	{ "conversations: closed by the agent -> ai, no close job", G_AGENT,
	  .in = EV(EV_CONV_CLOSED, .ch = CH1),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "handed_back", .tl_detail = "agent_closed",
		  .hist = "system", .hist_text = AGENT " handled this conversation",
		  .handoff_job = ZERO, .metric = M_HANDBACKS("agent_closed", 1) } },
	{ "taskrouter: task completed -> ai, no close job", G_AGENT,
	  .in = EV(EV_TASK_DONE, .wt = WT1),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "handed_back",
		  .tl_detail = "task_completed", .hist = "system" } },
	{ "taskrouter: task completed after the close hands back once", G_AGENT_CLOSED,
	  .in = EV(EV_TASK_DONE, .wt = WT1),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "", .hist = "",
		  .metric = M_HANDBACKS("agent_closed", 1) } },
	{ "taskrouter: canceled, no_agent_policy=wait -> told once, keeps waiting", G_HUMAN,
	  .in = EV(EV_TASK_CANCELED, .wt = WT1),
	  .ex = { .mode = M_HUMAN, .fx = "ADD:send ACK:OK", .tl = "no_agent",
		  .tl_detail = "task_canceled", .hist = "ai", .send = "All our agents are busy",
		  .no_agent_done = SET } },
	{ "taskrouter: canceled, no_agent_policy=ai -> message, back to ai, Flex closed", G_HUMAN,
	  .conf = "handoff.no_agent_policy = ai\n", .in = EV(EV_TASK_CANCELED, .wt = WT1),
	  .ex = { .mode = M_AI, .fx = "ADD:send ADD:flex:close ACK:OK",
		  .tl = "no_agent handed_back", .tl_detail = "no_agent", .hist = "ai system",
		  .send = "Our team is not available", .flex = "close " CH1,
		  .metric = M_HANDBACKS("no_agent", 1) } },
	{ "taskrouter: event of another task is ignored", G_HUMAN,
	  .in = EV(EV_TASK_DONE, .wt = WT9),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:OK", .tl = "", .hist = "" } },

	/* --- timers --------------------------------------------------------- */
	{ "timer: accept timeout while escalating, policy wait -> told once", G_ESCALATING,
	  .in = TIMER("timer_no_agent"),
	  .ex = { .mode = M_ESC, .fx = "ADD:send", .tl = "no_agent", .tl_detail = "accept_timeout",
		  .hist = "ai", .send = "All our agents are busy", .no_agent_done = SET,
		  .handoff_job = SET } },
	{ "timer: accept timeout a second time does nothing", G_ESC_NOAGENT,
	  .in = TIMER("timer_no_agent"),
	  .ex = { .mode = M_ESC, .fx = "", .tl = "", .hist = "", .no_agent_done = SET } },
	{ "timer: accept timeout, policy ai, pipeline still running -> back to ai", G_ESCALATING,
	  .conf = "handoff.no_agent_policy = ai\n", .in = TIMER("timer_no_agent"),
	  .ex = { .mode = M_AI, .fx = "ADD:send", .tl = "no_agent handed_back",
		  .hist = "ai system", .handoff_job = ZERO } },
	{ "timer: idle in human mode -> ai, Flex side closed", G_AGENT,
	  .in = TIMER("timer_idle"),
	  .ex = { .mode = M_AI, .fx = "ADD:flex:close", .tl = "handed_back",
		  .tl_detail = "inactivity_timeout", .hist = "system", .flex = "close " CH1,
		  .metric = M_HANDBACKS("inactivity_timeout", 1) } },
	{ "timer: a timer op from ingress is not trusted", G_AGENT,
	  .in = EV("timer_idle", .conv = KEY),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:FAILED", .tl = "", .hist = "" } },

	/* --- operator -------------------------------------------------------- */
	{ "operator: handback from human -> ai, Flex side closed", G_HUMAN,
	  .in = ADMIN(EV_ADMIN_HANDBACK),
	  .ex = { .mode = M_AI, .fx = "ADD:flex:close ACK:OK", .tl = "handed_back",
		  .tl_detail = "operator", .hist = "system", .flex = "close " CH1,
		  .metric = M_HANDBACKS("operator", 1) } },
	{ "operator: handback of a conversation in ai mode changes nothing", G_AI_IDLE,
	  .in = ADMIN(EV_ADMIN_HANDBACK),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "", .hist = "" } },
	{ "operator: escalate", G_AI_IDLE, .in = ADMIN(EV_ADMIN_ESCALATE, .reason = "VIP customer"),
	  .ex = { .mode = M_ESC, .fx = "ADD:flex:handoff ADD:send ACK:OK", .tl = "escalated",
		  .tl_detail = "operator: VIP customer", .hist = "ai", .send = HOLDING,
		  .flex = "handoff operator 1..2", .trigger = "operator", .reason = "VIP customer",
		  .metric = M_ESCALATIONS("operator", 1) } },
	{ "operator: escalate of a conversation a person has changes nothing", G_HUMAN,
	  .in = ADMIN(EV_ADMIN_ESCALATE, .reason = "again"),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:OK", .tl = "", .hist = "", .trigger = "rule" } },
	{ "operator: purge of a human conversation -> erased, audited, Flex closed", G_AGENT,
	  .in = ADMIN(EV_ADMIN_PURGE, .reason = "TICKET-1"),
	  .ex = { .mode = M_GONE, .fx = "DONE:send ADD:flex:close ACK:OK", .flex = "close " CH1,
		  .audit = true } },
	{ "operator: purge of an ai conversation", G_AI_IDLE, .in = ADMIN(EV_ADMIN_PURGE),
	  .ex = { .mode = M_GONE, .fx = "ACK:OK", .audit = true } },
	{ "operator: purge refused with ST_BUSY while the handoff runs", G_ESCALATING,
	  .in = ADMIN(EV_ADMIN_PURGE),
	  .ex = { .mode = M_ESC, .fx = "ACK:BUSY", .tl = "", .hist = "", .handoff_job = SET } },
	{ "operator: purge refused while a handed-back conversation's handoff still runs",
	  G_ESC_BACK, .in = ADMIN(EV_ADMIN_PURGE),
	  .ex = { .mode = M_AI, .fx = "ACK:BUSY", .tl = "", .hist = "" } },
	/* purge.c says the refusal "lasts the seconds the pipeline takes, or until
	 * handoff.max_attempts"; README: "refused while a handoff is being created".
	 * With handoff.after_hours=queue the handoff job waits for the opening, so
	 * the purge is refused until then (a weekend, say). */
	{ "operator: purge refused while a handoff waits for business hours", G_ESCALATING,
	  .conf_fn = conf_closed_queue, .in = ADMIN(EV_ADMIN_PURGE),
	  .ex = { .mode = M_ESC, .fx = "ACK:BUSY", .tl = "", .queued = SET } },
	/* A hand-back before the opening leaves the queued Flex job as it is: at
	 * the opening it still creates a Flex conversation and task, and only its
	 * late result closes them (handoff_result). */
	{ "operator: handback of a queued handoff leaves its Flex job queued", G_ESCALATING,
	  .conf_fn = conf_closed_queue, .in = ADMIN(EV_ADMIN_HANDBACK),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "handed_back", .hist = "system",
		  .handoff_job = ZERO } },
	{ "operator: command for an unknown address -> FAILED (404)", G_NONE,
	  .in = ADMIN(EV_ADMIN_HANDBACK),
	  .ex = { .mode = M_GONE, .fx = "ACK:FAILED" } },

	/* --- status callbacks and the 24 h window ---------------------------- */
	{ "status: 63016 -> window_closed", G_AI_IDLE,
	  .in = EV(EV_MESSAGE_FAILED, .sid = SMOUT1, .code = 63016, .reason = "outside window"),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "window_closed",
		  .tl_detail = "Twilio error 63016", .hist = "", .window_closed = SET,
		  .err_code = 63016 } },
	{ "status: another error code is only recorded", G_AI_IDLE,
	  .in = EV(EV_MESSAGE_FAILED, .sid = SMOUT1, .code = 30008),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "", .window_closed = ZERO,
		  .err_code = 30008 } },
	{ "status: the customer writing again reopens the window", G_WINDOW_CLOSED,
	  .in = MSG(SM2, "Hello again"),
	  .ex = { .mode = M_AI, .fx = "ADD:ai ACK:OK", .tl = "", .hist = "customer",
		  .window_closed = ZERO } },
	/* README: "Twilio error 63016 (from a send or a status callback) does the
	 * same" (send the template, or nothing). Current code only marks the
	 * conversation: a message baton itself sends before the customer writes
	 * again (here the holding message of an operator escalation) still goes
	 * out free-form, since the window is judged by last_in alone. */
	{ "status: after 63016 a holding message is still queued free-form", G_WINDOW_CLOSED,
	  .in = ADMIN(EV_ADMIN_ESCALATE, .reason = "call back"),
	  .ex = { .mode = M_ESC, .fx = "ADD:flex:handoff ADD:send ACK:OK", .tl = "escalated",
		  .hist = "ai", .send = HOLDING, .window_closed = SET } },

	/* --- bad or unknown input ------------------------------------------- */
	{ "event: unknown conversation -> acknowledged, ignored", G_NONE,
	  .in = EV(EV_CONV_CLOSED, .ch = CH9), .ex = { .mode = M_GONE, .fx = "ACK:OK" } },
	{ "event: status callback for a message baton did not send -> ignored", G_AI_IDLE,
	  .in = EV(EV_MESSAGE_FAILED, .sid = SM3, .code = 63016),
	  .ex = { .mode = M_AI, .fx = "ACK:OK", .tl = "", .window_closed = ZERO } },
	{ "event: task_done without its task SID -> FAILED", G_AGENT, .in = EV(EV_TASK_DONE),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:FAILED", .tl = "", .hist = "" } },
	{ "event: message_added without a body -> FAILED", G_HUMAN,
	  .in = EV(EV_MESSAGE_ADDED, .ch = CH1, .sid = IM2, .from = AGENT),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:FAILED", .tl = "", .hist = "" } },
	{ "event: operator command without an address -> FAILED", G_HUMAN,
	  .in = EV(EV_ADMIN_HANDBACK),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:FAILED", .tl = "", .hist = "" } },
	{ "event: unknown op -> FAILED", G_HUMAN, .in = EV("task.moved", .wt = WT1),
	  .ex = { .mode = M_HUMAN, .fx = "ACK:FAILED", .tl = "", .hist = "" } },

	/* --- stale results (BATCH_STALE) ------------------------------------ */
	{ "stale: AI result for a finished job is dropped", G_AI_IDLE, .in = AI_OK("again"),
	  .ex = { .mode = M_AI, .fx = "", .tl = "", .hist = "", .stale = true } },
	{ "stale: send result for a finished job is dropped", G_AI_IDLE, .in = SEND_OK(SMOUT1),
	  .ex = { .mode = M_AI, .fx = "", .tl = "", .hist = "", .stale = true } },
	{ "stale: handoff result for a finished job is dropped", G_HUMAN, .in = FLEX_DONE,
	  .ex = { .mode = M_HUMAN, .fx = "", .tl = "", .hist = "", .stale = true } },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* ------------------------------------------------------------------ */
/* The fixture: one store, one context, the jobs seen so far */

struct seen_job {
	uint64_t id;
	enum job_kind kind;
	char op[16];
};

struct fixture {
	const struct row *row;
	char dir[64];
	char conf[96];
	struct config cfg;
	struct store st;
	struct rctx x;
	struct batch b;
	struct seen_job jobs[64];
	size_t njobs;
	uint64_t next_req;
};

/* Day name of wall time ms + days (UTC), as business.hours spells it. */
static const char *day_after(int days)
{
	static const char *const names[7] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };
	uint64_t d = clock_wall_ms() / 86400000u + (uint64_t)days;
	return names[(d + 4) % 7]; /* 1970-01-01 was a Thursday */
}

/* Business hours on one day three days from now only: closed now, whatever the time. */
static char *conf_closed_now(void)
{
	return xasprintf("business.hours = %s 08:00-09:00\n", day_after(3));
}

static char *conf_closed_queue(void)
{
	return xasprintf("business.hours = %s 08:00-09:00\nhandoff.after_hours = queue\n",
			 day_after(3));
}

static void fx_write(const char *path, const char *a, const char *b)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(a ? a : "", f);
	fputs(b ? b : "", f);
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char err[512] = "";
	f->row = *state;
	strcpy(f->dir, "/tmp/baton-test-machine-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->conf, sizeof(f->conf), "%s/baton.conf", f->dir);
	char *extra = f->row->conf_fn ? f->row->conf_fn() : NULL;
	fx_write(f->conf, f->row->conf, extra);
	free(extra);
	if (config_load(&f->cfg, f->conf, err, sizeof(err)) < 0) {
		print_error("config: %s\n", err);
		return -1;
	}
	if (store_open(&f->st, f->dir, 16, false) < 0)
		return -1;
	f->x.cfg = &f->cfg;
	f->x.st = &f->st;
	f->x.rules = rules_new(f->cfg.escalation_phrases);
	f->x.disp = dispatch_new();
	const char *why = NULL;
	long which = -1;
	if (rctx_hours_parse(&f->x, &why, &which) < 0) {
		print_error("business.hours: %s\n", why);
		return -1;
	}
	metrics_reset();
	stats_register();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	batch_release(&f->b);
	rctx_release(&f->x);
	dispatch_destroy(&f->x.disp);
	rules_destroy(&f->x.rules);
	store_close(&f->st);
	config_release(&f->cfg);
	metrics_reset();
	DIR *d = opendir(f->dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char p[512];
			snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	int rc = rmdir(f->dir);
	free(f);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Applying an input */

static uint64_t job_ref(const struct fixture *f, enum jobref ref)
{
	for (size_t i = f->njobs; i-- > 0;) {
		const struct seen_job *s = &f->jobs[i];
		if ((ref == J_AI && s->kind == JOB_AI) || (ref == J_SEND && s->kind == JOB_SEND) ||
		    (ref == J_HANDOFF && s->kind == JOB_FLEX && !strcmp(s->op, OP_HANDOFF)))
			return s->id;
	}
	fail_msg("no job of the kind the input names");
	return 0;
}

static const struct seen_job *job_seen(const struct fixture *f, uint64_t id)
{
	for (size_t i = 0; i < f->njobs; i++)
		if (f->jobs[i].id == id)
			return &f->jobs[i];
	return NULL;
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void build_item(struct fixture *f, const struct input *in, struct item *it)
{
	struct envelope *e = &it->env;
	memset(it, 0, sizeof(*it));
	e->version = ENV_VERSION;
	e->ts = clock_wall_ms();
	e->status = in->status;
	e->code = in->code;
	e->escalate = in->escalate;
	e->sid = dup_or_null(in->sid);
	e->from = dup_or_null(in->from);
	e->to = dup_or_null(in->to);
	e->body = dup_or_null(in->body);
	e->name = dup_or_null(in->name);
	e->conv = dup_or_null(in->conv);
	e->op = dup_or_null(in->op);
	e->text = dup_or_null(in->text);
	e->trigger = dup_or_null(in->trigger);
	e->reason = dup_or_null(in->reason);
	e->summary = dup_or_null(in->summary);
	e->err = dup_or_null(in->err);
	e->ch = dup_or_null(in->ch);
	e->mb = dup_or_null(in->mb);
	e->kd = dup_or_null(in->kd);
	e->uo = dup_or_null(in->uo);
	e->wt = dup_or_null(in->wt);
	e->media = dup_or_null(in->media);
	e->transcripts = dup_or_null(in->transcripts);
	switch (in->kind) {
	case IN_MSG:
		e->type = ENV_INBOUND;
		break;
	case IN_AI:
		e->type = ENV_RESULT_AI;
		break;
	case IN_SEND:
		e->type = ENV_RESULT_SEND;
		break;
	case IN_FLEX:
		e->type = ENV_RESULT_FLEX;
		break;
	case IN_EVENT:
	case IN_TIMER:
		e->type = ENV_EVENT;
		break;
	default:
		fail_msg("bad input kind %d", in->kind);
	}
	if (in->kind == IN_AI || in->kind == IN_SEND || in->kind == IN_FLEX) {
		e->id = job_ref(f, in->job);
		if (in->wrong_attempt) {
			uint64_t attempt = 0;
			assert_true(dispatch_attempt(f->x.disp, e->id, &attempt, NULL));
			assert_true(attempt != 0);
			e->attempt = (int64_t)(attempt + 1);
		}
		if (in->same_attempt) {
			uint64_t attempt = 0;
			dispatch_attempt(f->x.disp, e->id, &attempt, NULL);
			assert_true(attempt != 0);
			e->attempt = (int64_t)attempt;
		}
	} else {
		e->id = ++f->next_req;
		it->from_ingress = in->kind != IN_TIMER;
		it->synthetic = in->kind == IN_TIMER;
		it->peer.len = 7;
		memcpy(it->peer.id, "ingress", 7);
	}
}

/* The router's dispatch of one item (router.c router_apply). */
static int entry_point(struct batch *b, struct item *it)
{
	switch (it->env.type) {
	case ENV_INBOUND:
		return turns_inbound(b, it);
	case ENV_RESULT_AI:
		return turns_result_ai(b, it);
	case ENV_RESULT_SEND:
		return turns_result_send(b, it);
	case ENV_RESULT_FLEX:
		return handoff_result(b, it);
	case ENV_EVENT:
		return evtable_apply(b, it, evkind_of(it->env.op));
	default:
		fail_msg("no entry point for %s", env_type_name(it->env.type));
	}
	return -1;
}

static const char *status_name(int st)
{
	static const char *const names[] = { "OK", "DUPLICATE", "FAILED", "RETRY",
					     "MALFORMED", "BUSY", "PROGRESS" };
	return st >= 0 && st <= ST_PROGRESS ? names[st] : "?";
}

/* What one batch did, read inside its transaction. */
struct observed {
	char fx[512];
	char send[256];  /* body of the first send job added */
	char flex[160];  /* the first Flex job added */
	bool got_send, got_flex;
};

static void cat(char *buf, size_t len, const char *s)
{
	size_t n = strlen(buf);
	snprintf(buf + n, len - n, "%s%s", n ? " " : "", s);
}

/* Renders b->fx (see the top of the file) and notes the jobs added. Runs
 * before the commit, in the batch's transaction: the jobs are there. */
static void observe(struct fixture *f, struct observed *o)
{
	struct batch *b = &f->b;
	memset(o, 0, sizeof(*o));
	for (size_t i = 0; i < b->nfx; i++) {
		const struct effect *e = &b->fx[i];
		char one[96];
		struct job_rec j;
		const struct seen_job *s;
		switch (e->type) {
		case FX_ACK:
			snprintf(one, sizeof(one), "ACK:%s", status_name(e->status));
			break;
		case FX_ADD:
			assert_int_equal(store_job_get(b->st, b->txn, e->id, &j), 0);
			assert_int_equal(j.kind, e->kind);
			assert_string_equal(j.conv, e->conv);
			snprintf(one, sizeof(one), "ADD:%s%s%s%s%s", job_kind_name(j.kind),
				 j.op ? ":" : "", j.op ? j.op : "", e->not_before ? "+delay" : "",
				 j.tmpl ? "/tmpl" : "");
			if (j.kind == JOB_SEND && !o->got_send) {
				o->got_send = true;
				snprintf(o->send, sizeof(o->send), "%s", j.body ? j.body : "");
			}
			if (j.kind == JOB_FLEX && !o->got_flex) {
				o->got_flex = true;
				if (j.op && !strcmp(j.op, OP_HANDOFF))
					snprintf(o->flex, sizeof(o->flex), "handoff %s %llu..%llu",
						 j.trigger ? j.trigger : "", (unsigned long long)j.hfrom,
						 (unsigned long long)j.upto);
				else if (j.op && !strcmp(j.op, OP_FORWARD))
					snprintf(o->flex, sizeof(o->flex), "forward %llu",
						 (unsigned long long)j.hseq);
				else
					snprintf(o->flex, sizeof(o->flex), "%s %s", j.op ? j.op : "?",
						 j.ch ? j.ch : "-");
			}
			assert_true(f->njobs < sizeof(f->jobs) / sizeof(f->jobs[0]));
			f->jobs[f->njobs].id = e->id;
			f->jobs[f->njobs].kind = j.kind;
			snprintf(f->jobs[f->njobs].op, sizeof(f->jobs[0].op), "%s", j.op ? j.op : "");
			f->njobs++;
			job_rec_release(&j);
			break;
		case FX_DONE:
			s = job_seen(f, e->id);
			assert_non_null(s);
			snprintf(one, sizeof(one), "DONE:%s%s%s", job_kind_name(s->kind),
				 s->op[0] ? ":" : "", s->op);
			break;
		case FX_RETRY:
			assert_int_equal(store_job_get(b->st, b->txn, e->id, &j), 0);
			snprintf(one, sizeof(one), "RETRY:%s%s%s#%lld", job_kind_name(j.kind),
				 j.op ? ":" : "", j.op ? j.op : "", (long long)j.attempts);
			job_rec_release(&j);
			break;
		}
		cat(o->fx, sizeof(o->fx), one);
	}
}

/* After a commit: every effect agrees with the store, and dispatch learns
 * them as router.c's router_effects does. */
static void carry_out(struct fixture *f)
{
	struct batch *b = &f->b;
	MDB_txn *txn;
	assert_int_equal(mdb_txn_begin(f->st.env, NULL, MDB_RDONLY, &txn), 0);
	for (size_t i = 0; i < b->nfx; i++) {
		const struct effect *e = &b->fx[i];
		struct job_rec j;
		int rc = e->type == FX_ACK ? 0 : store_job_get(&f->st, txn, e->id, &j);
		switch (e->type) {
		case FX_ACK:
			break;
		case FX_ADD:
			assert_int_equal(rc, 0);
			assert_int_equal(j.kind, e->kind);
			job_rec_release(&j);
			dispatch_add(f->x.disp, e->id, e->kind, e->conv, e->not_before);
			break;
		case FX_DONE:
			if (rc == 0)
				job_rec_release(&j);
			assert_int_equal(rc, MDB_NOTFOUND);
			dispatch_done(f->x.disp, e->id);
			break;
		case FX_RETRY:
			assert_int_equal(rc, 0);
			job_rec_release(&j);
			dispatch_retry(f->x.disp, e->id, e->not_before);
			break;
		}
	}
	mdb_txn_abort(txn);
	batch_clear(b);
}

/*
 * One input in one batch, wrapped as router.c wraps a batch (metrics staged
 * and kept only when it commits). o gets what the batch did. commit=false
 * aborts it instead.
 */
static void apply(struct fixture *f, const struct input *in, bool commit, bool stale,
		  struct observed *o)
{
	struct item it;
	build_item(f, in, &it);
	metrics_stage_begin();
	assert_int_equal(batch_begin(&f->b, &f->x), 0);
	if (stale) {
		static const enum job_kind kinds[] = { [IN_AI] = JOB_AI, [IN_SEND] = JOB_SEND,
						       [IN_FLEX] = JOB_FLEX };
		struct job_rec j;
		assert_true(in->kind == IN_AI || in->kind == IN_SEND || in->kind == IN_FLEX);
		assert_int_equal(batch_job_of(&f->b, &it.env, kinds[in->kind], &j), BATCH_STALE);
	}
	int rc = entry_point(&f->b, &it);
	assert_int_equal(rc, 0);
	if (in->twice) {
		struct item again;
		build_item(f, in, &again);
		assert_int_equal(entry_point(&f->b, &again), 0);
		env_release(&again.env);
	}
	observe(f, o);
	if (commit)
		rc = batch_commit(&f->b);
	batch_abort(&f->b);
	metrics_stage_end(commit && rc == 0);
	assert_int_equal(rc, 0);
	if (commit)
		carry_out(f);
	else
		batch_clear(&f->b);
	env_release(&it.env);
}

/* ------------------------------------------------------------------ */
/* Prep functions: adjust the given state through the store API */

/* The customer last wrote two days ago: the 24 h window is closed. */
static void prep_old_customer(void *fixture)
{
	struct fixture *f = fixture;
	MDB_txn *txn;
	struct conv_rec c;
	assert_int_equal(mdb_txn_begin(f->st.env, NULL, 0, &txn), 0);
	assert_int_equal(store_conv_get(&f->st, txn, KEY, &c), 0);
	c.last_in = clock_wall_ms() - 2 * 86400 * 1000ull;
	assert_int_equal(store_conv_put(&f->st, txn, KEY, &c), 0);
	conv_rec_release(&c);
	assert_int_equal(mdb_txn_commit(txn), 0);
}

/* Workers of every kind took every job that could go: attempts are running. */
static void prep_dispatch_all(void *fixture)
{
	struct fixture *f = fixture;
	static const char *const names[JOB_KINDS] = { "ai-1", "egress-1", "flex-1" };
	uint64_t now = clock_mono_ms(), id;
	struct zmqx_peer peer;
	for (int k = 0; k < JOB_KINDS; k++) {
		memset(&peer, 0, sizeof(peer));
		peer.len = strlen(names[k]);
		memcpy(peer.id, names[k], peer.len);
		dispatch_hello(f->x.disp, &peer, (enum job_kind)k, names[k], 8, now);
	}
	while (dispatch_next(f->x.disp, now, &id, &peer))
		;
}

/* The handoff's attempt failed and its retry committed; the worker has not
 * had the ack yet. */
static void prep_flex_failed_once(void *fixture)
{
	struct fixture *f = fixture;
	const struct input fail = FLEX_FAIL_AS(.same_attempt = true);
	struct observed o;
	prep_dispatch_all(f);
	apply(f, &fail, true, false, &o);
	assert_string_equal(o.fx, "RETRY:flex:handoff#1");
}

/* The Flex worker running the handoff went silent and was written off: its
 * attempt's result is still to come. */
static void prep_flex_worker_lost(void *fixture)
{
	struct fixture *f = fixture;
	struct zmqx_peer peer = { .len = 6 };
	prep_dispatch_all(f);
	memcpy(peer.id, "flex-1", 6);
	dispatch_worker_lost(f->x.disp, &peer);
}

/* The queued send's egress died mid-attempt: its outcome is unknown. */
static void prep_send_uncertain(void *fixture)
{
	struct fixture *f = fixture;
	uint64_t ids[8];
	size_t n = dispatch_queued_ids(f->x.disp, JOB_SEND, KEY, ids, 8);
	assert_true(n > 0);
	for (size_t i = 0; i < n; i++)
		dispatch_set_uncertain(f->x.disp, ids[i], clock_wall_ms());
}

/* ------------------------------------------------------------------ */
/* Reading the result */

struct snap {
	bool exists;
	struct conv_rec c;
};

static void snap_take(struct fixture *f, struct snap *s)
{
	MDB_txn *txn;
	memset(s, 0, sizeof(*s));
	assert_int_equal(mdb_txn_begin(f->st.env, NULL, MDB_RDONLY, &txn), 0);
	int rc = store_conv_get(&f->st, txn, KEY, &s->c);
	assert_true(rc == 0 || rc == MDB_NOTFOUND);
	s->exists = rc == 0;
	if (!s->exists)
		memset(&s->c, 0, sizeof(s->c));
	mdb_txn_abort(txn);
}

static const char *mode_x_name(enum mode_x m)
{
	static const char *const names[] = { "any", "ai", "escalating", "human", "(none)" };
	return names[m];
}

static enum mode_x mode_of(const struct snap *s)
{
	if (!s->exists)
		return M_GONE;
	return s->c.mode == MODE_AI ? M_AI : s->c.mode == MODE_ESCALATING ? M_ESC : M_HUMAN;
}

static void check_tri(const char *what, enum tri want, uint64_t v)
{
	if (want == SET && !v)
		fail_msg("%s: want set, is 0", what);
	if (want == ZERO && v)
		fail_msg("%s: want 0, is %llu", what, (unsigned long long)v);
}

static void check_str(const char *what, const char *want, const char *got)
{
	if (!want)
		return;
	if (!strcmp(want, "-")) {
		if (got)
			fail_msg("%s: want none, is '%s'", what, got);
		return;
	}
	if (!got || strcmp(want, got))
		fail_msg("%s: want '%s', is '%s'", what, want, got ? got : "(none)");
}

static void check_has(const char *what, const char *want, const char *got)
{
	if (want && (!got || !strstr(got, want)))
		fail_msg("%s: want it to contain '%s', is '%s'", what, want, got ? got : "(none)");
}

/* Timeline events and history roles the input added (before -> after). */
static void check_added(struct fixture *f, const struct expect *ex, const struct snap *before,
			const struct snap *after)
{
	MDB_txn *txn;
	char tl[256] = "", hist[256] = "", detail[256] = "", text[1024] = "";
	assert_int_equal(mdb_txn_begin(f->st.env, NULL, MDB_RDONLY, &txn), 0);
	for (uint64_t n = before->c.tl_seq + 1; n <= after->c.tl_seq; n++) {
		struct tl_rec t;
		assert_int_equal(store_tl_get(&f->st, txn, KEY, n, &t), 0);
		cat(tl, sizeof(tl), t.event);
		snprintf(detail, sizeof(detail), "%s", t.detail ? t.detail : "");
		tl_rec_release(&t);
	}
	for (uint64_t n = before->c.seq + 1; n <= after->c.seq; n++) {
		struct hist_rec h;
		assert_int_equal(store_hist_get(&f->st, txn, KEY, n, &h), 0);
		cat(hist, sizeof(hist), env_role_name(h.role));
		snprintf(text, sizeof(text), "%s", h.text ? h.text : "");
		hist_rec_release(&h);
	}
	mdb_txn_abort(txn);
	check_str("timeline added", ex->tl ? ex->tl : "", tl);
	check_str("timeline detail", ex->tl_detail, detail);
	check_str("history added", ex->hist ? ex->hist : "", hist);
	check_has("last history turn", ex->hist_text, text);
	if (ex->turn1 || ex->turn1_transcript != ANY) {
		struct hist_rec h;
		assert_int_equal(mdb_txn_begin(f->st.env, NULL, MDB_RDONLY, &txn), 0);
		assert_int_equal(store_hist_get(&f->st, txn, KEY, 1, &h), 0);
		check_str("history turn 1", ex->turn1, h.text ? h.text : "");
		check_tri("turn 1 transcript", ex->turn1_transcript, h.transcript);
		hist_rec_release(&h);
		mdb_txn_abort(txn);
	}
}

static void check_purged(struct fixture *f)
{
	MDB_txn *txn;
	MDB_stat stat;
	struct hist_rec h;
	assert_int_equal(mdb_txn_begin(f->st.env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(store_hist_get(&f->st, txn, KEY, 1, &h), MDB_NOTFOUND);
	assert_int_equal(mdb_stat(txn, f->st.audit, &stat), 0);
	assert_int_equal(stat.ms_entries, 1);
	mdb_txn_abort(txn);
}

static void check_metric(const char *line)
{
	char *text = metrics_render_string();
	size_t n = strlen(line);
	bool found = false;
	for (const char *p = text; p && !found; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		found = !strncmp(p, line, n) && (p[n] == '\n' || p[n] == '\0');
	if (!found)
		fail_msg("metrics: no line '%s' in\n%s", line, text);
	free(text);
}

static void run_row(void **state)
{
	struct fixture *f = *state;
	const struct row *r = f->row;
	const struct given *g = &givens[r->given];
	const struct expect *ex = &r->ex;
	struct observed o;
	struct snap before, after;

	assert_true(ex->mode != M_ANY);
	/* The given state, through the same entry points. */
	for (const struct input *in = g->steps; in->kind != IN_END; in++)
		apply(f, in, true, false, &o);
	snap_take(f, &before);
	if (mode_of(&before) != g->mode)
		fail_msg("given state: mode %s, want %s", mode_x_name(mode_of(&before)),
			 mode_x_name(g->mode));
	if (r->prep) {
		r->prep(f);
		conv_rec_release(&before.c);
		snap_take(f, &before);
	}

	apply(f, &r->in, !r->abort, ex->stale, &o);

	snap_take(f, &after);
	check_str("effects", ex->fx, o.fx);
	if (mode_of(&after) != ex->mode)
		fail_msg("mode: %s, want %s", mode_x_name(mode_of(&after)), mode_x_name(ex->mode));
	if (ex->send && (!o.got_send || !strstr(o.send, ex->send)))
		fail_msg("send job: want a body with '%s', is '%s'", ex->send,
			 o.got_send ? o.send : "(no send job)");
	if (ex->flex)
		check_str("flex job", ex->flex, o.got_flex ? o.flex : NULL);
	if (after.exists) {
		const struct conv_rec *c = &after.c;
		check_added(f, ex, &before, &after);
		assert_int_equal(c->pend_in - c->pend_out, ex->pend);
		check_str("esc_trigger", ex->trigger, c->esc_trigger);
		check_str("esc_reason", ex->reason, c->esc_reason);
		check_str("agent", ex->agent, c->agent);
		check_str("flex_ch", ex->ch, c->flex_ch);
		check_tri("ai_job", ex->ai_job, c->ai_job);
		check_tri("handoff_job", ex->handoff_job, c->handoff_job);
		check_tri("accepted_at", ex->accepted, c->accepted_at);
		check_tri("window_closed", ex->window_closed, c->window_closed);
		check_tri("no_agent_done", ex->no_agent_done, c->no_agent_done);
		check_tri("first_agent_at", ex->first_agent, c->first_agent_at);
		check_tri("queued_until", ex->queued, c->queued_until);
		if (ex->err_code)
			assert_int_equal(c->err_code, ex->err_code);
	}
	if (ex->audit)
		check_purged(f);
	if (r->abort && r->in.kind == IN_MSG) {
		/* Nothing of it stayed: Twilio's retry of it is processed as new. */
		MDB_txn *txn;
		assert_int_equal(mdb_txn_begin(f->st.env, NULL, MDB_RDONLY, &txn), 0);
		assert_int_equal(store_seen_get(&f->st, txn, r->in.sid), MDB_NOTFOUND);
		mdb_txn_abort(txn);
	}
	if (ex->metric)
		check_metric(ex->metric);
	conv_rec_release(&before.c);
	conv_rec_release(&after.c);
}

int main(void)
{
	static struct CMUnitTest tests[NROWS];
	enum log_level lvl = LOG_ERROR;
	const char *l = getenv("MACHINE_LOG");

	testenv_clear_baton();
	if (l && !strcmp(l, "debug"))
		lvl = LOG_DEBUG;
	else if (l && !strcmp(l, "info"))
		lvl = LOG_INFO;
	log_init("test_machine", lvl, true);
	for (size_t i = 0; i < NROWS; i++) {
		tests[i] = (struct CMUnitTest){ .name = rows[i].name, .test_func = run_row,
						.setup_func = setup, .teardown_func = teardown,
						.initial_state = (void *)&rows[i] };
	}
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	metrics_reset();
	return rc;
}
