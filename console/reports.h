/*
 * reports — the console's figures over a period, from the conversations'
 * timelines: escalations {total, by_trigger, per_hour {start_ms, step_ms,
 * counts}} ("escalated" entries in the period); time_to_agent {accepted,
 * not_accepted, waiting, median_ms, p90_ms, max_ms, bins [{from_ms, to_ms,
 * count}]} (accepted - escalated of each handoff escalated in the period);
 * handbacks {total, by_path}; conversations {active (a turn or a timeline
 * entry in the period), ai_only (active, and never escalating nor with a
 * person during the period), with_person, ai_only_share}; scan
 * {conversations, reads, truncated}: the walk stops after 300,000 reads
 * (truncated: true) so a report never holds a thread for long.
 */
#ifndef BATON_REPORTS_H
#define BATON_REPORTS_H

#include <jansson.h>
#include <stdint.h>

#include "store.h"

#define REPORTS_HOUR_MS 3600000ULL
#define REPORTS_DAY_MS (24 * REPORTS_HOUR_MS)
/* A year of hourly buckets at most. */
#define REPORTS_SPAN_MAX_MS (366 * REPORTS_DAY_MS)

/**
 * The report for [from, to) (wall ms, from < to, at most REPORTS_SPAN_MAX_MS
 * apart), read in txn; now is the clock for stretches still running. A new
 * reference, or NULL with *err an LMDB error.
 */
json_t *reports_compute(struct store *st, MDB_txn *txn, uint64_t from, uint64_t to, uint64_t now,
			int *err);

#endif
