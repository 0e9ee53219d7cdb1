/*
 * envelope — the one message format on every baton socket.
 *
 * An envelope is a msgpack map: "v" (schema version), "t" (type code),
 * "id" (request or job id), "ts" (wall ms) and the fields of its type.
 * This file and envelope.c are the only code that knows the layout.
 *
 * Wire version 1. Upgrade rule: adding an optional field keeps the
 * version (decoders ignore keys they do not know); changing the meaning
 * or type of a field, or making one required, bumps ENV_VERSION, and a
 * router then rejects the old peers' frames until they are upgraded.
 *
 * Ownership: env_decode() fills a struct whose strings and turns it owns;
 * env_release() frees them. env_encode() borrows the struct and returns a
 * buffer the caller owns (free()).
 */
#ifndef BATON_ENVELOPE_H
#define BATON_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENV_VERSION 1
/* Largest frame accepted: a job carries at most ENV_TURNS_MAX turns of
 * at most a few KiB each; anything bigger is garbage or an attack. */
#define ENV_FRAME_MAX (4u * 1024 * 1024)
#define ENV_TURNS_MAX 1000
#define ENV_STR_MAX (256u * 1024)
/* A worker claims at most its capacity's worth of jobs in one HELLO. */
#define ENV_CLAIMS_MAX 100000

enum env_type {
	ENV_INBOUND = 1,     /* ingress -> router: a customer message */
	ENV_ACK = 2,         /* router -> ingress: durable (or not) */
	ENV_HELLO = 3,       /* worker -> router: alive, kind and capacity */
	ENV_JOB_AI = 4,      /* router -> ai-worker: answer this conversation */
	ENV_RESULT_AI = 5,   /* ai-worker -> router */
	ENV_JOB_SEND = 6,    /* router -> egress: send one WhatsApp message */
	ENV_RESULT_SEND = 7, /* egress -> router */
	ENV_JOB_FLEX = 8,    /* router -> flex-worker: a handoff or a forward */
	ENV_RESULT_FLEX = 9, /* flex-worker -> router */
	ENV_EVENT = 10,      /* ingress -> router: Conversations/TaskRouter/status/admin event */
	ENV_TYPE_MAX = 11
};

/* The "op" of an ENV_EVENT: what happened, as the router understands it. */
#define EV_MESSAGE_ADDED "message_added"   /* Conversations onMessageAdded */
#define EV_CONV_CLOSED "conversation_closed"
#define EV_TASK_DONE "task_done"           /* task.wrapup or task.completed */
#define EV_TASK_CANCELED "task_canceled"
#define EV_ACCEPTED "reservation_accepted"
#define EV_MESSAGE_FAILED "message_failed" /* status callback with an ErrorCode */
#define EV_ADMIN_HANDBACK "admin_handback"
#define EV_ADMIN_ESCALATE "admin_escalate"
#define EV_ADMIN_PURGE "admin_purge"       /* erase a conversation (right to erasure) */

enum env_role { ROLE_CUSTOMER = 0, ROLE_AI = 1, ROLE_AGENT = 2, ROLE_SYSTEM = 3 };

/* Status codes in ACK and RESULT_* envelopes. */
enum env_status {
	ST_OK = 0,        /* done */
	ST_DUPLICATE = 1, /* ACK: already stored earlier; still a success */
	ST_FAILED = 2,    /* permanent failure: do not retry */
	ST_RETRY = 3,     /* transient failure the worker gave up on: retry later */
	ST_MALFORMED = 4, /* upstream answered something we could not parse */
	ST_BUSY = 5,      /* ACK: router could not store it now (ingress answers 503) */
	ST_PROGRESS = 6,  /* RESULT_FLEX: a step done, the job goes on (the CH exists) */
};

/* A job a worker holds (running, or finished with its result not yet
 * acknowledged), and the attempt the router gave it. */
struct env_claim {
	uint64_t id;
	uint64_t attempt;
};

struct env_turn {
	enum env_role role;
	char *text;
	uint64_t ts;
	uint64_t seq;    /* history sequence number, 0 = not said */
	char *media;     /* media description (media.h JSON), NULL = none */
	bool transcript; /* text is the transcript of the turn's voice note */
};

