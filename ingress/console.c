/*
 * console — the operator console's page and JSON API; see console.h.
 * Here, in order: answers and auth; the conversation list with its search;
 * one conversation (baton's own turns and hand-backs told for people);
 * the reports' walk over every timeline; the routing of /console URLs.
 */
#include "console.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistd.h>
#include <unistr.h>

#include "auth.h"
#include "clock.h"
#include "console_assets.h"
#include "envelope.h"
#include "log.h"
#include "convkey.h"
#include "store.h"
#include "xalloc.h"

#define CONSOLE_PREFIX "/console"
#define CONSOLE_API CONSOLE_PREFIX "/api/"
#define CONSOLE_LIMIT_DEFAULT 200
#define CONSOLE_LIMIT_MAX 5000
/* A conversation's page shows its newest turns and timeline entries. */
#define CONSOLE_HISTORY_MAX 500
#define CONSOLE_TIMELINE_MAX 500
#define CONSOLE_REALM "baton console"

/* The page loads nothing from elsewhere, runs no inline script or style,
 * cannot be framed and submits no form anywhere (the login is JavaScript). */
static const char CONSOLE_CSP[] = "default-src 'self'; img-src 'self' data:; "
				  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

struct console {
	const struct config *cfg;
	console_forward_fn fwd;
	void *host;
	bool enabled;
	struct store st;
	bool open; /* st holds the read-only environment */
	struct MHD_Response **assets; /* one per console_assets entry */
	size_t nassets;
	struct MHD_Response *r_404, *r_405_get, *r_405_post, *r_401_bearer, *r_401_any, *r_415,
		*r_503;
};

/* ------------------------------------------------------------------ */
/* responses                                                           */

static void console_secure(struct MHD_Response *r)
{
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, CONSOLE_CSP);
	MHD_add_response_header(r, MHD_HTTP_HEADER_X_FRAME_OPTIONS, "DENY");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
}

/* A JSON answer built once: API errors are never cached either. */
static struct MHD_Response *console_fixed(const char *json)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), (void *)json,
								 MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	console_secure(r);
	return r;
}

