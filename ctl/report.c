/* report — batonctl conversations, stats and export; see ctl.h. */
#include "ctl.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "xalloc.h"

/* Escalation reasons are free text (the model's among them): the text
 * report shows the most frequent, JSON a bounded number plus the rest. */
#define REPORT_TOP_TEXT 10
#define REPORT_TOP_JSON 100

/* ------------------------------------------------------------------ */
/* --since                                                             */

static int since_duration(const char *s, uint64_t *ms)
{
	uint64_t total = 0;
	if (!*s)
		return -1;
	while (*s) {
		if (!isdigit((unsigned char)*s))
			return -1;
		char *end;
		unsigned long long n = strtoull(s, &end, 10);
		uint64_t unit;
		switch (*end) {
		case 's': unit = 1000ull; break;
		case 'm': unit = 60 * 1000ull; break;
		case 'h': unit = 3600 * 1000ull; break;
		case 'd': unit = 86400 * 1000ull; break;
		case 'w': unit = 7 * 86400 * 1000ull; break;
		default: return -1;
		}
		/* A century back is far enough, and keeps the sum from overflowing. */
		if (n > 100ull * 366 * 86400 * 1000 / unit)
			return -1;
		total += n * unit;
		s = end + 1;
	}
	*ms = total;
	return 0;
}

/* Reads exactly n digits. */
static int since_digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

