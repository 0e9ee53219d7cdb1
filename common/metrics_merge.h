/*
 * metrics_merge — reading the other processes' metrics files and merging
 * exposition texts into one, for ingress's GET /metrics.
 *
 * Every baton process writes its registry (metrics.h) to
 * <state.dir>/metrics/<proc>-<pid>.prom (metrics_dir()). Ingress answers
 * /metrics with its own rendering merged with every fresh file of that
 * directory: metrics_merge_read_dir() picks and reads the files,
 * metrics_merge_texts() folds the texts into one valid exposition.
 *
 * The texts are other processes' output, so the merge trusts none of it:
 * malformed lines are dropped, a file larger than METRICS_MERGE_FILE_MAX is
 * skipped. Nothing here keeps state between calls; no registry is touched.
 */
#ifndef BATON_METRICS_MERGE_H
#define BATON_METRICS_MERGE_H

#include <stddef.h>
#include <sys/types.h>

/* A file older than this many metrics.interval_ms is left out of the merge. */
#define METRICS_MERGE_FRESH_INTERVALS 3
/* A metrics file larger than this is not a baton metrics file. */
#define METRICS_MERGE_FILE_MAX (4u * 1024 * 1024)

/**
 * Merges exposition texts (text format 0.0.4) into one: samples grouped by
 * metric family, the family's HELP and TYPE once (the first seen),
 * families in order of first appearance. Samples of a family a later text
 * declares with another TYPE are dropped; a sample without a declared
 * family gets TYPE untyped. Malformed lines and comments other than HELP
 * and TYPE are dropped. A NULL text is skipped; texts may be NULL when n
 * is 0. Borrows texts; returns a malloc'd string the caller owns (never
 * NULL, "" for nothing).
 */
char *metrics_merge_texts(const char *const *texts, size_t n);

/**
 * The pid of a metrics file name "<proc>-<pid>.prom" (proc: lower-case
 * letters, digits and '-'): 0 with *pid set, -1 for any other name
 * (temporary files ".<proc>-<pid>.prom.tmp", paths, pid 0 too).
 */
int metrics_merge_file_pid(const char *name, pid_t *pid);

/**
 * Every fresh metrics file of dir, except self's, in name order. Fresh:
 * written within METRICS_MERGE_FRESH_INTERVALS x interval_ms of now by a
 * process still alive. A stale file of a process that is gone is removed
 * (what a crashed process left behind). *texts gets a malloc'd array of
 * malloc'd contents (caller frees each and the array, which may be NULL
 * when 0 are returned); *stale counts the files left out. Returns how many were
 * read: 0 when interval_ms <= 0 (files off) or dir cannot be opened.
 */
size_t metrics_merge_read_dir(const char *dir, int interval_ms, pid_t self, char ***texts,
			      size_t *stale);

#endif