static void console_make_responses(struct console *k)
{
	for (k->nassets = 0; console_assets[k->nassets].name; k->nassets++)
		;
	k->assets = xcalloc(k->nassets ? k->nassets : 1, sizeof(*k->assets));
	for (size_t i = 0; i < k->nassets; i++) {
		const struct console_asset *a = &console_assets[i];
		struct MHD_Response *r = MHD_create_response_from_buffer(
			a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
		/* Revalidated every time: a new ingress serves its own page at once. */
		MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
		console_secure(r);
		k->assets[i] = r;
	}
	k->r_404 = console_fixed("{\"error\":\"not found\"}\n");
	k->r_405_get = console_fixed("{\"error\":\"method not allowed\"}\n");
	MHD_add_response_header(k->r_405_get, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	k->r_405_post = console_fixed("{\"error\":\"method not allowed\"}\n");
	MHD_add_response_header(k->r_405_post, MHD_HTTP_HEADER_ALLOW, "POST");
	k->r_401_bearer = console_fixed("{\"error\":\"unauthorized\"}\n");
	MHD_add_response_header(k->r_401_bearer, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
				"Bearer realm=\"" CONSOLE_REALM "\"");
	k->r_401_any = console_fixed("{\"error\":\"unauthorized\"}\n");
	MHD_add_response_header(k->r_401_any, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
				"Bearer realm=\"" CONSOLE_REALM "\"");
	MHD_add_response_header(k->r_401_any, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
				"Basic realm=\"" CONSOLE_REALM "\", charset=\"UTF-8\"");
	k->r_415 = console_fixed("{\"error\":\"expected Content-Type: application/json\"}\n");
	k->r_503 = console_fixed("{\"error\":\"the router's state is not available yet\"}\n");
}

/* Queues root (consumed) as a JSON answer. */
static enum MHD_Result console_json(struct MHD_Connection *c, unsigned status, json_t *root)
{
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text)
		return MHD_NO;
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text,
								 MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	console_secure(r);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result console_error(struct MHD_Connection *c, unsigned status, const char *why)
{
	return console_json(c, status, json_pack("{s:s}", "error", why));
}

/* ------------------------------------------------------------------ */
/* auth                                                                */

/* Whether the request carries the console's credentials; *bearer when it tried a token. */
static bool console_authorized(const struct console *k, struct MHD_Connection *c, bool *bearer)
{
	const struct config *cfg = k->cfg;
	*bearer = auth_scheme(c, "Bearer");
	if (*bearer)
		return auth_bearer(c, cfg->console_token);
	return auth_scheme(c, "Basic") && cfg->console_user[0] && cfg->console_password[0] &&
	       auth_basic(c, cfg->console_user, cfg->console_password);
}

/* ------------------------------------------------------------------ */
/* reads                                                               */

/* Begins a read of the router's state, opening it the first time it exists. */
static int console_read_begin(struct console *k, MDB_txn **txn)
{
	if (!k->open) {
		char *path = xasprintf("%s/data.mdb", k->cfg->state_dir);
		bool exists = access(path, R_OK) == 0;
		free(path);
		if (!exists || store_open_readonly(&k->st, k->cfg->state_dir) < 0)
			return -1;
		k->open = true;
	}
	int rc = mdb_txn_begin(k->st.env, NULL, MDB_RDONLY, txn);
	/* The router grew the map since we opened it: adopt the new size. */
	if (rc == MDB_MAP_RESIZED && mdb_env_set_mapsize(k->st.env, 0) == 0)
		rc = mdb_txn_begin(k->st.env, NULL, MDB_RDONLY, txn);
	if (rc) {
		log_warn("console: cannot read the state: %s", mdb_strerror(rc));
		store_close(&k->st);
		k->open = false;
		*txn = NULL;
		return -1;
	}
	return 0;
}

static json_t *console_str(const char *s)
{
	if (!s)
		return json_null();
	json_t *v = json_string(s);
	/* Stored text is UTF-8 checked on the way in; never fail a page on one that is not. */
	return v ? v : json_string("\xef\xbf\xbd");
}

static json_t *console_ms(uint64_t ms)
{
	return ms ? json_integer((json_int_t)ms) : json_null();
}

/* When a person took the conversation over: the agent accepted the task,
 * or wrote first (a takeover has no acceptance). 0 = nobody yet. Both are
 * reset by each escalation, so they are this stretch's. */
static uint64_t console_agent_since(const struct conv_rec *c)
{
	if (c->accepted_at && c->first_agent_at)
		return c->accepted_at < c->first_agent_at ? c->accepted_at : c->first_agent_at;
	return c->accepted_at ? c->accepted_at : c->first_agent_at;
}

/* The mode says where messages go; an operator wants to know whether a
 * person is on it: escalating and human both wait until an agent accepts. */
static const char *console_state(const struct conv_rec *c)
{
	if (c->mode == MODE_AI)
		return "ai";
	return console_agent_since(c) ? "with_agent" : "waiting";
}

/* What the list and the queue show of one conversation. */
static json_t *console_summary(const struct console *k, const char *key, const struct conv_rec *c)
{
	char masked[STORE_KEY_MAX + 1], when[40];
	char *cust, *biz;
	uint64_t last = conv_last_activity(c);
	store_conv_parties(key, c, &cust, &biz);
	log_show_address(cust, masked, sizeof(masked));
	clock_iso8601(last, when, sizeof(when));
	json_t *o = json_object();
	json_object_set_new(o, "key", console_str(key));
	json_object_set_new(o, "customer", console_str(masked));
	json_object_set_new(o, "name", console_str(c->name && *c->name ? c->name : NULL));
	json_object_set_new(o, "business", console_str(biz));
	json_object_set_new(o, "mode", json_string(conv_mode_name(c->mode)));
	json_object_set_new(o, "state", json_string(console_state(c)));
	json_object_set_new(o, "last_activity_ms", json_integer((json_int_t)last));
	json_object_set_new(o, "last_activity", json_string(when));
	json_object_set_new(o, "customer_turns", json_integer((json_int_t)c->turns));
	json_object_set_new(o, "messages", json_integer((json_int_t)c->seq));
	json_object_set_new(o, "escalations", json_integer((json_int_t)c->escalations));
	json_object_set_new(o, "window_closed", json_boolean(c->window_closed != 0));
	json_object_set_new(o, "last_error_code",
			    c->err_code ? json_integer((json_int_t)c->err_code) : json_null());
	if (c->mode != MODE_AI) {
		json_t *e = json_object();
		json_object_set_new(e, "trigger", console_str(c->esc_trigger));
		json_object_set_new(e, "reason", console_str(c->esc_reason));
		json_object_set_new(e, "at_ms", console_ms(c->esc_at));
		json_object_set_new(e, "accepted_at_ms", console_ms(c->accepted_at));
		uint64_t since = console_agent_since(c);
		json_object_set_new(e, "agent_since_ms", console_ms(since));
		json_object_set_new(e, "waited_ms", since && c->esc_at && since >= c->esc_at
						      ? json_integer((json_int_t)(since - c->esc_at))
						      : json_null());
		json_object_set_new(e, "agent", console_str(c->agent));
		json_object_set_new(e, "queued_until_ms", console_ms(c->queued_until));
		json_object_set_new(e, "flex_conversation", console_str(c->flex_ch));
		json_object_set_new(e, "task", console_str(c->flex_wt));
		json_object_set_new(o, "escalation", e);
	} else {
		json_object_set_new(o, "escalation", json_null());
	}
	free(cust);
	free(biz);
	return o;
}

struct console_row {
	char *key;
	struct conv_rec c;
	uint64_t last;
};

static int console_by_activity(const void *a, const void *b)
{
	const struct console_row *x = a, *y = b;
	if (x->last != y->last)
		return x->last < y->last ? 1 : -1;
	return strcmp(x->key, y->key);
}

/* The queue: longest waiting first (never escalated records last). */
static int console_by_wait(const void *a, const void *b)
{
	const struct console_row *x = a, *y = b;
	uint64_t ex = x->c.esc_at ? x->c.esc_at : UINT64_MAX, ey = y->c.esc_at ? y->c.esc_at : UINT64_MAX;
	if (ex != ey)
		return ex < ey ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* ------------------------------------------------------------------ */
/* search                                                              */

/*
 * text with case and accents folded, so "jose" finds "José" however
 * WhatsApp spelled the profile name. Caller frees; NULL when text is not
 * UTF-8 (it then matches nothing).
 */
static char *console_fold(const char *text)
{
	size_t len = 0;
	uint8_t *nfd = u8_normalize(UNINORM_NFD, (const uint8_t *)text, strlen(text), NULL, &len);
	if (!nfd)
		return NULL;
	/* A lowercased character takes at most 4 bytes; NFD never shrinks below one per byte. */
	char *out = xmalloc(len * 4 + 1);
	size_t o = 0;
	const uint8_t *p = nfd, *end = nfd + len;
	while (p < end) {
		ucs4_t uc;
		int n = u8_mbtoucr(&uc, p, (size_t)(end - p));
		if (n < 0)
			goto fail;
		p += n;
		if (uc_is_general_category(uc, UC_CATEGORY_M))
			continue; /* the accents NFD split off */
		int w = u8_uctomb((uint8_t *)out + o, uc_tolower(uc), 4);
		if (w > 0)
			o += (size_t)w;
	}
	out[o] = '\0';
	free(nfd);
	return out;
fail:
	free(nfd);
	free(out);
	return NULL;
}

#define CONSOLE_QUERY_MAX 100

/* ?q=: a piece of the customer's name, or of their number. */
struct console_query {
	char *name;                          /* folded; NULL = no search */
	char digits[CONSOLE_QUERY_MAX + 1];  /* "" = q is not a number */
};

/* 0, or -1 when q is too long. An empty q searches nothing. */
static int console_query_parse(const char *q, struct console_query *out)
{
	memset(out, 0, sizeof(*out));
	if (!q)
		return 0;
	while (*q == ' ')
		q++;
	size_t n = strlen(q);
	while (n > 0 && q[n - 1] == ' ')
		n--;
	if (n > CONSOLE_QUERY_MAX)
		return -1;
	if (n == 0)
		return 0;
	char *trimmed = xstrndup(q, n);
	out->name = console_fold(trimmed);
	if (!out->name)
		out->name = xstrdup(""); /* not UTF-8: matches no name */
	/* "+55 11 9888", "(11) 98888-1111": a number as people type it. */
	size_t d = 0;
	bool number = true;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)trimmed[i];
		if (isdigit(ch))
			out->digits[d++] = (char)ch;
		else if (!strchr("+-(). ", ch))
			number = false;
	}
	out->digits[number ? d : 0] = '\0';
	free(trimmed);
	return 0;
}

static void console_query_release(struct console_query *q)
{
	free(q->name);
	q->name = NULL;
}

/* Whether conversation key matches q: its name contains the text, or its
 * customer's number contains the digits. */
static bool console_query_match(const struct console_query *q, const char *key,
				const struct conv_rec *c)
{
	if (!q->name)
		return true;
	if (*q->name && c->name && *c->name) {
		char *name = console_fold(c->name);
		bool hit = name && strstr(name, q->name);
		free(name);
		if (hit)
			return true;
	}
	if (!q->digits[0])
		return false;
	/* The customer is the key's part before '|': their digits, in order. */
	char digits[STORE_KEY_MAX + 1];
	size_t d = 0;
	for (const char *p = key; *p && *p != '|' && d < sizeof(digits) - 1; p++)
		if (isdigit((unsigned char)*p))
			digits[d++] = *p;
	digits[d] = '\0';
	return strstr(digits, q->digits) != NULL;
}

/* ------------------------------------------------------------------ */
/* lists                                                               */

#define MODE_ALL (-1)
#define MODE_QUEUE (-2)

static enum MHD_Result console_api_list(struct console *k, struct MHD_Connection *c)
{
	const char *ms = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "mode");
	const char *ls = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	const char *qs = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "q");
	struct console_query q;
	int mode;
	long limit = CONSOLE_LIMIT_DEFAULT;
	if (!ms || !*ms || !strcmp(ms, "all"))
		mode = MODE_ALL;
	else if (!strcmp(ms, "queue"))
		mode = MODE_QUEUE;
	else if (!strcmp(ms, "ai"))
		mode = MODE_AI;
	else if (!strcmp(ms, "escalating"))
		mode = MODE_ESCALATING;
	else if (!strcmp(ms, "human"))
		mode = MODE_HUMAN;
	else
		return console_error(c, 400, "mode: expected all, ai, escalating, human or queue");
	if (ls && *ls) {
		char *end;
		limit = strtol(ls, &end, 10);
		if (*end || limit < 1 || limit > CONSOLE_LIMIT_MAX)
			return console_error(c, 400, "limit: expected a number from 1 to 5000");
	}
	if (console_query_parse(qs, &q) < 0)
		return console_error(c, 400, "q: at most 100 characters");

	MDB_txn *txn;
	if (console_read_begin(k, &txn) < 0) {
		console_query_release(&q);
		return MHD_queue_response(c, 503, k->r_503);
	}
	MDB_cursor *cur = NULL;
	MDB_val kv, v;
	struct console_row *rows = NULL;
	size_t n = 0, cap = 0;
	json_int_t counts[3] = { 0, 0, 0 };
	/* The queue, escalating and human walk the modes index (the conversations
	 * not in ai mode: small even when conv is huge), so the page's queue poll
	 * every 2 s stays cheap; all and ai need every record. */
	bool by_modes = mode != MODE_ALL && mode != MODE_AI;
	MDB_stat all = { 0 };
	int rc = by_modes ? mdb_stat(txn, k->st.conv, &all) : 0;
	if (rc == 0)
		rc = mdb_cursor_open(txn, by_modes ? k->st.modes : k->st.conv, &cur);
	for (rc = rc ? rc : mdb_cursor_get(cur, &kv, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &kv, &v, MDB_NEXT)) {
		struct conv_rec cr;
		char *key = xstrndup(kv.mv_data, kv.mv_size);
		if (by_modes ? store_conv_get(&k->st, txn, key, &cr) != 0 : store_conv_decode(&v, &cr) != 0) {
			free(key);
			continue;
		}
		if ((unsigned)cr.mode <= MODE_HUMAN)
			counts[cr.mode]++;
		bool want = mode == MODE_ALL || (mode == MODE_QUEUE ? cr.mode != MODE_AI
								   : (int)cr.mode == mode);
		if (want && q.name)
			want = console_query_match(&q, key, &cr);
		if (!want) {
			free(key);
			conv_rec_release(&cr);
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			rows = xrealloc(rows, cap * sizeof(*rows));
		}
		rows[n].key = key;
		rows[n].c = cr;
		rows[n].last = conv_last_activity(&cr);
		n++;
	}
	if (cur)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	console_query_release(&q);
	if (by_modes) {
		/* Every other record is in ai mode. */
		json_int_t other = counts[MODE_ESCALATING] + counts[MODE_HUMAN];
		counts[MODE_AI] = (json_int_t)all.ms_entries > other ? (json_int_t)all.ms_entries - other : 0;
	}
	if (rc != MDB_NOTFOUND)
		log_warn("console: cannot list conversations: %s", mdb_strerror(rc));
	if (n)
		qsort(rows, n, sizeof(*rows), mode == MODE_QUEUE ? console_by_wait : console_by_activity);

	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		if ((long)i < limit)
			json_array_append_new(arr, console_summary(k, rows[i].key, &rows[i].c));
		free(rows[i].key);
		conv_rec_release(&rows[i].c);
	}
	free(rows);
	if (rc != MDB_NOTFOUND) {
		json_decref(arr);
		return MHD_queue_response(c, 503, k->r_503);
	}
	json_t *root = json_object();
	json_object_set_new(root, "now_ms", json_integer((json_int_t)clock_wall_ms()));
	json_object_set_new(root, "mode", json_string(ms && *ms ? ms : "all"));
	json_object_set_new(root, "q", console_str(qs && *qs ? qs : NULL));
	json_object_set_new(root, "total", json_integer((json_int_t)n));
	json_object_set_new(root, "counts", json_pack("{s:I, s:I, s:I}", "ai", counts[MODE_AI],
						      "escalating", counts[MODE_ESCALATING],
						      "human", counts[MODE_HUMAN]));
	json_object_set_new(root, "conversations", arr);
	return console_json(c, 200, root);
}

