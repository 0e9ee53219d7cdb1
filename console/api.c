/* api — the console's read API over the state library; see api.h. */
#include "api.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "convkey.h"
#include "convlist.h"
#include "convview.h"
#include "labels.h"
#include "log.h"
#include "media.h"
#include "reply.h"
#include "reports.h"
#include "xalloc.h"

#define API_LIMIT_DEFAULT 200
#define API_LIMIT_MAX 5000
/* A search page looks at this many conversations at most (then "partial"). */
#define API_SEARCH_READS 50000
/* A conversation's page shows its newest turns and timeline entries. */
#define API_HISTORY_MAX 500
#define API_TIMELINE_MAX 500

static const char *api_arg(struct MHD_Connection *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
	return v && *v ? v : NULL;
}

static enum MHD_Result api_unavailable(struct MHD_Connection *c)
{
	return reply_error(c, 503, "the router's state is not available yet");
}

enum MHD_Result api_conversations(const struct config *cfg, struct reader *rd,
				  struct MHD_Connection *c)
{
	const char *ms = api_arg(c, "mode"), *ls = api_arg(c, "limit"), *q = api_arg(c, "q");
	struct convlist_query query = { .filter = CONVLIST_ALL, .limit = API_LIMIT_DEFAULT,
					.after = api_arg(c, "after"), .q = q,
					.max_reads = API_SEARCH_READS };
	(void)cfg;
	if (ms && convlist_filter_parse(ms, &query.filter) < 0)
		return reply_error(c, 400, "mode: expected all, ai, escalating, human or queue");
	if (ls) {
		char *end;
		long limit = strtol(ls, &end, 10);
		if (*end || limit < 1 || limit > API_LIMIT_MAX)
			return reply_error(c, 400, "limit: expected a number from 1 to 5000");
		query.limit = (size_t)limit;
	}
	if (q && strlen(q) > CONVLIST_QUERY_MAX)
		return reply_error(c, 400, "q: at most 100 characters");

	MDB_txn *txn;
	struct store *st;
	struct convlist l;
	if (reader_begin(rd, &txn, &st) < 0)
		return api_unavailable(c);
	int rc = convlist_page(st, txn, &query, &l);
	enum MHD_Result ret;
	if (rc == EINVAL) {
		ret = reply_error(c, 400, "after: not a token of this API");
	} else if (rc == ENOTSUP) {
		ret = reply_error(c, 503, "the state comes from an older router: restart the router "
				  "once to index it");
	} else if (rc) {
		log_warn("console: cannot list conversations: %s", mdb_strerror(rc));
		ret = api_unavailable(c);
	} else {
		json_t *arr = json_array();
		for (size_t i = 0; i < l.n; i++)
			json_array_append_new(arr, convview_record(l.rows[i].key, &l.rows[i].c, 0));
		uint64_t total = 0;
		switch (query.filter) {
		case CONVLIST_AI: total = l.counts[MODE_AI]; break;
		case CONVLIST_ESCALATING: total = l.counts[MODE_ESCALATING]; break;
		case CONVLIST_HUMAN: total = l.counts[MODE_HUMAN]; break;
		case CONVLIST_QUEUE: total = l.counts[MODE_ESCALATING] + l.counts[MODE_HUMAN]; break;
		case CONVLIST_ALL:
			total = l.counts[MODE_AI] + l.counts[MODE_ESCALATING] + l.counts[MODE_HUMAN];
			break;
		}
		json_t *root = json_object();
		json_object_set_new(root, "now_ms", json_integer((json_int_t)clock_wall_ms()));
		json_object_set_new(root, "mode", json_string(ms ? ms : "all"));
		json_object_set_new(root, "q", convview_str(q));
		json_object_set_new(root, "counts", json_pack("{s:I, s:I, s:I}",
							      "ai", (json_int_t)l.counts[MODE_AI],
							      "escalating", (json_int_t)l.counts[MODE_ESCALATING],
							      "human", (json_int_t)l.counts[MODE_HUMAN]));
		json_object_set_new(root, "total", q ? json_null() : json_integer((json_int_t)total));
		json_object_set_new(root, "conversations", arr);
		json_object_set_new(root, "next", convview_str(l.next));
		json_object_set_new(root, "partial", json_boolean(l.partial));
		ret = reply_json(c, 200, root);
	}
	convlist_release(&l);
	reader_end(rd, txn);
	return ret;
}