/* Every field of every type; which ones a type uses is in envelope.c. */
struct envelope {
	unsigned version;
	enum env_type type;
	uint64_t id;
	uint64_t ts;

	char *conv;    /* conversation key */
	char *sid;     /* Twilio MessageSid (inbound) or returned SID (send) */
	char *from;
	char *to;
	char *body;
	char *name;    /* ProfileName, or worker name in HELLO */
	char *idem;    /* I-Twilio-Idempotency-Token */
	char *kind;    /* worker kind in HELLO: "ai", "egress", "flex" */
	char *prompt;  /* system prompt of an AI job */
	char *text;    /* AI reply text */
	char *reason;  /* escalation reason */
	char *summary; /* escalation summary */
	char *err;     /* error description (never a secret) */
	char *op;      /* flex job operation: "handoff" or "forward" */
	char *trigger; /* escalation trigger: tag, tool, rule, ai_failure, operator */
	char *ch;      /* Conversations SID (CH...) */
	char *mb;      /* Conversations participant SID (MB...) */
	char *kd;      /* Flex Interaction SID (KD...) */
	char *uo;      /* Flex Interaction channel SID (UO...) */
	char *wt;      /* TaskRouter task SID (WT...) */
	int64_t seq;   /* history sequence number the job concerns */
	char *tmpl;    /* WhatsApp template ContentSid (outside the 24 h window) */
	char *vars;    /* its ContentVariables JSON */
	int64_t status;
	int64_t credit;
	int64_t nmedia;
	/* What the message carried beyond text (media.h JSON): INBOUND, and
	 * the turn a FLEX forward sends. */
	char *media;
	/* Voice notes a worker transcribed (RESULT_AI, RESULT_FLEX): JSON
	 * [{"seq":N,"text":"..."}], stored by the router as those turns' text. */
	char *transcripts;
	int64_t code;  /* Twilio error code or HTTP status */
	bool escalate;
	struct env_turn *turns;
	size_t nturns;
	/*
	 * Exactly once (README "Guarantees"). attempt: the router's token for
	 * one dispatch of a job, echoed in its result. reconcile (JOB_SEND):
	 * an earlier attempt's outcome is unknown, so ask Twilio what it
	 * already sent before sending; since: wall ms from which that
	 * attempt's message would be listed; exclude: comma-separated SIDs
	 * already recorded for the conversation (not this job's). reconcile
	 * in RESULT_SEND: the send failed in a way that may have reached
	 * Twilio. claims (HELLO): the jobs the worker holds.
	 */
	int64_t attempt;
	bool reconcile;
	int64_t since;
	char *exclude;
	struct env_claim *claims;
	size_t nclaims;
};

enum env_error {
	ENV_EOK = 0,
	ENV_ETRUNCATED = -1, /* not a complete msgpack object, or bytes after it */
	ENV_ENOTMAP = -2,    /* top level is not a map */
	ENV_EVERSION = -3,   /* unknown schema version */
	ENV_ETYPE = -4,      /* unknown type code */
	ENV_EFIELD = -5,     /* a known field has the wrong msgpack type or size */
	ENV_EMISSING = -6,   /* a field the type requires is absent */
	ENV_ETOOBIG = -7,    /* frame, string or turn count over its bound */
};

/** Decode buf into env (zeroed first). Returns ENV_EOK or an env_error. */
int env_decode(const void *buf, size_t len, struct envelope *env);
/** Encode env; *out is malloc'd (caller frees), *outlen its size. Returns 0 or an env_error. */
int env_encode(const struct envelope *env, char **out, size_t *outlen);
/** Free owned fields; env is zeroed. Safe on a zeroed struct. */
void env_release(struct envelope *env);
const char *env_strerror(int err);
const char *env_type_name(enum env_type t);
const char *env_role_name(enum env_role r);
/** Parse "customer|ai|agent|system"; -1 if unknown. */
int env_role_parse(const char *s);
/** Append a turn (text copied). */
void env_add_turn(struct envelope *env, enum env_role role, const char *text, uint64_t ts);
/** Same, with the turn's history seq and media description (copied; NULL = none). */
struct env_turn *env_add_turn_seq(struct envelope *env, enum env_role role, const char *text,
				  uint64_t ts, uint64_t seq, const char *media);

#endif
