/*
 * metrics — a small Prometheus registry per process, and the files that
 * carry it to ingress's GET /metrics.
 *
 * A metric is described once by a static struct metric_def (name, type,
 * HELP, up to two label names, optionally the label values to show at 0
 * from the start) and used by pointer:
 *
 *     static const struct metric_def M_SENDS = { "baton_egress_sends_total",
 *             METRIC_COUNTER, "Send jobs finished, by outcome.", { "outcome" } };
 *     metrics_inc(&M_SENDS, "ok", NULL);
 *
 * The first use registers the family; metrics_register() does it up front
 * (with the def's initial series at 0, so rate() works from the start).
 * Every series also carries the process's constant labels
 * process="<proc>" and pid="<pid>" (set by metrics_init): two ai-workers
 * never collide, and `instance`, which Prometheus sets itself for the
 * scraped target, is left alone.
 *
 * Histograms have fixed buckets in seconds (METRICS_BUCKETS_S, then
 * +Inf). A family holds at most METRICS_SERIES_MAX label sets; past that,
 * values go to one series whose labels are all "other", so a label fed
 * with unexpected values cannot grow without bound.
 *
 * Files: metrics_init() has metrics_tick() write the whole registry to
 * <state.dir>/metrics/<proc>-<pid>.prom every metrics.interval_ms
 * (temporary file + rename, so a reader never sees half a file); the file
 * is removed at a clean exit. Ingress reads the fresh ones and merges them
 * with its own rendering: that is metrics_merge.h, not this module.
 *
 * Single-threaded: every baton process runs its loop in one thread, and
 * there is no locking here.
 */
#ifndef BATON_METRICS_H
#define BATON_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "lathist.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* Label sets one family may hold (the "other" series included). */
#define METRICS_SERIES_MAX 100
/* Upper bounds of the histogram buckets, seconds; +Inf follows. */
#define METRICS_NBUCKETS 12
#define METRICS_BUCKETS_S { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metric_def {
	const char *name;
	enum metric_type type;
	const char *help;
	const char *labels[2];         /* label names, NULL when unused */
	const char *const *init[2];    /* NULL-terminated values of each label shown at 0 from
					* registration (all combinations); NULL = none */
};

/**
 * Constant labels process=proc and pid, the process metrics (RSS, CPU,
 * start time), and the file in <state_dir>/metrics unless interval_ms is
 * 0. Registers an atexit handler that removes the file. Call once.
 */
void metrics_init(const char *proc, const struct config *cfg);
/**
 * Writes the file when due. Returns the ms until the next write (for a
 * poll timeout), or -1 when files are off.
 */
int metrics_tick(void);

/** Register families (NULL-terminated), with their initial series at 0. */
void metrics_register(const struct metric_def *const *defs);

/* Updates; v1/v2 are the label values (NULL when the family has no such label). */
void metrics_inc(const struct metric_def *d, const char *v1, const char *v2);
void metrics_add(const struct metric_def *d, const char *v1, const char *v2, double n);
void metrics_set(const struct metric_def *d, const char *v1, const char *v2, double v);
void metrics_observe(const struct metric_def *d, const char *v1, const char *v2, double seconds);
/** A histogram series becomes a copy of a lathist (microseconds), mapped onto the le buckets. */
void metrics_set_lathist(const struct metric_def *d, const char *v1, const char *v2,
			 const struct lathist *h);

/**
 * Counter updates made between begin and end(keep) are held back, and
 * then applied (keep) or dropped: the router counts inside its LMDB
 * transaction and keeps the counts only when the batch commits.
 */
void metrics_stage_begin(void);
void metrics_stage_end(bool keep);

/** Called before every render, to set gauges from live state. */
typedef void metrics_collect_fn(void *arg);
void metrics_collector_add(metrics_collect_fn *fn, void *arg);
void metrics_collector_remove(metrics_collect_fn *fn, void *arg);

/** The registry in the text format (0.0.4), collectors run first. */
void metrics_render(FILE *out);
/** The same into a malloc'd string. */
char *metrics_render_string(void);

/** Label value escaped for the text format (\\, \", \n) into out; returns out. */
char *metrics_escape_label(const char *v, char *out, size_t len);
/** v when it is one of allowed (NULL-terminated), else "other": bounds free text. */
const char *metrics_label_in(const char *v, const char *const *allowed);

/**
 * The directory every process writes its file to, <state_dir>/metrics,
 * and metrics_merge_read_dir() reads (malloc'd: caller owns it).
 */
char *metrics_dir(const char *state_dir);

/** Drop every family and collector (tests). */
void metrics_reset(void);

#endif