/* An unencoded '+' in a query string arrives as a space; addresses have none. */
static void api_plus(char *s)
{
	for (; s && *s; s++)
		if (*s == ' ')
			*s = '+';
}

enum MHD_Result api_conversation(const struct config *cfg, struct reader *rd,
				 struct MHD_Connection *c)
{
	const char *a = api_arg(c, "address"), *b = api_arg(c, "business");
	struct convkey who;
	if (!a)
		return reply_error(c, 400, "address: missing");
	/* Like batonctl: "customer" or "customer|business". */
	if (convkey_split(a, &who) < 0)
		return reply_error(c, 400, "address: expected CUSTOMER or CUSTOMER|BUSINESS");
	if (!who.business && b)
		who.business = xstrdup(b);
	api_plus(who.customer);
	api_plus(who.business);

	MDB_txn *txn;
	struct store *st;
	enum MHD_Result ret;
	if (reader_begin(rd, &txn, &st) < 0) {
		convkey_release(&who);
		return api_unavailable(c);
	}
	char *key = NULL;
	struct conv_rec cr;
	int rc = store_conv_find(st, txn, who.customer, who.business, &key);
	if (rc == 0)
		rc = store_conv_get(st, txn, key, &cr);
	if (rc == MDB_NOTFOUND) {
		ret = reply_error(c, 404, "no such conversation");
	} else if (rc) {
		log_warn("console: cannot read a conversation: %s", mdb_strerror(rc));
		ret = api_unavailable(c);
	} else {
		json_t *doc = convview_document(st, txn, key, &cr, 0, API_TIMELINE_MAX, API_HISTORY_MAX);
		labels_apply(config_for(cfg, convkey_business(key)), doc);
		json_object_set_new(doc, "now_ms", json_integer((json_int_t)clock_wall_ms()));
		conv_rec_release(&cr);
		ret = reply_json(c, 200, doc);
	}
	free(key);
	reader_end(rd, txn);
	convkey_release(&who);
	return ret;
}

/* A query parameter in wall ms: 0 with *ms, or -1 when present and not a number. */
static int api_param_ms(struct MHD_Connection *c, const char *name, uint64_t *ms)
{
	const char *s = api_arg(c, name);
	if (!s)
		return 0;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || !isdigit((unsigned char)*s) || v > (unsigned long long)INT64_MAX)
		return -1;
	*ms = v;
	return 0;
}

enum MHD_Result api_reports(const struct config *cfg, struct reader *rd, struct MHD_Connection *c)
{
	uint64_t now = clock_wall_ms(), to = now, from;
	(void)cfg;
	if (api_param_ms(c, "to_ms", &to) < 0)
		return reply_error(c, 400, "to_ms: expected milliseconds since 1970");
	from = to > REPORTS_DAY_MS ? to - REPORTS_DAY_MS : 0;
	if (api_param_ms(c, "from_ms", &from) < 0)
		return reply_error(c, 400, "from_ms: expected milliseconds since 1970");
	if (from >= to)
		return reply_error(c, 400, "from_ms must be before to_ms");
	if (to - from > REPORTS_SPAN_MAX_MS)
		return reply_error(c, 400, "the period is at most 366 days");

	MDB_txn *txn;
	struct store *st;
	if (reader_begin(rd, &txn, &st) < 0)
		return api_unavailable(c);
	uint64_t t0 = clock_mono_ms();
	int err = 0;
	json_t *report = reports_compute(st, txn, from, to, now, &err);
	reader_end(rd, txn);
	if (!report) {
		log_warn("console: cannot compute a report: %s", mdb_strerror(err));
		return api_unavailable(c);
	}
	uint64_t took = clock_mono_ms() - t0;
	json_t *scan = json_object_get(report, "scan");
	if (json_is_true(json_object_get(scan, "truncated")) || took > 200)
		log_info("console: report over %lld conversations took %llu ms (%lld reads%s)",
			 (long long)json_integer_value(json_object_get(scan, "conversations")),
			 (unsigned long long)took,
			 (long long)json_integer_value(json_object_get(scan, "reads")),
			 json_is_true(json_object_get(scan, "truncated")) ? ", stopped at the limit" : "");
	return reply_json(c, 200, report);
}

/* n decimal digits (at most 9) as *v: 0, or -1 when they are not that. */
static int api_digits(const char *s, size_t n, uint64_t *v)
{
	if (n < 1 || n > 9)
		return -1;
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		*v = *v * 10 + (uint64_t)(s[i] - '0');
	}
	return 0;
}