static int since_iso(const char *s, uint64_t *ms)
{
	struct tm tm = { 0 };
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
	long off = 0;
	const char *p = s;
	if (since_digits(&p, 4, &y) || *p++ != '-' || since_digits(&p, 2, &mo) || *p++ != '-' ||
	    since_digits(&p, 2, &d))
		return -1;
	if (*p == 'T' || *p == ' ') {
		p++;
		if (since_digits(&p, 2, &h) || *p++ != ':' || since_digits(&p, 2, &mi))
			return -1;
		if (*p == ':') {
			p++;
			if (since_digits(&p, 2, &sec))
				return -1;
			if (*p == '.') {
				int scale = 100;
				for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
					frac += (*p - '0') * scale;
			}
		}
		if (*p == 'Z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1, oh, om;
			if (since_digits(&p, 2, &oh) || *p++ != ':' || since_digits(&p, 2, &om) ||
			    oh > 23 || om > 59)
				return -1;
			off = sign * (oh * 3600L + om * 60L);
		}
	}
	if (*p || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	/* timegm normalises 2026-02-31 into March: that is not a date. */
	if (t < 0 || tm.tm_mday != d || tm.tm_mon != mo - 1)
		return -1;
	t -= off;
	if (t < 0)
		return -1;
	*ms = (uint64_t)t * 1000u + (uint64_t)(frac > 999 ? 999 : frac);
	return 0;
}

int ctl_parse_since(const char *s, uint64_t now_ms, uint64_t *out)
{
	uint64_t v;
	if (!s)
		return -1;
	if (since_duration(s, &v) == 0) {
		*out = v >= now_ms ? 1 : now_ms - v; /* 1: everything, 0 would mean "no filter" */
		return 0;
	}
	if (since_iso(s, &v) == 0) {
		*out = v ? v : 1;
		return 0;
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* shared                                                              */

/* ISO-8601 UTC; full (milliseconds) for the audit, seconds for tables. */
static void report_time(uint64_t ms, bool full, char *buf, size_t len)
{
	if (!ms) {
		snprintf(buf, len, "-");
		return;
	}
	clock_iso8601(ms, buf, len);
	if (!full && strlen(buf) >= 20) {
		buf[19] = 'Z';
		buf[20] = '\0';
	}
}

static json_t *report_jtime(uint64_t ms)
{
	char b[40];
	if (!ms)
		return json_null();
	report_time(ms, true, b, sizeof(b));
	return json_string(b);
}

static json_t *report_str(const char *s)
{
	return s ? json_string(s) : json_null();
}


static void report_dump(json_t *root)
{
	json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
}

/* ------------------------------------------------------------------ */
/* conversations                                                       */

struct row {
	char *key, *customer, *business, *ch, *wt;
	enum conv_mode mode;
	uint64_t last, turns, messages;
	int64_t err;
};

static int row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	if (x->last != y->last)
		return x->last < y->last ? 1 : -1;
	return strcmp(x->key, y->key);
}

static void row_release(struct row *r)
{
	free(r->key);
	free(r->customer);
	free(r->business);
	free(r->ch);
	free(r->wt);
}

int ctl_conversations(const struct config *cfg, const struct ctl_list *l)
{
	struct ctl_read rd;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	struct row *rows = NULL;
	size_t n = 0, cap = 0;
	int rc, ret;

	if ((ret = ctl_read_begin(cfg, &rd)) != CTL_OK)
		return ret;
	if ((rc = mdb_cursor_open(rd.txn, rd.st.conv, &cur))) {
		fprintf(stderr, "batonctl: cannot read conversations: %s\n", mdb_strerror(rc));
		ctl_read_end(&rd);
		return CTL_FAIL;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct conv_rec c;
		if (store_conv_decode(&v, &c))
			continue;
		uint64_t last = conv_last_activity(&c);
		if ((l->mode < 0 || (int)c.mode == l->mode) && (!l->since || last >= l->since)) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				rows = xrealloc(rows, cap * sizeof(*rows));
			}
			struct row *r = &rows[n++];
			r->key = xstrndup(k.mv_data, k.mv_size);
			store_conv_parties(r->key, &c, &r->customer, &r->business);
			/* Open Flex SIDs: only while a person has (or is getting) it. */
			r->ch = c.mode != MODE_AI && c.flex_ch ? xstrdup(c.flex_ch) : NULL;
			r->wt = c.mode != MODE_AI && c.flex_wt ? xstrdup(c.flex_wt) : NULL;
			r->mode = c.mode;
			r->last = last;
			r->turns = c.turns;
			r->messages = c.seq;
			r->err = c.err_code;
		}
		conv_rec_release(&c);
	}
	mdb_cursor_close(cur);
	ctl_read_end(&rd);
	if (rc != MDB_NOTFOUND) {
		fprintf(stderr, "batonctl: cannot read conversations: %s\n", mdb_strerror(rc));
		ret = CTL_FAIL;
		goto out;
	}
	if (n)
		qsort(rows, n, sizeof(*rows), row_cmp);
	size_t shown = l->limit > 0 && (size_t)l->limit < n ? (size_t)l->limit : n;
	char masked[STORE_KEY_MAX + 1], when[40];
	if (l->json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < shown; i++) {
			struct row *r = &rows[i];
			log_show_address(r->customer, masked, sizeof(masked));
			report_time(r->last, true, when, sizeof(when));
			json_t *o = json_object();
			json_object_set_new(o, "customer", json_string(masked));
			json_object_set_new(o, "business", json_string(r->business));
			json_object_set_new(o, "mode", json_string(conv_mode_name(r->mode)));
			json_object_set_new(o, "last_activity", json_string(when));
			json_object_set_new(o, "last_activity_ms", json_integer((json_int_t)r->last));
			json_object_set_new(o, "customer_turns", json_integer((json_int_t)r->turns));
			json_object_set_new(o, "messages", json_integer((json_int_t)r->messages));
			json_object_set_new(o, "flex_conversation", report_str(r->ch));
			json_object_set_new(o, "task", report_str(r->wt));
			json_object_set_new(o, "last_error_code",
					    r->err ? json_integer((json_int_t)r->err) : json_null());
			json_array_append_new(arr, o);
		}
		report_dump(arr);
		json_decref(arr);
	} else {
		int wc = 8, wb = 8;
		for (size_t i = 0; i < shown; i++) {
			log_show_address(rows[i].customer, masked, sizeof(masked));
			if ((int)strlen(masked) > wc)
				wc = (int)strlen(masked);
			if ((int)strlen(rows[i].business) > wb)
				wb = (int)strlen(rows[i].business);
		}
		printf("%-*s  %-*s  %-10s  %-20s  %5s  %6s  %s\n", wc, "CUSTOMER", wb, "BUSINESS", "MODE",
		       "LAST ACTIVITY", "TURNS", "ERROR", "FLEX (CONVERSATION TASK)");
		for (size_t i = 0; i < shown; i++) {
			struct row *r = &rows[i];
			char err[24];
			log_show_address(r->customer, masked, sizeof(masked));
			report_time(r->last, false, when, sizeof(when));
			if (r->err)
				snprintf(err, sizeof(err), "%lld", (long long)r->err);
			else
				snprintf(err, sizeof(err), "-");
			printf("%-*s  %-*s  %-10s  %-20s  %5llu  %6s  %s%s%s\n", wc, masked, wb, r->business,
			       conv_mode_name(r->mode), when, (unsigned long long)r->turns, err,
			       r->ch ? r->ch : (r->wt ? "" : "-"), r->ch && r->wt ? " " : "",
			       r->wt ? r->wt : "");
		}
		if (shown < n)
			printf("(%zu of %zu conversations; --limit)\n", shown, n);
	}
	ret = CTL_OK;
