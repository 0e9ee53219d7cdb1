/*
 * outbox — what may leave for the customer: WhatsApp-sized parts, and the
 * 24-hour customer-service window (a template outside it, or nothing and
 * the conversation marked window_closed). See core.h.
 */
#include "core.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zmq.h>

#include "backoff.h"
#include "clock.h"
#include "kv.h"
#include "log.h"
#include "utf8.h"
#include "xalloc.h"

/* Byte length of the longest prefix of s[0..len) with at most max
 * characters, cut after the last whitespace in it when there is one. */
static size_t outbox_cut(const char *s, size_t len, size_t max)
{
	size_t n = utf8_prefix(s, len, max);
	if (n == len)
		return n;
	/* A byte scan is safe: ' ' and '\n' never occur inside a UTF-8 character. */
	for (size_t i = n; i > 0; i--)
		if (s[i - 1] == ' ' || s[i - 1] == '\n')
			return i;
	return n;
}

/*
 * The last part of a reply cut at ai.max_parts: at most max characters of
 * s[0..len), ending after the last sentence (". ", "! ", "? " or a line
 * break) in its second half, else at the last space, else anywhere;
 * trailing spaces dropped. Its byte length.
 */
static size_t outbox_cut_final(const char *s, size_t len, size_t max)
{
	size_t n = outbox_cut(s, len, max), sentence = 0;
	/* Where the second half starts: 0 when the part has no second half. */
	size_t half_at = utf8_prefix(s, n, max / 2);
	if (half_at == n)
		half_at = 0;
	/* Bytes, not characters: the marks are ASCII, never inside a character. */
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if ((c == '.' || c == '!' || c == '?') && i + 1 < n && (s[i + 1] == ' ' || s[i + 1] == '\n'))
			sentence = i + 1;
		else if (c == '\n')
			sentence = i;
	}
	if (sentence && sentence >= half_at)
		n = sentence;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n'))
		n--;
	return n;
}

/* ContentVariables for the window template: %t becomes the text, JSON-escaped. */
static char *outbox_template_vars(const struct config *cfg, const char *text)
{
	json_t *js = json_string(text);
	char *q = js ? json_dumps(js, JSON_ENCODE_ANY) : xstrdup("\"\"");
	json_decref(js);
	size_t ql = strlen(q);
	char *esc = xstrndup(q + 1, ql >= 2 ? ql - 2 : 0); /* without the quotes */
	free(q);
	const char *t = cfg->whatsapp_template_vars, *mark = strstr(t, "%t");
	char *out = mark ? xasprintf("%.*s%s%s", (int)(mark - t), t, esc, mark + 2) : xstrdup(t);
	free(esc);
	return out;
}

static bool outbox_window_open(const struct batch *b, const struct conv_rec *c)
{
	uint64_t now = clock_wall_ms();
	return !c->last_in || now < c->last_in + (uint64_t)b->x->cfg->whatsapp_window_s * 1000u;
}

int outbox_window_closed(struct batch *b, const char *key,
				struct conv_rec *c, const char *why)
{
	struct log_ids ids = { .conv = key };
	bool first = !c->window_closed;
	c->window_closed = clock_wall_ms();
	log_emit(LOG_WARN, &ids, "WhatsApp window closed (%s): message not sent, conversation marked "
		 "window_closed for the operator", why);
	return first ? store_tl_add(b->st, b->txn, key, c, "window_closed", why) : 0;
}

/* Queues text for the customer, split into WhatsApp-sized messages, at most
 * ai.max_parts of them (the last one cut with an ellipsis). Outside the
 * 24 h window it sends the configured template instead, or nothing. */
int outbox_queue(struct batch *b, const char *key,
			     struct conv_rec *c, const char *text, uint64_t hseq, bool from_ai,
			     uint64_t job)
{
	/* With several numbers a reply leaves from the number the customer
	 * wrote to; twilio.whatsapp_from only overrides a single-number setup. */
	const char *from = b->x->cfg->twilio_whatsapp_from[0] && !b->x->cfg->nnumbers ?
		b->x->cfg->twilio_whatsapp_from : c->business;
	const struct config *ncfg = rctx_cfg(b->x, key);
	const char *p = text;
	if (!outbox_window_open(b, c)) {
		if (!ncfg->whatsapp_template_sid[0])
			return outbox_window_closed(b, key, c, "free-form message after 24 h");
		char *vars = outbox_template_vars(ncfg, text);
		struct job_rec j = { .kind = JOB_SEND, .conv = (char *)key, .created = clock_wall_ms(),
				     .hseq = hseq, .to = c->customer, .from = (char *)from,
				     .body = (char *)text, .tmpl = ncfg->whatsapp_template_sid,
				     .vars = vars, .op = from_ai ? (char *)OP_AI_REPLY : NULL };
		uint64_t id;
		int rc = job_add(b, &j, &id, 0);
		free(vars);
		return rc;
	}
	int parts = 0;
	size_t left = strlen(text);
	while (left) {
		size_t n = outbox_cut(p, left, ROUTER_BODY_CHARS);
		char *part;
		if (++parts == b->x->cfg->ai_max_parts && n < left) {
			/* A runaway answer (a model looping, a 250,000-character
			 * reply) never becomes a hundred messages. */
			struct log_ids ids = { .conv = key, .job = job };
			n = outbox_cut_final(p, left, ROUTER_BODY_CHARS - 1);
			part = xasprintf("%.*s\u2026", (int)n, p);
			log_emit(LOG_WARN, &ids, "reply cut at %d WhatsApp messages (ai.max_parts): %zu "
				 "bytes left out", b->x->cfg->ai_max_parts, left - n);
			metrics_inc(&RM_REPLIES_CUT, NULL, NULL);
			n = left;
		} else {
			part = xstrndup(p, n);
		}
		struct job_rec j = { .kind = JOB_SEND, .conv = (char *)key, .created = clock_wall_ms(),
				     .hseq = hseq, .to = c->customer, .from = (char *)from,
				     .body = part, .op = from_ai ? (char *)OP_AI_REPLY : NULL };
		uint64_t id;
		int rc = job_add(b, &j, &id, 0);
		free(part);
		if (rc)
			return rc;
		p += n;
		left -= n;
	}
	return 0;
}