/* ------------------------------------------------------------------ */
/* transcript                                                          */

/* A hand-back's system turn and its handed_back entry are written in one
 * transaction, each with its own clock reading: this far apart at most. */
#define CONSOLE_TURN_SLACK_MS 5000

static bool console_is(const char *s, const char *want)
{
	return s && !strcmp(s, want);
}

static bool console_placeholder(const char *p)
{
	return p[0] == '%' && (p[1] == 'h' || p[1] == 'n');
}

/*
 * Whether text is what the router's handoff_expand made of tmpl: each %h
 * and %n stands for any text (the hours, the next opening). A template of
 * placeholders only would match anything, so it matches nothing.
 */
static bool console_template_match(const char *tmpl, const char *text)
{
	size_t fixed = 0;
	for (const char *p = tmpl; *p; p++) {
		if (console_placeholder(p))
			p++;
		else
			fixed++;
	}
	if (!fixed)
		return false;
	/* Glob matching with one backtrack point, the last placeholder seen. */
	const char *t = tmpl, *s = text, *star_t = NULL, *star_s = NULL;
	while (*s) {
		if (console_placeholder(t)) {
			t += 2;
			star_t = t;
			star_s = s;
		} else if (*t && *t == *s) {
			t++;
			s++;
		} else if (star_t) {
			t = star_t;
			s = ++star_s;
		} else {
			return false;
		}
	}
	while (console_placeholder(t))
		t += 2;
	return *t == '\0';
}