out:
	for (size_t i = 0; i < n; i++)
		row_release(&rows[i]);
	free(rows);
	return ret;
}

/* ------------------------------------------------------------------ */
/* stats                                                               */

/* A counter keyed by text: a JSON object of integers. */
static void count_add(json_t *counts, const char *key, json_int_t by)
{
	json_t *v = json_object_get(counts, key);
	if (v)
		json_integer_set(v, json_integer_value(v) + by);
	else
		json_object_set_new(counts, key, json_integer(by));
}

struct kc {
	const char *key;
	json_int_t n;
};

static int kc_cmp(const void *a, const void *b)
{
	const struct kc *x = a, *y = b;
	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return strcmp(x->key, y->key);
}

/* counts sorted by count (descending), at most max, the rest summed under
 * "(other)". A new object (caller owns). */
static json_t *count_top(json_t *counts, size_t max)
{
	size_t n = json_object_size(counts), i = 0;
	struct kc *all = xcalloc(n ? n : 1, sizeof(*all));
	const char *key;
	json_t *v, *out = json_object();
	json_int_t rest = 0;
	json_object_foreach(counts, key, v) {
		all[i].key = key;
		all[i++].n = json_integer_value(v);
	}
	qsort(all, n, sizeof(*all), kc_cmp);
	for (i = 0; i < n; i++) {
		if (i < max)
			json_object_set_new(out, all[i].key, json_integer(all[i].n));
		else
			rest += all[i].n;
	}
	if (rest)
		json_object_set_new(out, "(other)", json_integer(rest));
	free(all);
	return out;
}

static json_int_t dbi_entries(MDB_txn *txn, MDB_dbi dbi, json_int_t *bytes)
{
	MDB_stat s;
	if (!dbi || mdb_stat(txn, dbi, &s)) {
		*bytes = 0;
		return 0;
	}
	*bytes = (json_int_t)((s.ms_branch_pages + s.ms_leaf_pages + s.ms_overflow_pages) * s.ms_psize);
	return (json_int_t)s.ms_entries;
}

/* Conversations by mode, escalated ones, turns, errors by Twilio code. */
static int stats_conv(struct ctl_read *rd, json_t *root)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	json_int_t total = 0, escalated = 0, turns = 0, window = 0;
	json_t *modes = json_pack("{s:I, s:I, s:I}", "ai", (json_int_t)0, "escalating", (json_int_t)0,
				  "human", (json_int_t)0);
	json_t *errors = json_object();
	int rc = mdb_cursor_open(rd->txn, rd->st.conv, &cur);
	for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct conv_rec c;
		if (store_conv_decode(&v, &c))
			continue;
		total++;
		count_add(modes, conv_mode_name(c.mode), 1);
		if (c.escalations)
			escalated++;
		turns += (json_int_t)c.turns;
		if (c.window_closed)
			window++;
		if (c.err_code) {
			char code[24];
			snprintf(code, sizeof(code), "%lld", (long long)c.err_code);
			count_add(errors, code, 1);
		}
		conv_rec_release(&c);
	}
	if (cur)
		mdb_cursor_close(cur);
	json_t *o = json_object();
	json_object_set_new(o, "total", json_integer(total));
	json_object_set_new(o, "by_mode", modes);
	json_object_set_new(o, "escalated", json_integer(escalated));
	json_object_set_new(o, "escalation_rate", json_real(total ? (double)escalated / (double)total : 0));
	json_object_set_new(o, "customer_turns", json_integer(turns));
	json_object_set_new(o, "window_closed", json_integer(window));
	json_object_set_new(root, "conversations", o);
	json_object_set_new(root, "errors_by_twilio_code", errors);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Escalations (trigger, reason), hand-backs (path) and every event, from the timelines. */