/* "KEY/media/SEQ/I": 0 with *key (malloc'd), *seq and *idx, or -1. Split
 * from the right: the numbers and "media" are fixed, the key is the rest. */
static int api_media_path(const char *path, char **key, uint64_t *seq, uint64_t *idx)
{
	const char *last = strrchr(path, '/');
	if (!last || api_digits(last + 1, strlen(last + 1), idx) < 0)
		return -1;
	const char *mid = memrchr(path, '/', (size_t)(last - path));
	if (!mid || api_digits(mid + 1, (size_t)(last - mid - 1), seq) < 0 || *seq == 0)
		return -1;
	size_t klen = (size_t)(mid - path);
	if (klen <= 6 || memcmp(mid - 6, "/media", 6) != 0)
		return -1;
	*key = xstrndup(path, klen - 6);
	return 0;
}

/* The headers of media bytes: private to this operator, never sniffed,
 * and nothing in them may run or be framed if opened on their own. */
static void api_media_headers(struct MHD_Response *r, const char *ctype)
{
	enum media_kind k = media_kind_of(ctype);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "private");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY,
				"default-src 'none'; frame-ancestors 'none'; sandbox");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION,
				k == MEDIA_IMAGE || k == MEDIA_AUDIO ? "inline" : "attachment");
}

enum MHD_Result api_media(const struct config *cfg, struct reader *rd, struct mediaproxy *mp,
			  struct MHD_Connection *c, const char *path)
{
	char *key = NULL;
	uint64_t seq, idx;
	if (api_media_path(path, &key, &seq, &idx) < 0)
		return reply_error(c, 404, "not found");

	MDB_txn *txn;
	struct store *st;
	struct hist_rec h = { 0 };
	struct media_msg m = { 0 };
	struct media_item it = { 0 };
	struct mediaproxy_result res = { 0 };
	struct log_ids ids = { .conv = key };
	enum MHD_Result ret;
	if (reader_begin(rd, &txn, &st) < 0) {
		ret = api_unavailable(c);
		goto done;
	}
	int rc = store_hist_get(st, txn, key, seq, &h);
	if (rc == 0 && media_from_json(h.media, &m) < 0) {
		log_emit(LOG_WARN, &ids, "console: turn %llu's media description is malformed",
			 (unsigned long long)seq);
		m.nitems = 0;
	}
	if (rc == 0 && idx < m.nitems) {
		/* Copied: the read ends before the download, which can take seconds. */
		it.url = xstrdup(m.items[idx].url);
		it.ctype = m.items[idx].ctype ? xstrdup(m.items[idx].ctype) : NULL;
	}
	reader_end(rd, txn);
	if (rc && rc != MDB_NOTFOUND) {
		log_emit(LOG_WARN, &ids, "console: cannot read turn %llu: %s", (unsigned long long)seq,
			 mdb_strerror(rc));
		ret = api_unavailable(c);
		goto done;
	}
	if (!it.url) {
		ret = reply_error(c, 404, rc ? "no such turn" : "no such media item");
		goto done;
	}

	if (mediaproxy_fetch(mp, config_for(cfg, convkey_business(key)), &it, &res) < 0) {
		log_emit(LOG_WARN, &ids, "console: media of turn %llu not fetched: too many downloads "
			 "at once", (unsigned long long)seq);
		ret = reply_busy(c, "too many media downloads at once: try again");
		goto done;
	}
	if (res.err != MF_OK) {
		log_emit(LOG_WARN, &ids, "console: media %llu/%llu not fetched (%s): %s",
			 (unsigned long long)seq, (unsigned long long)idx,
			 mediafetch_error_name(res.err), res.reason);
		ret = reply_json(c, 502, json_pack("{s:s, s:s, s:s}", "error",
						   "the media could not be fetched from Twilio",
						   "outcome", mediafetch_error_name(res.err),
						   "reason", res.reason ? res.reason : ""));
		goto done;
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(res.len, res.data,
								 MHD_RESPMEM_MUST_FREE);
	if (!r) {
		ret = MHD_NO;
		goto done;
	}
	res.data = NULL; /* MHD's now */
	api_media_headers(r, res.ctype);
	ret = MHD_queue_response(c, 200, r);
	MHD_destroy_response(r);
done:
	mediaproxy_result_release(&res);
	free(it.url);
	free(it.ctype);
	media_release(&m);
	hist_rec_release(&h);
	free(key);
	return ret;
}