/*
 * baton's own messages are stored as ai turns (the customer gets them from
 * the same number), but the AI did not write them: the setting text comes
 * from and its kind ("holding" or "notice"), or NULL for the AI's words.
 * cfg is the conversation's number's; a turn sent under settings since
 * changed shows as the AI's.
 */
static const char *console_own_message(const struct config *cfg, const char *text,
				       const char **kind)
{
	const struct {
		const char *setting, *kind, *text;
		bool tmpl;
	} own[] = {
		{ "handoff.holding_message", "holding", cfg->handoff_holding_message, false },
		{ "handoff.closed_message", "holding", cfg->handoff_closed_message, true },
		{ "handoff.no_agent_message", "notice", cfg->handoff_no_agent_message, false },
		{ "handoff.no_agent_ai_message", "notice", cfg->handoff_no_agent_ai_message, false },
		{ "handoff.failure_message", "notice", cfg->handoff_failure_message, false },
		{ "ai.apology", "notice", cfg->ai_apology, false },
	};
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		const char *m = own[i].text;
		if (!m || !*m)
			continue;
		if (own[i].tmpl ? console_template_match(m, text) : !strcmp(m, text)) {
			*kind = own[i].kind;
			return own[i].setting;
		}
	}
	return NULL;
}

/* "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
static void console_duration(uint64_t ms, char *buf, size_t len)
{
	unsigned long long s = ms / 1000, m = s / 60, h = m / 60;
	if (s < 60)
		snprintf(buf, len, "%llu s", s);
	else if (m < 60)
		snprintf(buf, len, "%llu min", m);
	else if (h < 48 && m % 60)
		snprintf(buf, len, "%llu h %llu min", h, m % 60);
	else if (h < 48)
		snprintf(buf, len, "%llu h", h);
	else
		snprintf(buf, len, "%llu d %llu h", h / 24, h % 24);
}

/* How a hand-back path (the handed_back entry's detail) reads. */
static const char *console_path_words(const char *path)
{
	static const struct {
		const char *path, *words;
	} words[] = {
		{ "agent_closed", "the agent closed the chat" },
		{ "task_completed", "task completed" },
		{ "operator", "by an operator" },
		{ "inactivity_timeout", "no messages for a while" },
		{ "no_agent", "no agent was available" },
		{ "reset", "the customer started over" },
	};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcmp(words[i].path, path))
			return words[i].words;
	return path;
}

/* One human stretch as the timeline tells it. */
struct console_stretch {
	const char *path;  /* how it ended; NULL = its handed_back entry is not in tl */
	const char *agent; /* who had it last; NULL = nobody took it */
	uint64_t escalated, agent_since, ended;
};

/* The stretch a hand-back's system turn at ts closed, from the timeline
 * entries tl[0..n) (oldest first). */
static void console_stretch_of(const struct tl_rec *tl, size_t n, uint64_t ts,
			       struct console_stretch *out)
{
	memset(out, 0, sizeof(*out));
	size_t hb = n;
	uint64_t best = UINT64_MAX;
	for (size_t i = 0; i < n; i++) {
		if (!console_is(tl[i].event, "handed_back"))
			continue;
		uint64_t d = tl[i].ts > ts ? tl[i].ts - ts : ts - tl[i].ts;
		if (d < best) {
			best = d;
			hb = i;
		}
	}
	if (hb == n || best > CONSOLE_TURN_SLACK_MS)
		return;
	out->path = tl[hb].detail ? tl[hb].detail : "";
	out->ended = tl[hb].ts;
	for (size_t i = hb; i-- > 0;) {
		const char *ev = tl[i].event;
		if (console_is(ev, "handed_back"))
			break; /* the stretch before */
		bool took = console_is(ev, "accepted") || console_is(ev, "first_agent_reply") ||
			    console_is(ev, "agent_takeover");
		if (took) {
			/* Walking back: the earliest of these is when a person
			 * took it, the latest named one who had it at the end. */
			out->agent_since = tl[i].ts;
			if (!out->agent && tl[i].detail && *tl[i].detail)
				out->agent = tl[i].detail;
		}
		if (console_is(ev, "escalated") || console_is(ev, "agent_takeover")) {
			out->escalated = tl[i].ts;
			break;
		}
	}
}

/* "Handed back to the AI — task completed, after 12 min with Marta". Caller frees. */
static char *console_handback_line(const struct console_stretch *st)
{
	char dur[48];
	if (!st->path)
		return xstrdup("Handed back to the AI.");
	const char *why = console_path_words(st->path);
	if (st->agent_since && st->ended >= st->agent_since) {
		console_duration(st->ended - st->agent_since, dur, sizeof(dur));
		return xasprintf("Handed back to the AI \xe2\x80\x94 %s, after %s with %s", why, dur,
				 st->agent ? st->agent : "an agent");
	}
	if (st->escalated && st->ended >= st->escalated) {
		console_duration(st->ended - st->escalated, dur, sizeof(dur));
		return xasprintf("Handed back to the AI \xe2\x80\x94 %s, after %s waiting for an agent",
				 why, dur);
	}
	return xasprintf("Handed back to the AI \xe2\x80\x94 %s", why);
}

/*
 * One transcript turn. A system turn is the router's note to the LLM (the
 * hand-back's, today): its wording is instructions, not something an
 * operator should read, so it never leaves here; the hand-back's own line
 * is built from the timeline instead.
 */