static int stats_timeline(struct ctl_read *rd, json_t *root)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	json_int_t esc = 0, back = 0;
	json_t *trig = json_object(), *why = json_object(), *paths = json_object();
	json_t *events = json_object();
	int rc = mdb_cursor_open(rd->txn, rd->st.tl, &cur);
	for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct tl_rec t;
		if (store_tl_decode(&v, &t))
			continue;
		const char *ev = t.event ? t.event : "?", *d = t.detail ? t.detail : "";
		count_add(events, ev, 1);
		if (!strcmp(ev, "escalated")) {
			/* handoff.c writes "trigger: reason". */
			const char *sep = strstr(d, ": ");
			char *tr = sep ? xstrndup(d, (size_t)(sep - d)) : xstrdup(d);
			esc++;
			count_add(trig, *tr ? tr : "?", 1);
			count_add(why, sep && sep[2] ? sep + 2 : "(none)", 1);
			free(tr);
		} else if (!strcmp(ev, "handed_back")) {
			back++;
			count_add(paths, *d ? d : "?", 1);
		}
		tl_rec_release(&t);
	}
	if (cur)
		mdb_cursor_close(cur);
	json_t *reasons = count_top(why, REPORT_TOP_JSON);
	json_decref(why);
	json_t *e = json_object();
	json_object_set_new(e, "total", json_integer(esc));
	json_object_set_new(e, "by_trigger", trig);
	json_object_set_new(e, "by_reason", reasons);
	json_object_set_new(root, "escalations", e);
	json_t *h = json_object();
	json_object_set_new(h, "total", json_integer(back));
	json_object_set_new(h, "by_path", paths);
	json_object_set_new(root, "handbacks", h);
	json_object_set_new(root, "timeline_events", events);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Work not yet finished, by kind; the outbox is the send jobs. */
static int stats_jobs(struct ctl_read *rd, json_t *root)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	json_int_t total = 0, sends = 0;
	uint64_t oldest_send = 0;
	json_t *kinds = json_pack("{s:I, s:I, s:I}", "ai", (json_int_t)0, "send", (json_int_t)0, "flex",
				  (json_int_t)0);
	json_t *flexops = json_object();
	int rc = mdb_cursor_open(rd->txn, rd->st.jobs, &cur);
	for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct job_rec j;
		if (store_job_decode(&v, &j))
			continue;
		total++;
		count_add(kinds, job_kind_name(j.kind), 1);
		if (j.kind == JOB_FLEX)
			count_add(flexops, j.op ? j.op : "handoff", 1);
		if (j.kind == JOB_SEND) {
			sends++;
			if (!oldest_send || (j.created && j.created < oldest_send))
				oldest_send = j.created;
		}
		job_rec_release(&j);
	}
	if (cur)
		mdb_cursor_close(cur);
	json_t *o = json_object();
	json_object_set_new(o, "total", json_integer(total));
	json_object_set_new(o, "by_kind", kinds);
	json_object_set_new(o, "flex_by_op", flexops);
	json_object_set_new(root, "jobs", o);
	json_t *ob = json_object();
	json_object_set_new(ob, "backlog", json_integer(sends));
	json_object_set_new(ob, "oldest", report_jtime(oldest_send));
	json_object_set_new(root, "outbox", ob);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * What the running router says of its store (STATE_DIR/router.health):
 * ok, high_water (new messages get 503), critical (results wait too) or
 * failing (commits fail), and since when. "unknown" when no router runs.
 */
static json_t *stats_health(const struct config *cfg)
{
	char *path = xasprintf("%s/router.health", cfg->state_dir);
	json_t *h = json_load_file(path, JSON_DISABLE_EOF_CHECK, NULL);
	free(path);
	json_int_t pid = json_integer_value(json_object_get(h, "pid"));
	if (!json_is_object(h) || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM)) {
		json_decref(h);
		h = json_pack("{s:s}", "store", "unknown");
		return h;
	}
	json_t *since = json_object_get(h, "since");
	json_object_set_new(h, "since", json_integer_value(since) > 0
					     ? report_jtime((uint64_t)json_integer_value(since))
					     : json_null());
	return h;
}

