/*
 * reports — figures over a period from the conversations' timelines; see
 * reports.h. Only conversations active since the period's start are read
 * (the recent index, newest first): a quiet store costs nothing.
 */
#include "reports.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xalloc.h"

static bool reports_is(const char *s, const char *want)
{
	return s && !strcmp(s, want);
}

/* Reads one report may make (records, timeline entries, history probes):
 * over a store too big for that, the report stops and says it covers part
 * of the conversations, so one request never holds a thread for long. */
#define REPORTS_READS_MAX 300000

static const char *const reports_triggers[] = { "rule", "tool", "tag", "ai_failure", "voice",
						"operator", "other" };
static const char *const reports_paths[] = { "agent_closed", "task_completed", "operator",
					     "inactivity_timeout", "no_agent", "reset", "other" };
/* Upper bounds of the time-to-agent histogram's bins; one more bin above the last. */
static const uint64_t reports_wait_bins[] = { 30000, 60000, 120000, 300000, 600000, 1800000,
					      3600000 };
#define REPORTS_NTRIGGERS (sizeof(reports_triggers) / sizeof(reports_triggers[0]))
#define REPORTS_NPATHS (sizeof(reports_paths) / sizeof(reports_paths[0]))
#define REPORTS_NBINS (sizeof(reports_wait_bins) / sizeof(reports_wait_bins[0]) + 1)

struct reports {
	uint64_t from, to, now;
	uint64_t hour0;       /* start of the first hourly bucket */
	size_t nhours;
	json_int_t *per_hour; /* escalations per hour from hour0 */
	json_int_t escalations, by_trigger[REPORTS_NTRIGGERS];
	json_int_t handbacks, by_path[REPORTS_NPATHS];
	uint64_t *waits;      /* accepted - escalated, ms, one per accepted handoff */
	size_t nwaits, capwaits;
	json_int_t not_accepted, waiting;
	json_int_t active, ai_only;
	json_int_t conversations;
	size_t reads;
	bool truncated;
};

/* Index of word[0..len) in names[0..n), or of the last ("other") when absent. */
static size_t reports_index(const char *const *names, size_t n, const char *word,
				   size_t len)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (strlen(names[i]) == len && !strncmp(names[i], word, len))
			return i;
	return n - 1;
}

static bool reports_in(const struct reports *r, uint64_t ts)
{
	return ts >= r->from && ts < r->to;
}

/*
 * *in: whether the conversation has a turn in the period. History is
 * appended in time order, so a binary search finds its first turn at or
 * after the period's start in log2(turns) reads.
 */