static json_t *console_turn(const struct config *cfg, uint64_t seq, const struct hist_rec *h,
			    const struct tl_rec *tl, size_t ntl)
{
	json_t *o = json_object();
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	json_object_set_new(o, "ts", json_integer((json_int_t)h->ts));
	json_object_set_new(o, "role", json_string(env_role_name(h->role)));
	const char *text = h->text ? h->text : "";
	if (h->role == ROLE_SYSTEM) {
		struct console_stretch st;
		console_stretch_of(tl, ntl, h->ts, &st);
		char *line = console_handback_line(&st);
		json_object_set_new(o, "kind", json_string(st.path ? "handback" : "note"));
		json_object_set_new(o, "text", console_str(line));
		free(line);
		if (st.path) {
			json_t *b = json_object();
			json_object_set_new(b, "path", console_str(st.path));
			json_object_set_new(b, "agent", console_str(st.agent));
			json_object_set_new(b, "escalated_ms", console_ms(st.escalated));
			json_object_set_new(b, "agent_since_ms", console_ms(st.agent_since));
			json_object_set_new(b, "at_ms", console_ms(st.ended));
			json_object_set_new(o, "handback", b);
		}
		return o;
	}
	const char *kind = NULL, *setting = NULL;
	if (h->role == ROLE_AI)
		setting = console_own_message(cfg, text, &kind);
	json_object_set_new(o, "kind", json_string(kind ? kind : "message"));
	if (setting)
		json_object_set_new(o, "setting", json_string(setting));
	json_object_set_new(o, "text", console_str(text));
	if (h->who)
		json_object_set_new(o, "agent", console_str(h->who));
	if (h->nmedia)
		json_object_set_new(o, "media", json_integer((json_int_t)h->nmedia));
	if (h->escalate)
		json_object_set_new(o, "escalate", json_true());
	return o;
}

/* The conversation's record, its timeline and the newest turns of its transcript. */
static json_t *console_detail(struct console *k, MDB_txn *txn, const char *key,
			      const struct conv_rec *c)
{
	json_t *root = console_summary(k, key, c);
	json_object_set_new(root, "created_ms", console_ms(c->created));
	json_object_set_new(root, "flex_conversation", console_str(c->flex_ch));
	json_object_set_new(root, "flex_interaction", console_str(c->flex_kd));
	json_object_set_new(root, "task", console_str(c->flex_wt));
	json_object_set_new(root, "agent", console_str(c->agent));
	json_object_set_new(root, "last_error", console_str(c->err));
	json_object_set_new(root, "waiting_turns",
			    json_integer((json_int_t)(c->pend_in > c->pend_out ? c->pend_in - c->pend_out
										: 0)));

	/* Kept until the transcript is done: hand-back turns are told from it. */
	struct tl_rec *tls = xcalloc(CONSOLE_TIMELINE_MAX, sizeof(*tls));
	size_t ntl = 0;
	json_t *tl = json_array();
	uint64_t from = c->tl_seq > CONSOLE_TIMELINE_MAX ? c->tl_seq - CONSOLE_TIMELINE_MAX + 1 : 1;
	for (uint64_t i = from; i <= c->tl_seq && ntl < CONSOLE_TIMELINE_MAX; i++) {
		struct tl_rec *t = &tls[ntl];
		if (store_tl_get(&k->st, txn, key, i, t))
			continue;
		ntl++;
		json_t *o = json_object();
		json_object_set_new(o, "ts", json_integer((json_int_t)t->ts));
		json_object_set_new(o, "event", console_str(t->event ? t->event : ""));
		json_object_set_new(o, "detail", console_str(t->detail ? t->detail : ""));
		json_array_append_new(tl, o);
	}
	json_object_set_new(root, "timeline", tl);
	json_object_set_new(root, "timeline_total", json_integer((json_int_t)c->tl_seq));

	const struct config *ncfg = config_for(k->cfg, convkey_business(key));
	json_t *hist = json_array();
	from = c->seq > CONSOLE_HISTORY_MAX ? c->seq - CONSOLE_HISTORY_MAX + 1 : 1;
	for (uint64_t i = from; i <= c->seq; i++) {
		struct hist_rec h;
		if (store_hist_get(&k->st, txn, key, i, &h))
			continue;
		json_array_append_new(hist, console_turn(ncfg, i, &h, tls, ntl));
		hist_rec_release(&h);
	}
	json_object_set_new(root, "history", hist);
	json_object_set_new(root, "history_total", json_integer((json_int_t)c->seq));
	for (size_t i = 0; i < ntl; i++)
		tl_rec_release(&tls[i]);
	free(tls);
	return root;
}

static enum MHD_Result console_api_show(struct console *k, struct MHD_Connection *c)
{
	const char *a = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "address");
	const char *b = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "business");
	if (!a || !*a)
		return console_error(c, 400, "address: missing");
	/* Like batonctl: "customer" or "customer|business". */
	const char *bar = strchr(a, '|');
	char *cust = bar ? xstrndup(a, (size_t)(bar - a)) : xstrdup(a);
	char *biz = bar ? xstrdup(bar + 1) : (b && *b ? xstrdup(b) : NULL);
	/* An unencoded '+' in a query string arrives as a space; addresses have none. */
	for (char *p = cust; *p; p++)
		if (*p == ' ')
			*p = '+';
	for (char *p = biz; p && *p; p++)
		if (*p == ' ')
			*p = '+';

	MDB_txn *txn;
	enum MHD_Result ret;
	if (console_read_begin(k, &txn) < 0) {
		ret = MHD_queue_response(c, 503, k->r_503);
		goto out;
	}
	char *key = NULL;
	struct conv_rec cr;
	int rc = store_conv_find(&k->st, txn, cust, biz, &key);
	if (rc == 0)
		rc = store_conv_get(&k->st, txn, key, &cr);
	if (rc == MDB_NOTFOUND) {
		ret = console_error(c, 404, "no such conversation");
	} else if (rc) {
		log_warn("console: cannot read a conversation: %s", mdb_strerror(rc));
		ret = MHD_queue_response(c, 503, k->r_503);
	} else {
		json_t *root = console_detail(k, txn, key, &cr);
		json_object_set_new(root, "now_ms", json_integer((json_int_t)clock_wall_ms()));
		conv_rec_release(&cr);
		ret = console_json(c, 200, root);
	}
	free(key);
	mdb_txn_abort(txn);