static void stats_store(const struct config *cfg, struct ctl_read *rd, json_t *root)
{
	json_int_t b, hist_b, pend_b, tl_b;
	json_t *h = json_object();
	json_object_set_new(h, "messages", json_integer(dbi_entries(rd->txn, rd->st.hist, &hist_b)));
	json_object_set_new(h, "pending", json_integer(dbi_entries(rd->txn, rd->st.pend, &pend_b)));
	json_object_set_new(h, "timeline_entries", json_integer(dbi_entries(rd->txn, rd->st.tl, &tl_b)));
	json_object_set_new(h, "bytes", json_integer(hist_b + pend_b + tl_b));
	json_object_set_new(h, "dedupe_entries", json_integer(dbi_entries(rd->txn, rd->st.seen, &b)));
	json_object_set_new(h, "index_entries", json_integer(dbi_entries(rd->txn, rd->st.idx, &b)));
	json_object_set_new(root, "history", h);

	/* Purges: the audit DB, newest key last. */
	json_t *p = json_object();
	uint64_t last = 0;
	json_int_t purges = dbi_entries(rd->txn, rd->st.audit, &b);
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	if (rd->st.audit && mdb_cursor_open(rd->txn, rd->st.audit, &cur) == 0) {
		struct audit_rec a;
		if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && store_audit_decode(&v, &a) == 0) {
			last = a.ts;
			audit_rec_release(&a);
		}
		mdb_cursor_close(cur);
	}
	json_object_set_new(p, "total", json_integer(purges));
	json_object_set_new(p, "last", report_jtime(last));
	json_object_set_new(root, "purges", p);

	MDB_envinfo info;
	MDB_stat es;
	struct stat fst;
	char *file = xasprintf("%s/data.mdb", cfg->state_dir);
	json_t *l = json_object();
	mdb_env_info(rd->st.env, &info);
	mdb_env_stat(rd->st.env, &es);
	uint64_t used = ((uint64_t)info.me_last_pgno + 1) * es.ms_psize;
	json_object_set_new(l, "file", json_string(file));
	json_object_set_new(l, "file_bytes", stat(file, &fst) == 0 ? json_integer((json_int_t)fst.st_size)
								 : json_null());
	json_object_set_new(l, "map_bytes", json_integer((json_int_t)info.me_mapsize));
	json_object_set_new(l, "used_bytes", json_integer((json_int_t)used));
	json_object_set_new(l, "map_used_pct", json_real(info.me_mapsize ? 100.0 * (double)used /
								      (double)info.me_mapsize : 0));
	json_object_set_new(l, "page_size", json_integer((json_int_t)es.ms_psize));
	json_object_set_new(l, "readers", json_integer((json_int_t)info.me_numreaders));
	json_object_set_new(l, "max_readers", json_integer((json_int_t)info.me_maxreaders));
	json_object_set_new(l, "last_txn", json_integer((json_int_t)info.me_last_txnid));
	json_object_set_new(root, "lmdb", l);
	free(file);
	json_object_set_new(root, "store", stats_health(cfg));
}

static void print_counts(const char *title, json_t *counts, size_t max)
{
	json_t *top = count_top(counts, max);
	const char *key;
	json_t *v;
	printf("  %s\n", title);
	if (!json_object_size(top))
		printf("    -\n");
	json_object_foreach(top, key, v)
		printf("    %-40s %lld\n", key, (long long)json_integer_value(v));
	json_decref(top);
}

static json_int_t jint(json_t *o, const char *path1, const char *path2)
{
	json_t *v = json_object_get(o, path1);
	return json_integer_value(path2 ? json_object_get(v, path2) : v);
}

