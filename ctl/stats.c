/*
 * stats — batonctl stats: counts for the operator (modes, escalations and
 * their reasons, hand-backs, jobs, the outbox, Twilio errors, history,
 * purges, LMDB and the store's health), all from one read transaction so
 * every figure is of the same committed state; see ctl.h.
 */
#include "ctl.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "xalloc.h"

/* Escalation reasons are free text (the model's among them): the text
 * report shows the most frequent, JSON a bounded number plus the rest. */
#define STATS_TOP_TEXT 10
#define STATS_TOP_JSON 100

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
	int rc = mdb_cursor_open(rd->txn, rd->st->conv, &cur);
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
	int rc = mdb_cursor_open(rd->txn, rd->st->tl, &cur);
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
	json_t *reasons = count_top(why, STATS_TOP_JSON);
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
	int rc = mdb_cursor_open(rd->txn, rd->st->jobs, &cur);
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
	json_object_set_new(ob, "oldest", ctl_jtime(oldest_send));
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
					     ? ctl_jtime((uint64_t)json_integer_value(since))
					     : json_null());
	return h;
}

static void stats_store(const struct config *cfg, struct ctl_read *rd, json_t *root)
{
	json_int_t b, hist_b, pend_b, tl_b;
	json_t *h = json_object();
	json_object_set_new(h, "messages", json_integer(dbi_entries(rd->txn, rd->st->hist, &hist_b)));
	json_object_set_new(h, "pending", json_integer(dbi_entries(rd->txn, rd->st->pend, &pend_b)));
	json_object_set_new(h, "timeline_entries", json_integer(dbi_entries(rd->txn, rd->st->tl, &tl_b)));
	json_object_set_new(h, "bytes", json_integer(hist_b + pend_b + tl_b));
	json_object_set_new(h, "dedupe_entries", json_integer(dbi_entries(rd->txn, rd->st->seen, &b)));
	json_object_set_new(h, "index_entries", json_integer(dbi_entries(rd->txn, rd->st->idx, &b)));
	json_object_set_new(root, "history", h);

	/* Purges: the audit DB, newest key last. */
	json_t *p = json_object();
	uint64_t last = 0;
	json_int_t purges = dbi_entries(rd->txn, rd->st->audit, &b);
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	if (rd->st->audit && mdb_cursor_open(rd->txn, rd->st->audit, &cur) == 0) {
		struct audit_rec a;
		if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && store_audit_decode(&v, &a) == 0) {
			last = a.ts;
			audit_rec_release(&a);
		}
		mdb_cursor_close(cur);
	}
	json_object_set_new(p, "total", json_integer(purges));
	json_object_set_new(p, "last", ctl_jtime(last));
	json_object_set_new(root, "purges", p);

	MDB_envinfo info;
	MDB_stat es;
	struct stat fst;
	char *file = xasprintf("%s/data.mdb", cfg->state_dir);
	json_t *l = json_object();
	mdb_env_info(rd->st->env, &info);
	mdb_env_stat(rd->st->env, &es);
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
	print_counts("by trigger", json_object_get(e, "by_trigger"), STATS_TOP_TEXT);
	print_counts("by reason", json_object_get(e, "by_reason"), STATS_TOP_TEXT);
	printf("hand-backs      %lld\n", (long long)jint(h, "total", NULL));
	print_counts("by path", json_object_get(h, "by_path"), STATS_TOP_TEXT);
	printf("jobs queued     %lld (ai %lld, send %lld, flex %lld)\n", (long long)jint(j, "total", NULL),
	       (long long)jint(j, "by_kind", "ai"), (long long)jint(j, "by_kind", "send"),
	       (long long)jint(j, "by_kind", "flex"));
	const char *oldest = json_string_value(json_object_get(ob, "oldest"));
	printf("outbox backlog  %lld%s%s%s\n", (long long)jint(ob, "backlog", NULL),
	       oldest ? " (oldest " : "", oldest ? oldest : "", oldest ? ")" : "");
	print_counts("errors by Twilio code", json_object_get(root, "errors_by_twilio_code"),
		     STATS_TOP_TEXT);
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
			ctl_dump(root);
		else
			stats_print(root);
	}
	json_decref(root);
	ctl_read_end(&rd);
	return ret;
}