out:
	free(cust);
	free(biz);
	return ret;
}

/* ------------------------------------------------------------------ */
/* reports                                                             */

#define CONSOLE_HOUR_MS 3600000ULL
#define CONSOLE_DAY_MS (24 * CONSOLE_HOUR_MS)
/* A year of hourly buckets at most. */
#define CONSOLE_REPORT_SPAN_MAX_MS (366 * CONSOLE_DAY_MS)
/* Reads one report may make (records, timeline entries, history probes).
 * Ingress answers webhooks on the same loop: over a store too big for
 * that, the report stops and says it covers part of the conversations. */
#define CONSOLE_REPORT_READS_MAX 300000

static const char *const console_triggers[] = { "rule", "tool", "tag", "ai_failure", "operator",
						"other" };
static const char *const console_paths[] = { "agent_closed", "task_completed", "operator",
					     "inactivity_timeout", "no_agent", "reset", "other" };
/* Upper bounds of the time-to-agent histogram's bins; one more bin above the last. */
static const uint64_t console_wait_bins[] = { 30000, 60000, 120000, 300000, 600000, 1800000,
					      3600000 };
#define CONSOLE_NTRIGGERS (sizeof(console_triggers) / sizeof(console_triggers[0]))
#define CONSOLE_NPATHS (sizeof(console_paths) / sizeof(console_paths[0]))
#define CONSOLE_NBINS (sizeof(console_wait_bins) / sizeof(console_wait_bins[0]) + 1)

struct console_report {
	uint64_t from, to, now;
	uint64_t hour0;       /* start of the first hourly bucket */
	size_t nhours;
	json_int_t *per_hour; /* escalations per hour from hour0 */
	json_int_t escalations, by_trigger[CONSOLE_NTRIGGERS];
	json_int_t handbacks, by_path[CONSOLE_NPATHS];
	uint64_t *waits;      /* accepted - escalated, ms, one per accepted handoff */
	size_t nwaits, capwaits;
	json_int_t not_accepted, waiting;
	json_int_t active, ai_only;
	json_int_t conversations;
	size_t reads;
	bool truncated;
};

/* Index of word[0..len) in names[0..n), or of the last ("other") when absent. */
static size_t console_report_index(const char *const *names, size_t n, const char *word,
				   size_t len)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (strlen(names[i]) == len && !strncmp(names[i], word, len))
			return i;
	return n - 1;
}

static bool console_report_in(const struct console_report *r, uint64_t ts)
{
	return ts >= r->from && ts < r->to;
}

/*
 * *in: whether the conversation has a turn in the period. History is
 * appended in time order, so a binary search finds its first turn at or
 * after the period's start in log2(turns) reads.
 */
static int console_report_turn_in(struct console *k, MDB_txn *txn, const char *key,
				  const struct conv_rec *c, struct console_report *r, bool *in)
{
	uint64_t lo = 1, hi = c->seq + 1, first = UINT64_MAX;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2, ts = 0;
		struct hist_rec h;
		r->reads++;
		int rc = store_hist_get(&k->st, txn, key, mid, &h);
		if (rc && rc != MDB_NOTFOUND)
			return rc;
		if (rc == 0) {
			ts = h.ts;
			hist_rec_release(&h);
		}
		if (ts >= r->from) {
			hi = mid;
			first = ts;
		} else {
			lo = mid + 1;
		}
	}
	*in = lo <= c->seq && first < r->to;
	return 0;
}

/*
 * One conversation's timeline: its escalations (trigger, hour, time until
 * an agent accepted), hand-backs, and whether a person was asked for or
 * had it at any moment of the period (a stretch from "escalated" or
 * "agent_takeover" to "handed_back", or "handoff_failed" that ends one too).
 */
static int console_report_conv(struct console *k, MDB_txn *txn, const char *key,
			       const struct conv_rec *c, struct console_report *r)
{
	uint64_t esc = 0;     /* the escalation waiting for an agent */
	bool esc_in = false;  /* ... made in the period */
	uint64_t stretch = 0; /* start of the stretch in progress */
	bool person = false, event_in = false;
	int rc = 0;

	for (uint64_t i = 1; i <= c->tl_seq; i++) {
		struct tl_rec t;
		r->reads++;
		rc = store_tl_get(&k->st, txn, key, i, &t);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc)
			return rc;
		bool in = console_report_in(r, t.ts);
		const char *detail = t.detail ? t.detail : "";
		event_in |= in;
		if (console_is(t.event, "escalated")) {
			if (esc && esc_in)
				r->not_accepted++; /* superseded without an agent */
			esc = t.ts;
			esc_in = in;
			if (!stretch)
				stretch = t.ts;
			if (in) {
				r->escalations++;
				r->by_trigger[console_report_index(console_triggers, CONSOLE_NTRIGGERS,
								   detail, strcspn(detail, ":"))]++;
				r->per_hour[(t.ts - r->hour0) / CONSOLE_HOUR_MS]++;
			}
		} else if (console_is(t.event, "agent_takeover")) {
			if (!stretch)
				stretch = t.ts;
		} else if (console_is(t.event, "accepted")) {
			if (esc && esc_in) {
				if (r->nwaits == r->capwaits) {
					r->capwaits = r->capwaits ? r->capwaits * 2 : 64;
					r->waits = xrealloc(r->waits, r->capwaits * sizeof(*r->waits));
				}
				r->waits[r->nwaits++] = t.ts > esc ? t.ts - esc : 0;
			}
			esc = 0;
		} else if (console_is(t.event, "handed_back") || console_is(t.event, "handoff_failed")) {
			if (in && console_is(t.event, "handed_back")) {
				r->handbacks++;
				r->by_path[console_report_index(console_paths, CONSOLE_NPATHS, detail,
								strlen(detail))]++;
			}
			if (esc && esc_in)
				r->not_accepted++;
			if (stretch && stretch < r->to && t.ts >= r->from)
				person = true;
			esc = 0;
			stretch = 0;
		}
		tl_rec_release(&t);
	}
	if (esc && esc_in) {
		if (c->mode != MODE_AI)
			r->waiting++;
		else
			r->not_accepted++;
	}
	/* Still escalating or human: the stretch runs until now. */
	if (stretch && c->mode != MODE_AI && stretch < r->to && r->now >= r->from)
		person = true;

	/* A conversation begins with a turn and last_in is its customer's
	 * latest: either in the period settles it without a search. */
	bool active = event_in || console_report_in(r, c->created) || console_report_in(r, c->last_in);
	if (!active && (rc = console_report_turn_in(k, txn, key, c, r, &active)))
		return rc;
	if (active) {
		r->active++;
		if (!person)
			r->ai_only++;
	}
	return 0;
}