static void stats_print(json_t *root)
{
	json_t *c = json_object_get(root, "conversations"), *e = json_object_get(root, "escalations");
	json_t *h = json_object_get(root, "handbacks"), *j = json_object_get(root, "jobs");
	json_t *hs = json_object_get(root, "history"), *l = json_object_get(root, "lmdb");
	json_t *p = json_object_get(root, "purges"), *ob = json_object_get(root, "outbox");
	json_t *modes = json_object_get(c, "by_mode");

	printf("conversations   %lld (ai %lld, escalating %lld, human %lld; window closed %lld)\n",
	       (long long)jint(c, "total", NULL), (long long)jint(modes, "ai", NULL),
	       (long long)jint(modes, "escalating", NULL), (long long)jint(modes, "human", NULL),
	       (long long)jint(c, "window_closed", NULL));
	printf("customer turns  %lld\n", (long long)jint(c, "customer_turns", NULL));
	printf("escalated       %lld conversations, rate %.1f%%\n", (long long)jint(c, "escalated", NULL),
	       100.0 * json_real_value(json_object_get(c, "escalation_rate")));
	printf("escalations     %lld\n", (long long)jint(e, "total", NULL));
	print_counts("by trigger", json_object_get(e, "by_trigger"), REPORT_TOP_TEXT);
	print_counts("by reason", json_object_get(e, "by_reason"), REPORT_TOP_TEXT);
	printf("hand-backs      %lld\n", (long long)jint(h, "total", NULL));
	print_counts("by path", json_object_get(h, "by_path"), REPORT_TOP_TEXT);
	printf("jobs queued     %lld (ai %lld, send %lld, flex %lld)\n", (long long)jint(j, "total", NULL),
	       (long long)jint(j, "by_kind", "ai"), (long long)jint(j, "by_kind", "send"),
	       (long long)jint(j, "by_kind", "flex"));
	const char *oldest = json_string_value(json_object_get(ob, "oldest"));
	printf("outbox backlog  %lld%s%s%s\n", (long long)jint(ob, "backlog", NULL),
	       oldest ? " (oldest " : "", oldest ? oldest : "", oldest ? ")" : "");
	print_counts("errors by Twilio code", json_object_get(root, "errors_by_twilio_code"),
		     REPORT_TOP_TEXT);
	printf("history         %lld messages, %lld pending, %lld timeline entries, %.1f MiB\n",
	       (long long)jint(hs, "messages", NULL), (long long)jint(hs, "pending", NULL),
	       (long long)jint(hs, "timeline_entries", NULL),
	       (double)jint(hs, "bytes", NULL) / (1024.0 * 1024.0));
	const char *lastp = json_string_value(json_object_get(p, "last"));
	printf("purges          %lld%s%s%s\n", (long long)jint(p, "total", NULL),
	       lastp ? " (last " : "", lastp ? lastp : "", lastp ? ")" : "");
	printf("lmdb            %s: file %.1f MiB, used %.1f of %.1f MiB map (%.1f%%), "
	       "readers %lld/%lld\n",
	       json_string_value(json_object_get(l, "file")),
	       (double)jint(l, "file_bytes", NULL) / (1024.0 * 1024.0),
	       (double)jint(l, "used_bytes", NULL) / (1024.0 * 1024.0),
	       (double)jint(l, "map_bytes", NULL) / (1024.0 * 1024.0),
	       json_real_value(json_object_get(l, "map_used_pct")),
	       (long long)jint(l, "readers", NULL), (long long)jint(l, "max_readers", NULL));
	json_t *st = json_object_get(root, "store");
	const char *state = json_string_value(json_object_get(st, "store"));
	const char *since = json_string_value(json_object_get(st, "since"));
	const char *err = json_string_value(json_object_get(st, "error"));
	static const struct { const char *state, *what; } said[] = {
		{ "ok", "takes everything" },
		{ "high_water", "FULL: above its high-water mark, new messages get 503" },
		{ "critical", "FULL: worker results wait too, only purges and hand-backs go in" },
		{ "failing", "FAILING: commits fail, new messages get 503, results are retried" },
		{ "unknown", "state unknown (no router running)" },
	};
	const char *what = state ? state : "unknown";
	for (size_t i = 0; i < sizeof(said) / sizeof(said[0]); i++)
		if (state && !strcmp(state, said[i].state))
			what = said[i].what;
	printf("store           %s%s%s%s%s%s\n", what, since ? " since " : "", since ? since : "",
	       err && *err ? " (" : "", err && *err ? err : "", err && *err ? ")" : "");
}

int ctl_stats(const struct config *cfg, bool json)
{
	struct ctl_read rd;
	int rc, ret;
	if ((ret = ctl_read_begin(cfg, &rd)) != CTL_OK)
		return ret;
	json_t *root = json_object();
	/* One read transaction: every figure is of the same committed state. */
	if ((rc = stats_conv(&rd, root)) || (rc = stats_timeline(&rd, root)) ||
	    (rc = stats_jobs(&rd, root))) {
		fprintf(stderr, "batonctl: cannot read state: %s\n", mdb_strerror(rc));
		ret = CTL_FAIL;
	} else {
		stats_store(cfg, &rd, root);
		if (json)
			report_dump(root);
		else
			stats_print(root);
	}
	json_decref(root);
	ctl_read_end(&rd);
	return ret;
}