static int reports_turn_in(struct store *st, MDB_txn *txn, const char *key,
				  const struct conv_rec *c, struct reports *r, bool *in)
{
	uint64_t lo = 1, hi = c->seq + 1, first = UINT64_MAX;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2, ts = 0;
		struct hist_rec h;
		r->reads++;
		int rc = store_hist_get(st, txn, key, mid, &h);
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
static int reports_conv(struct store *st, MDB_txn *txn, const char *key,
			       const struct conv_rec *c, struct reports *r)
{
	uint64_t esc = 0;     /* the escalation waiting for an agent */
	bool esc_in = false;  /* ... made in the period */
	uint64_t stretch = 0; /* start of the stretch in progress */
	bool person = false, event_in = false;
	int rc = 0;

	for (uint64_t i = 1; i <= c->tl_seq; i++) {
		struct tl_rec t;
		r->reads++;
		rc = store_tl_get(st, txn, key, i, &t);
		if (rc == MDB_NOTFOUND)
			continue;
		if (rc)
			return rc;
		bool in = reports_in(r, t.ts);
		const char *detail = t.detail ? t.detail : "";
		event_in |= in;
		if (reports_is(t.event, "escalated")) {
			if (esc && esc_in)
				r->not_accepted++; /* superseded without an agent */
			esc = t.ts;
			esc_in = in;
			if (!stretch)
				stretch = t.ts;
			if (in) {
				r->escalations++;
				r->by_trigger[reports_index(reports_triggers, REPORTS_NTRIGGERS,
								   detail, strcspn(detail, ":"))]++;
				r->per_hour[(t.ts - r->hour0) / REPORTS_HOUR_MS]++;
			}
		} else if (reports_is(t.event, "agent_takeover")) {
			if (!stretch)
				stretch = t.ts;
		} else if (reports_is(t.event, "accepted")) {
			if (esc && esc_in) {
				if (r->nwaits == r->capwaits) {
					r->capwaits = r->capwaits ? r->capwaits * 2 : 64;
					r->waits = xrealloc(r->waits, r->capwaits * sizeof(*r->waits));
				}
				r->waits[r->nwaits++] = t.ts > esc ? t.ts - esc : 0;
			}
			esc = 0;
		} else if (reports_is(t.event, "handed_back") || reports_is(t.event, "handoff_failed")) {
			if (in && reports_is(t.event, "handed_back")) {
				r->handbacks++;
				r->by_path[reports_index(reports_paths, REPORTS_NPATHS, detail,
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
	bool active = event_in || reports_in(r, c->created) || reports_in(r, c->last_in);
	if (!active && (rc = reports_turn_in(st, txn, key, c, r, &active)))
		return rc;
	if (active) {
		r->active++;
		if (!person)
			r->ai_only++;
	}
	return 0;
}

/* Walks the conversations active since the period's start, newest first
 * (the recent index), in one read transaction, up to the read budget. */
static int reports_scan(struct store *st, MDB_txn *txn, struct reports *r)
{
	static const enum conv_mode modes[] = { MODE_AI, MODE_ESCALATING, MODE_HUMAN };
	int rc = 0;
	for (size_t m = 0; rc == 0 && !r->truncated && m < 3; m++) {
		struct store_recent it;
		uint64_t at;
		const char *k;
		size_t kl;
		if ((rc = store_recent_open(st, txn, modes[m], 0, NULL, &it)))
			break;
		while ((rc = store_recent_next(&it, &at, &k, &kl)) == 0 && at >= r->from) {
			struct conv_rec cr;
			char *key = xstrndup(k, kl);
			r->reads++;
			rc = store_conv_get(st, txn, key, &cr);
			if (rc == MDB_NOTFOUND) {
				free(key);
				continue;
			}
			if (rc) {
				free(key);
				break;
			}
			r->conversations++;
			/* Born after the period: nothing of it in there. */
			if (cr.created >= r->to) {
				conv_rec_release(&cr);
				free(key);
				continue;
			}
			/* Its timeline and a binary search of its history, whole or not at all. */
			if (r->reads + cr.tl_seq + 64 > REPORTS_READS_MAX) {
				r->truncated = true;
				conv_rec_release(&cr);
				free(key);
				break;
			}
			rc = reports_conv(st, txn, key, &cr, r);
			free(key);
			conv_rec_release(&cr);
			if (rc)
				break;
		}
		store_recent_close(&it);
		if (rc == MDB_NOTFOUND)
			rc = 0;
	}
	return rc;
}

static int reports_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The nearest-rank percentile p (0..100) of sorted v[0..n), n > 0. */
static uint64_t reports_percentile(const uint64_t *v, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;
	return v[rank ? rank - 1 : 0];
}

static json_t *reports_counts(const char *const *names, const json_int_t *counts, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(o, names[i], json_integer(counts[i]));
	return o;
}

static json_t *reports_json(struct reports *r)
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
			    reports_counts(reports_triggers, r->by_trigger, REPORTS_NTRIGGERS));
	json_t *hours = json_array();
	for (size_t i = 0; i < r->nhours; i++)
		json_array_append_new(hours, json_integer(r->per_hour[i]));
	json_object_set_new(es, "per_hour", json_pack("{s:I, s:I, s:o}", "start_ms",
						      (json_int_t)r->hour0, "step_ms",
						      (json_int_t)REPORTS_HOUR_MS, "counts", hours));
	json_object_set_new(root, "escalations", es);

	json_t *ta = json_object();
	json_int_t bins[REPORTS_NBINS] = { 0 };
	if (r->nwaits)
		qsort(r->waits, r->nwaits, sizeof(*r->waits), reports_cmp_u64);
	for (size_t i = 0; i < r->nwaits; i++) {
		size_t b = 0;
		while (b + 1 < REPORTS_NBINS && r->waits[i] >= reports_wait_bins[b])
			b++;
		bins[b]++;
	}
	json_object_set_new(ta, "accepted", json_integer((json_int_t)r->nwaits));
	json_object_set_new(ta, "not_accepted", json_integer(r->not_accepted));
	json_object_set_new(ta, "waiting", json_integer(r->waiting));
	json_object_set_new(ta, "median_ms", r->nwaits ? json_integer((json_int_t)reports_percentile(
								 r->waits, r->nwaits, 50))
						       : json_null());
	json_object_set_new(ta, "p90_ms", r->nwaits ? json_integer((json_int_t)reports_percentile(
							      r->waits, r->nwaits, 90))
						    : json_null());
	json_object_set_new(ta, "max_ms", r->nwaits ? json_integer((json_int_t)r->waits[r->nwaits - 1])
						    : json_null());
	json_t *ba = json_array();
	for (size_t b = 0; b < REPORTS_NBINS; b++) {
		json_t *o = json_object();
		json_object_set_new(o, "from_ms", json_integer(b ? (json_int_t)reports_wait_bins[b - 1] : 0));
		json_object_set_new(o, "to_ms", b + 1 < REPORTS_NBINS
							? json_integer((json_int_t)reports_wait_bins[b])
							: json_null());
		json_object_set_new(o, "count", json_integer(bins[b]));
		json_array_append_new(ba, o);
	}
	json_object_set_new(ta, "bins", ba);
	json_object_set_new(root, "time_to_agent", ta);

	json_t *hb = json_object();
	json_object_set_new(hb, "total", json_integer(r->handbacks));
	json_object_set_new(hb, "by_path", reports_counts(reports_paths, r->by_path, REPORTS_NPATHS));
	json_object_set_new(root, "handbacks", hb);

	json_object_set_new(root, "scan", json_pack("{s:I, s:I, s:b}", "conversations",
						    r->conversations, "reads", (json_int_t)r->reads,
						    "truncated", r->truncated));
	return root;
}


json_t *reports_compute(struct store *st, MDB_txn *txn, uint64_t from, uint64_t to, uint64_t now,
			int *err)
{
	struct reports r = { .from = from, .to = to, .now = now };
	r.hour0 = r.from - r.from % REPORTS_HOUR_MS;
	r.nhours = (size_t)((r.to - r.hour0 + REPORTS_HOUR_MS - 1) / REPORTS_HOUR_MS);
	r.per_hour = xcalloc(r.nhours, sizeof(*r.per_hour));
	*err = reports_scan(st, txn, &r);
	json_t *out = *err ? NULL : reports_json(&r);
	free(r.per_hour);
	free(r.waits);
	return out;
}
