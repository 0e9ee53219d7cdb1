/*
 * replay — plays capture files (common/capture.h) back into baton.
 *
 * Records from every file are merged in record time order and sent either
 * over HTTP to an ingress (REPLAY_HTTP: Twilio paths re-signed with the
 * configured auth token over http.public_url + path, admin paths with the
 * admin bearer token, so nothing has to be switched off) or straight to
 * the router's ingress endpoint as a DEALER (REPLAY_ROUTER: each record
 * converted into an envelope by ingress's own webhook/events code, the
 * signature check skipped).
 *
 * Pacing: record i is due at start + (t_i - t_0) / speed; speed 0 means
 * as fast as possible. At most `concurrency` requests are in flight; a due
 * record waits for a free slot. A request is acknowledged by a 2xx (HTTP)
 * or an ACK with ST_OK or ST_DUPLICATE (router); anything else, including
 * no answer within the timeout, is a failure. Per-conversation order is
 * kept only as far as pacing and one request in flight keep it.
 *
 * Latency is per request, from the moment it is handed to curl / ZeroMQ
 * to its answer. Errors are logged (common/log.h); replay_run returns -1
 * only when it could not start.
 */
#ifndef BATON_REPLAY_H
#define BATON_REPLAY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

enum replay_target { REPLAY_HTTP, REPLAY_ROUTER };

struct replay_opts {
	enum replay_target to;
	const char *url;                  /* HTTP base URL; NULL: http://<http.bind>:<http.port> */
	int concurrency;                  /* requests in flight, >= 1 */
	double speed;                     /* 1 original pace, N times faster; 0 = as fast as possible */
	bool progress;                    /* progress bar on stderr */
	FILE *sent_log;                   /* "<CLOCK_MONOTONIC ns> <MessageSid or ->" per request; NULL = none */
	char *const *files;               /* capture files, directories already expanded */
	size_t nfiles;
	volatile sig_atomic_t *stop;      /* set by a signal: stop sending, wait for answers */
};

struct replay_summary {
	uint64_t records;  /* read from the files */
	uint64_t sent;     /* handed to ingress or the router */
	uint64_t acked;    /* 2xx, or ST_OK / ST_DUPLICATE */
	uint64_t failed;   /* refused, unanswered, or not convertible */
	uint64_t skipped;  /* router mode: records ingress would answer without the router */
	unsigned damaged;  /* files that ended on a damaged record */
	bool interrupted;  /* a stop signal, or a router that never answered, ended it early */
	double elapsed_s;  /* first send to last answer */
	double rate;       /* sent per second */
	double p50_ms, p90_ms, p99_ms, max_ms; /* latency, send to answer (common/lathist: within 6%) */
};

/**
 * Appends path to *files (*n entries, malloc'd strings): a directory gives
 * its *.bcap files in name order. 0, or -1 (logged) when path cannot be read.
 */
int replay_add_path(const char *path, char ***files, size_t *n);
void replay_free_paths(char **files, size_t n);

/** Plays every record; fills *sum. 0 when it ran (failures are counted), -1 when it could not start. */
int replay_run(const struct config *cfg, const struct replay_opts *o, struct replay_summary *sum);

/** The closing summary: two readable lines, or one JSON object (json). */
void replay_print_summary(const struct replay_summary *sum, bool json, FILE *out);

#endif