/* ------------------------------------------------------------------ */
/* export                                                              */

/* The mode a timeline event leaves the conversation in, or NULL. */
static const char *event_mode(const char *ev)
{
	if (!strcmp(ev, "escalated"))
		return "escalating";
	if (!strcmp(ev, "task_created") || !strcmp(ev, "agent_takeover"))
		return "human";
	if (!strcmp(ev, "handed_back") || !strcmp(ev, "handoff_failed"))
		return "ai";
	return NULL;
}

static json_t *export_turn(uint64_t seq, const struct hist_rec *h)
{
	json_t *o = json_object();
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	json_object_set_new(o, "at", report_jtime(h->ts));
	json_object_set_new(o, "role", json_string(env_role_name(h->role)));
	if (h->who)
		json_object_set_new(o, "agent", json_string(h->who));
	json_object_set_new(o, "text", json_string(h->text ? h->text : ""));
	if (h->nmedia)
		json_object_set_new(o, "attachments", json_integer((json_int_t)h->nmedia));
	if (h->sid)
		json_object_set_new(o, "message_sid", json_string(h->sid));
	if (h->msid)
		json_object_set_new(o, "sent_sids", json_string(h->msid));
	if (h->escalate)
		json_object_set_new(o, "escalate", json_true());
	return o;
}

static json_t *export_record(const char *key, const struct conv_rec *c)
{
	json_t *o = json_object();
	json_object_set_new(o, "key", json_string(key));
	json_object_set_new(o, "customer", report_str(c->customer));
	json_object_set_new(o, "business", report_str(c->business));
	json_object_set_new(o, "name", report_str(c->name));
	json_object_set_new(o, "mode", json_string(conv_mode_name(c->mode)));
	json_object_set_new(o, "created", report_jtime(c->created));
	json_object_set_new(o, "updated", report_jtime(c->updated));
	json_object_set_new(o, "last_customer_message", report_jtime(c->last_in));
	json_object_set_new(o, "last_activity", report_jtime(conv_last_activity(c)));
	json_object_set_new(o, "customer_turns", json_integer((json_int_t)c->turns));
	json_object_set_new(o, "messages", json_integer((json_int_t)c->seq));
	json_object_set_new(o, "escalations", json_integer((json_int_t)c->escalations));
	json_object_set_new(o, "handoff_failures", json_integer((json_int_t)c->handoff_failures));
	json_object_set_new(o, "last_escalation",
			    c->esc_at ? json_pack("{s:o, s:o, s:o}", "at", report_jtime(c->esc_at),
						  "trigger", report_str(c->esc_trigger), "reason",
						  report_str(c->esc_reason))
				      : json_null());
	json_object_set_new(o, "flex", json_pack("{s:o, s:o, s:o, s:o, s:o}", "conversation",
						 report_str(c->flex_ch), "participant",
						 report_str(c->flex_mb), "interaction",
						 report_str(c->flex_kd), "channel", report_str(c->flex_uo),
						 "task", report_str(c->flex_wt)));
	json_object_set_new(o, "agent", report_str(c->agent));
	json_object_set_new(o, "accepted", report_jtime(c->accepted_at));
	json_object_set_new(o, "first_agent_reply", report_jtime(c->first_agent_at));
	json_object_set_new(o, "window_closed", report_jtime(c->window_closed));
	json_object_set_new(o, "last_error",
			    c->err_code || c->err ? json_pack("{s:I, s:o}", "code", (json_int_t)c->err_code,
							      "message", report_str(c->err))
						  : json_null());
	return o;
}

/* Text lines: continuation lines of a multi-line message keep the indent. */
static void export_text_line(const char *when, const char *who, const char *text)
{
	printf("  %-24s  %-20s ", when, who);
	for (const char *p = text; *p; p++) {
		fputc(*p, stdout);
		if (*p == '\n' && p[1])
			printf("  %-24s  %-20s ", "", "");
	}
	fputc('\n', stdout);
}

