/* log — JSON-lines writer; see log.h for the line format. */
#include "log.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

/* A log message longer than this is cut: a line must stay one write(2). */
#define LOG_MSG_MAX 2048

static const char *log_proc = "baton";
static enum log_level log_min = LOG_INFO;
static bool log_mask = true;
static bool log_text; /* plain "proc: message" lines, for command-line tools */

static const char *const log_names[] = { "debug", "info", "notice", "warn", "error" };

void log_init(const char *proc, enum log_level min, bool mask_phone)
{
	log_proc = proc;
	log_min = min;
	log_mask = mask_phone;
}

void log_plain(bool on)
{
	log_text = on;
}

void log_mask_address(const char *addr, char *buf, size_t len)
{
	size_t n = strlen(addr), digits = 0, seen = 0, o = 0;

	for (size_t i = 0; i < n && addr[i] != '|'; i++)
		if (isdigit((unsigned char)addr[i]))
			digits++;
	for (size_t i = 0; i < n && o + 1 < len; i++) {
		char c = addr[i];
		/* The business number after '|' is ours, not personal data. */
		if (c == '|') {
			snprintf(buf + o, len - o, "%s", addr + i);
			return;
		}
		if (isdigit((unsigned char)c)) {
			seen++;
			if (digits > 4 && seen <= digits - 4)
				c = '*';
		}
		buf[o++] = c;
	}
	buf[o] = '\0';
}

void log_show_address(const char *addr, char *buf, size_t len)
{
	if (log_mask)
		log_mask_address(addr, buf, len);
	else
		snprintf(buf, len, "%s", addr);
}

static void log_vemit(enum log_level lvl, const struct log_ids *ids, const char *fmt, va_list ap)
{
	char msg[LOG_MSG_MAX], ts[32], masked[256];

	if (lvl < log_min)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_text) {
		dprintf(STDERR_FILENO, "%s: %s\n", log_proc, msg);
		return;
	}
	clock_iso8601(clock_wall_ms(), ts, sizeof(ts));

	json_t *o = json_object();
	json_object_set_new(o, "ts", json_string(ts));
	json_object_set_new(o, "level", json_string(log_names[lvl]));
	json_object_set_new(o, "proc", json_string(log_proc));
	/* Invalid UTF-8 in a message must not drop the line. */
	json_t *m = json_string(msg);
	json_object_set_new(o, "msg", m ? m : json_string("(message not valid UTF-8)"));
	if (ids && ids->conv) {
		const char *c = ids->conv;
		if (log_mask) {
			log_mask_address(ids->conv, masked, sizeof(masked));
			c = masked;
		}
		json_t *cv = json_string(c);
		if (cv)
			json_object_set_new(o, "conv", cv);
	}
	if (ids && ids->job)
		json_object_set_new(o, "job", json_integer((json_int_t)ids->job));
	if (ids && ids->sid) {
		json_t *sv = json_string(ids->sid);
		if (sv)
			json_object_set_new(o, "sid", sv);
	}
	char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!line)
		return;
	size_t len = strlen(line);
	line[len] = '\n'; /* replaces the NUL: we write len+1 bytes, not a string */
	ssize_t w = write(STDERR_FILENO, line, len + 1);
	(void)w;
	free(line);
}

void log_emit(enum log_level lvl, const struct log_ids *ids, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(lvl, ids, fmt, ap);
	va_end(ap);
}

int log_fail(const struct log_ids *ids, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vemit(LOG_ERROR, ids, fmt, ap);
	va_end(ap);
	return -1;
}
