/*
 * log — JSON-lines logging to stderr.
 *
 * One line per event: {"ts","level","proc","msg"} plus the ids that let an
 * operator find the conversation ("conv", masked by default), the job
 * ("job") and the Twilio MessageSid ("sid"). Lines are written with one
 * write(2) so lines from concurrent processes never interleave.
 *
 * Never pass a secret (auth token, API key, Authorization header) to these
 * functions: nothing here can tell a secret from a message.
 */
#ifndef BATON_LOG_H
#define BATON_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* NOTICE: a process's own life (ready, stopping, its figures at exit), so
 * that a quiet level still says when a process is up. */
enum log_level { LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARN, LOG_ERROR };

/** Ids attached to a line; any field may be NULL/0. Borrowed for the call. */
struct log_ids {
	const char *conv;
	uint64_t job;
	const char *sid;
};

/** Set the process name and threshold. mask_phone hides all but the last 4 digits. */
void log_init(const char *proc, enum log_level min, bool mask_phone);
/** Plain "proc: message" lines instead of JSON (command-line tools talking to people). */
void log_plain(bool on);

void log_emit(enum log_level lvl, const struct log_ids *ids, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** Mask the digits of a phone-like address except the last 4 into buf. */
void log_mask_address(const char *addr, char *buf, size_t len);
/** The address as operators see it: masked unless log_init was told not to. */
void log_show_address(const char *addr, char *buf, size_t len);

#define log_debug(...) log_emit(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...)  log_emit(LOG_INFO, NULL, __VA_ARGS__)
#define log_notice(...) log_emit(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_warn(...)  log_emit(LOG_WARN, NULL, __VA_ARGS__)
/** Logs at error level and returns -1, for `return log_err(...)`. */
int log_fail(const struct log_ids *ids, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_err(...)   log_fail(NULL, __VA_ARGS__)
#define log_err_ids(ids, ...) log_fail((ids), __VA_ARGS__)

#endif
