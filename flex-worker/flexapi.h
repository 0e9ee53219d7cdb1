/*
 * flexapi — the Twilio Conversations and Flex Interactions requests of a
 * handoff, and the parsing of their answers (the Media Content Service's
 * upload answer too). No I/O.
 *
 * Requests are form-encoded (Conversations and Flex both take forms; the
 * Interaction's Channel and Routing are JSON strings inside the form).
 * Every parser checks types and returns -1 on a shape it does not know;
 * strings returned are owned by the caller.
 *
 * Exactly once: every message baton writes into a conversation carries
 * Attributes that name it (a history turn of a job, or a forwarded
 * history seq, and the media item when a turn has several), and the
 * parsers below find them in a message list, so that a retry posts only
 * what is missing.
 */
#ifndef BATON_FLEXAPI_H
#define BATON_FLEXAPI_H

#include <stdbool.h>
#include <stddef.h>

#include "envelope.h"

struct flex_interaction_req {
	const char *ch;          /* media channel: the new Conversation */
	const char *workspace;   /* WS... */
	const char *workflow;    /* WW... */
	const char *task_channel;
	const char *customer;    /* whatsapp:+... */
	const char *name;        /* ProfileName, may be NULL */
	const char *conv_key;
	const char *trigger;
	const char *reason;
	const char *summary;     /* may be NULL */
	const char *business;    /* the WhatsApp number the customer wrote to */
	const char *language;    /* the number's ai.language, may be empty */
	size_t turns;
};

struct flex_sids {
	char *kd; /* interaction */
	char *uo; /* interaction channel */
	char *wt; /* task */
};

/** Form of POST /v1/Interactions. Caller frees. */
char *flexapi_interaction_form(const struct flex_interaction_req *r);
/** KD, UO and WT from the Interaction response. 0 or -1. */
int flexapi_parse_interaction(const char *body, size_t len, struct flex_sids *out);
void flexapi_sids_release(struct flex_sids *s);

/**
 * From GET /v1/ParticipantConversations: the SIDs of conversations not
 * closed, other than the one named own_unique (NULL-terminated array, caller
 * frees with flexapi_strv_free), and in *own the SID of the one named
 * own_unique if it is not closed. *next gets meta.next_page_url or NULL.
 */
int flexapi_parse_participant_conversations(const char *body, size_t len, const char *own_unique,
					    char ***open, char **own, char **next);
/** From a Conversation: its chat_service_sid (IS...), the service MCS keeps its media in. 0 or -1. */
int flexapi_parse_service(const char *body, size_t len, char **is);
/** From an MCS upload's answer: the Media SID (ME + 32 hex). 0 or -1. */
int flexapi_parse_media_sid(const char *body, size_t len, char **me);
/** From GET {mcs}/v1/Services/{IS}/Media/{ME}: whether a message was sent with it
 *  (message_sid set). False on any other shape. */
bool flexapi_parse_media_attached(const char *body, size_t len);
/** "sid" of a created or fetched resource; also "state" when asked. 0 or -1. */
int flexapi_parse_sid(const char *body, size_t len, char **sid, char **state);
/** From GET .../Participants: the SID of the participant bound to address, or NULL. */
int flexapi_parse_participant(const char *body, size_t len, const char *address, char **mb,
			      char **next);
/*
 * One message of an injected history: the turn it shows and, for a turn
 * with several media items, which one (one MediaSid per message). Item 0
 * also carries the turn's text; a turn without media is item 0 alone.
 */
struct flex_slot {
	size_t turn;
	size_t item;
};

/** From GET .../Messages: marks done[i] for each message whose Attributes carry
 *  {"baton_job": job, "baton_turn": slots[i].turn} and, when slots[i].item > 0,
 *  "baton_item": slots[i].item (i < n). */
int flexapi_parse_injected(const char *body, size_t len, unsigned long long job,
			   const struct flex_slot *slots, bool *done, size_t n, char **next);
/**
 * From GET {taskrouter}/v1/Workspaces/{WS}/Tasks?EvaluateTaskAttributes=...:
 * the Interaction Flex made for conversation ch (Flex writes conversationSid,
 * flexInteractionSid and flexInteractionChannelSid into the task's
 * attributes). 0 with *out filled when found, -1 when not.
 */
int flexapi_parse_tasks(const char *body, size_t len, const char *ch, struct flex_sids *out);
/** The EvaluateTaskAttributes expression that finds the tasks of conversation ch. Caller frees. */
char *flexapi_task_query(const char *ch);

/** From GET .../Messages: marks done[k] for each message of the forward of history
 *  turn seq already there (k: its media item, 0 for the text; k < n). */
void flexapi_parse_forwarded(const char *body, size_t len, long long seq, bool *done, size_t n);
/** Attributes JSON of message item of a forwarded customer message
 *  ({"baton_seq"}, and "baton_item" when item > 0). Caller frees. */
char *flexapi_forward_attributes(long long seq, size_t item);

/** From a Conversation: the interaction SIDs baton stored in its Attributes, if any. */
int flexapi_parse_marked(const char *body, size_t len, struct flex_sids *out);

/** Attributes JSON of an injected message ({"baton_job","baton_turn"}, and
 *  "baton_item" when item > 0: item 0 is what a turn without media had). Caller frees. */
char *flexapi_turn_attributes(unsigned long long job, size_t turn, size_t item);
/** Attributes JSON marking the conversation with the handoff and its interaction. */
char *flexapi_mark_attributes(const char *conv_key, unsigned long long job,
			      const struct flex_sids *sids);
/** The readable transcript of turns (one line per turn, author and time). Caller frees. */
char *flexapi_transcript(const struct env_turn *turns, size_t n, const char *customer_label);
/** How a turn's role is shown to the agent ("Customer (Ana)", "Assistant", ...). Caller frees. */
char *flexapi_author_label(enum env_role role, const char *name);

void flexapi_strv_free(char **v);

#endif