/* Walks every conversation in one read transaction, up to the read budget. */
static int console_report_scan(struct console *k, MDB_txn *txn, struct console_report *r)
{
	MDB_cursor *cur = NULL;
	MDB_val kv, v;
	int rc = mdb_cursor_open(txn, k->st.conv, &cur);
	if (rc)
		return rc;
	for (rc = mdb_cursor_get(cur, &kv, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &kv, &v, MDB_NEXT)) {
		struct conv_rec cr;
		r->reads++;
		if (store_conv_decode(&v, &cr) != 0)
			continue;
		r->conversations++;
		/* Nothing of it in the period: quiet since before, or born after. */
		if (conv_last_activity(&cr) < r->from || cr.created >= r->to) {
			conv_rec_release(&cr);
			continue;
		}
		/* Its timeline and a binary search of its history, whole or not at all. */
		if (r->reads + cr.tl_seq + 64 > CONSOLE_REPORT_READS_MAX) {
			r->truncated = true;
			conv_rec_release(&cr);
			rc = MDB_NOTFOUND;
			break;
		}
		char *key = xstrndup(kv.mv_data, kv.mv_size);
		rc = console_report_conv(k, txn, key, &cr, r);
		free(key);
		conv_rec_release(&cr);
		if (rc)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int console_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The nearest-rank percentile p (0..100) of sorted v[0..n), n > 0. */
static uint64_t console_percentile(const uint64_t *v, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;
	return v[rank ? rank - 1 : 0];
}

static json_t *console_counts(const char *const *names, const json_int_t *counts, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, names[i], json_integer(counts[i]));
	return o;
}

static json_t *console_report_json(struct console_report *r)
{
	json_t *root = json_object();
	json_object_set_new(root, "from_ms", json_integer((json_int_t)r->from));
	json_object_set_new(root, "to_ms", json_integer((json_int_t)r->to));
	json_object_set_new(root, "now_ms", json_integer((json_int_t)r->now));

	json_t *cv = json_object();
	json_object_set_new(cv, "active", json_integer(r->active));
	json_object_set_new(cv, "ai_only", json_integer(r->ai_only));
	json_object_set_new(cv, "with_person", json_integer(r->active - r->ai_only));
	json_object_set_new(cv, "ai_only_share", r->active ? json_real((double)r->ai_only /
								      (double)r->active)
							    : json_null());
	json_object_set_new(root, "conversations", cv);

	json_t *es = json_object();
	json_object_set_new(es, "total", json_integer(r->escalations));
	json_object_set_new(es, "by_trigger",
			    console_counts(console_triggers, r->by_trigger, CONSOLE_NTRIGGERS));
	json_t *hours = json_array();
	for (size_t i = 0; i < r->nhours; i++)
		json_array_append_new(hours, json_integer(r->per_hour[i]));
	json_object_set_new(es, "per_hour", json_pack("{s:I, s:I, s:o}", "start_ms",
						      (json_int_t)r->hour0, "step_ms",
						      (json_int_t)CONSOLE_HOUR_MS, "counts", hours));
	json_object_set_new(root, "escalations", es);

	json_t *ta = json_object();
	json_int_t bins[CONSOLE_NBINS] = { 0 };
	if (r->nwaits)
		qsort(r->waits, r->nwaits, sizeof(*r->waits), console_cmp_u64);
	for (size_t i = 0; i < r->nwaits; i++) {
		size_t b = 0;
		while (b + 1 < CONSOLE_NBINS && r->waits[i] >= console_wait_bins[b])
			b++;
		bins[b]++;
	}
	json_object_set_new(ta, "accepted", json_integer((json_int_t)r->nwaits));
	json_object_set_new(ta, "not_accepted", json_integer(r->not_accepted));
	json_object_set_new(ta, "waiting", json_integer(r->waiting));
	json_object_set_new(ta, "median_ms", r->nwaits ? json_integer((json_int_t)console_percentile(
								 r->waits, r->nwaits, 50))
						       : json_null());
	json_object_set_new(ta, "p90_ms", r->nwaits ? json_integer((json_int_t)console_percentile(
							      r->waits, r->nwaits, 90))
						    : json_null());
	json_object_set_new(ta, "max_ms", r->nwaits ? json_integer((json_int_t)r->waits[r->nwaits - 1])
						    : json_null());
	json_t *ba = json_array();
	for (size_t b = 0; b < CONSOLE_NBINS; b++) {
		json_t *o = json_object();
		json_object_set_new(o, "from_ms", json_integer(b ? (json_int_t)console_wait_bins[b - 1] : 0));
		json_object_set_new(o, "to_ms", b + 1 < CONSOLE_NBINS
							? json_integer((json_int_t)console_wait_bins[b])
							: json_null());
		json_object_set_new(o, "count", json_integer(bins[b]));
		json_array_append_new(ba, o);
	}
	json_object_set_new(ta, "bins", ba);
	json_object_set_new(root, "time_to_agent", ta);

	json_t *hb = json_object();
	json_object_set_new(hb, "total", json_integer(r->handbacks));
	json_object_set_new(hb, "by_path", console_counts(console_paths, r->by_path, CONSOLE_NPATHS));
	json_object_set_new(root, "handbacks", hb);

	json_object_set_new(root, "scan", json_pack("{s:I, s:I, s:b}", "conversations",
						    r->conversations, "reads", (json_int_t)r->reads,
						    "truncated", r->truncated));
	return root;
}

/* A query parameter in wall ms: 0 with *ms, or -1 when present and not a number. */
static int console_param_ms(struct MHD_Connection *c, const char *name, uint64_t *ms)
{
	const char *s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
	if (!s || !*s)
		return 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end || !isdigit((unsigned char)*s) || v > (unsigned long long)INT64_MAX)
		return -1;
	*ms = v;
	return 0;
}

