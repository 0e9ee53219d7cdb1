/* api — the console's read API over the state library; see api.h. */
#include "api.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "convkey.h"
#include "convlist.h"
#include "convview.h"
#include "labels.h"
#include "log.h"
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