static void export_text(json_t *doc)
{
	json_t *c = json_object_get(doc, "conversation"), *e;
	size_t i;
	const char *key;
	json_t *v;
	printf("baton conversation export, %s\n\n", json_string_value(json_object_get(doc, "exported_at")));
	json_object_foreach(c, key, v) {
		if (json_is_null(v))
			continue;
		char *s = json_is_string(v) ? xstrdup(json_string_value(v))
					    : json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
		printf("%-22s %s\n", key, s);
		free(s);
	}
	printf("\ntimeline\n");
	json_array_foreach(json_object_get(doc, "timeline"), i, e) {
		const char *mode = json_string_value(json_object_get(e, "mode"));
		char *d = xasprintf("%s%s%s", json_string_value(json_object_get(e, "detail")),
				    mode ? "  -> mode " : "", mode ? mode : "");
		export_text_line(json_string_value(json_object_get(e, "at")),
				 json_string_value(json_object_get(e, "event")), d);
		free(d);
	}
	const char *parts[] = { "transcript", "pending" };
	for (size_t p = 0; p < 2; p++) {
		json_t *arr = json_object_get(doc, parts[p]);
		if (p == 1 && !json_array_size(arr))
			break;
		printf("\n%s\n", p ? "pending (customer turns waiting for the AI)" : "transcript");
		json_array_foreach(arr, i, e) {
			const char *role = json_string_value(json_object_get(e, "role"));
			const char *agent = json_string_value(json_object_get(e, "agent"));
			char *who = agent ? xasprintf("%s (%s)", role, agent) : xstrdup(role);
			export_text_line(json_string_value(json_object_get(e, "at")), who,
					 json_string_value(json_object_get(e, "text")));
			free(who);
		}
	}
}

int ctl_export(const struct config *cfg, const char *address, bool json)
{
	struct ctl_read rd;
	struct conv_rec c;
	char *key;
	int ret;

	if ((ret = ctl_read_conv(cfg, &rd, address, &key, &c)) != CTL_OK)
		return ret;
	/* In clear: the export is the record itself (messages included), for an
	 * audit or the customer's access request, not a listing. */
	json_t *doc = json_object(), *tr = json_array(), *pend = json_array(), *tl = json_array();
	json_object_set_new(doc, "exported_at", report_jtime(clock_wall_ms()));
	json_object_set_new(doc, "conversation", export_record(key, &c));
	for (uint64_t i = 1; i <= c.seq; i++) {
		struct hist_rec h;
		if (store_hist_get(&rd.st, rd.txn, key, i, &h))
			continue;
		json_array_append_new(tr, export_turn(i, &h));
		hist_rec_release(&h);
	}
	/* Customer turns still waiting behind an AI job (not yet in history). */
	for (uint64_t i = c.pend_out + 1; i <= c.pend_in; i++) {
		struct hist_rec h;
		if (store_pend_get(&rd.st, rd.txn, key, i, &h))
			continue;
		json_array_append_new(pend, export_turn(i, &h));
		hist_rec_release(&h);
	}
	for (uint64_t i = 1; i <= c.tl_seq; i++) {
		struct tl_rec t;
		if (store_tl_get(&rd.st, rd.txn, key, i, &t))
			continue;
		const char *ev = t.event ? t.event : "", *d = t.detail ? t.detail : "";
		json_t *o = json_object();
		json_object_set_new(o, "at", report_jtime(t.ts));
		json_object_set_new(o, "event", json_string(ev));
		json_object_set_new(o, "detail", json_string(d));
		const char *sep = strstr(d, ": ");
		if (!strcmp(ev, "escalated")) {
			json_object_set_new(o, "trigger", sep ? json_stringn(d, (size_t)(sep - d))
							     : json_string(d));
			json_object_set_new(o, "reason", json_string(sep ? sep + 2 : ""));
		} else if (!strcmp(ev, "handed_back")) {
			json_object_set_new(o, "path", json_string(d));
		}
		const char *mode = event_mode(ev);
		if (mode)
			json_object_set_new(o, "mode", json_string(mode));
		json_array_append_new(tl, o);
		tl_rec_release(&t);
	}
	json_object_set_new(doc, "transcript", tr);
	json_object_set_new(doc, "pending", pend);
	json_object_set_new(doc, "timeline", tl);
	if (json)
		report_dump(doc);
	else
		export_text(doc);
	json_decref(doc);
	conv_rec_release(&c);
	free(key);
	ctl_read_end(&rd);
	return CTL_OK;
}