static enum MHD_Result console_api_reports(struct console *k, struct MHD_Connection *c)
{
	struct console_report r = { 0 };
	r.now = clock_wall_ms();
	r.to = r.now;
	if (console_param_ms(c, "to_ms", &r.to) < 0)
		return console_error(c, 400, "to_ms: expected milliseconds since 1970");
	r.from = r.to > CONSOLE_DAY_MS ? r.to - CONSOLE_DAY_MS : 0;
	if (console_param_ms(c, "from_ms", &r.from) < 0)
		return console_error(c, 400, "from_ms: expected milliseconds since 1970");
	if (r.from >= r.to)
		return console_error(c, 400, "from_ms must be before to_ms");
	if (r.to - r.from > CONSOLE_REPORT_SPAN_MAX_MS)
		return console_error(c, 400, "the period is at most 366 days");

	MDB_txn *txn;
	if (console_read_begin(k, &txn) < 0)
		return MHD_queue_response(c, 503, k->r_503);
	r.hour0 = r.from - r.from % CONSOLE_HOUR_MS;
	r.nhours = (size_t)((r.to - r.hour0 + CONSOLE_HOUR_MS - 1) / CONSOLE_HOUR_MS);
	r.per_hour = xcalloc(r.nhours, sizeof(*r.per_hour));
	uint64_t t0 = clock_mono_ms();
	int rc = console_report_scan(k, txn, &r);
	mdb_txn_abort(txn);
	enum MHD_Result ret;
	if (rc) {
		log_warn("console: cannot compute a report: %s", mdb_strerror(rc));
		ret = MHD_queue_response(c, 503, k->r_503);
	} else {
		uint64_t took = clock_mono_ms() - t0;
		if (r.truncated || took > 200)
			log_info("console: report over %lld conversations took %llu ms (%zu reads%s)",
				 (long long)r.conversations, (unsigned long long)took, r.reads,
				 r.truncated ? ", stopped at the limit" : "");
		ret = console_json(c, 200, console_report_json(&r));
	}
	free(r.per_hour);
	free(r.waits);
	return ret;
}

/* ------------------------------------------------------------------ */
/* routing                                                             */

struct console *console_new(const struct config *cfg, console_forward_fn fwd, void *host)
{
	struct console *k = xcalloc(1, sizeof(*k));
	k->cfg = cfg;
	k->fwd = fwd;
	k->host = host;
	k->enabled = cfg->console_token[0] != '\0';
	console_make_responses(k);
	if (k->enabled)
		log_info("console: on under /console (%s)",
			 cfg->console_user[0] ? "bearer token or basic auth" : "bearer token");
	return k;
}

void console_free(struct console *k)
{
	if (!k)
		return;
	if (k->open)
		store_close(&k->st);
	for (size_t i = 0; i < k->nassets; i++)
		MHD_destroy_response(k->assets[i]);
	free(k->assets);
	struct MHD_Response *all[] = { k->r_404, k->r_405_get, k->r_405_post, k->r_401_bearer,
				       k->r_401_any, k->r_415, k->r_503 };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		MHD_destroy_response(all[i]);
	free(k);
}

bool console_owns(const char *url)
{
	size_t n = strlen(CONSOLE_PREFIX);
	return !strncmp(url, CONSOLE_PREFIX, n) && (url[n] == '\0' || url[n] == '/');
}

static struct MHD_Response *console_asset(const struct console *k, const char *name)
{
	for (size_t i = 0; i < k->nassets; i++)
		if (!strcmp(console_assets[i].name, name))
			return k->assets[i];
	return NULL;
}

static bool console_is_json(struct MHD_Connection *c)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!ct || strncasecmp(ct, "application/json", 16) != 0)
		return false;
	return ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ';
}

enum MHD_Result console_handle(struct console *k, struct MHD_Connection *c, const char *url,
			       const char *method, void **con_cls)
{
	bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
	bool post = !strcmp(method, "POST");
	if (!k->enabled)
		return MHD_queue_response(c, 404, k->r_404);

	/* The page: static, holds no data, needs no credentials. */
	const char *rest = url + strlen(CONSOLE_PREFIX);
	if (!*rest || !strcmp(rest, "/") || !strcmp(rest, "/index.html") ||
	    (strncmp(rest, "/api/", 5) && strchr(rest + 1, '/') == NULL)) {
		struct MHD_Response *r = console_asset(k, *rest && strcmp(rest, "/") ? rest + 1
										 : "index.html");
		if (!r)
			return MHD_queue_response(c, 404, k->r_404);
		return get ? MHD_queue_response(c, 200, r) : MHD_queue_response(c, 405, k->r_405_get);
	}

	const char *api = url + strlen(CONSOLE_API);
	const char *op = NULL;
	bool reads = false;
	if (strncmp(url, CONSOLE_API, strlen(CONSOLE_API)) != 0)
		return MHD_queue_response(c, 404, k->r_404);
	if (!strcmp(api, "conversations") || !strcmp(api, "conversation") || !strcmp(api, "reports"))
		reads = true;
	else if (!strcmp(api, "handback"))
		op = EV_ADMIN_HANDBACK;
	else if (!strcmp(api, "escalate"))
		op = EV_ADMIN_ESCALATE;
	else
		return MHD_queue_response(c, 404, k->r_404);
	if (reads && !get)
		return MHD_queue_response(c, 405, k->r_405_get);
	if (op && !post)
		return MHD_queue_response(c, 405, k->r_405_post);

	bool bearer;
	if (!console_authorized(k, c, &bearer)) {
		log_warn("console: rejected %s %s: bad or missing credentials", method, url);
		/* Offer basic auth only when it is on and no token was tried: a
		 * page whose token is wrong must not get the browser's dialog. */
		bool basic = k->cfg->console_user[0] && !bearer;
		return MHD_queue_response(c, 401, basic ? k->r_401_any : k->r_401_bearer);
	}
	if (reads) {
		if (!strcmp(api, "reports"))
			return console_api_reports(k, c);
		return !strcmp(api, "conversations") ? console_api_list(k, c) : console_api_show(k, c);
	}
	/* A form cannot send JSON across sites without a preflight this server
	 * never grants: with basic auth cached by the browser, that is what
	 * keeps another site from posting commands. */
	if (!console_is_json(c))
		return MHD_queue_response(c, 415, k->r_415);
	log_info("console: operator %s", op);
	return k->fwd(k->host, c, op, con_cls);
}
