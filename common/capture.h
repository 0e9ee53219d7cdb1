/*
 * capture — append-only files of accepted webhooks, for replay.
 *
 * A capture file is a sequence of records, each a 4-byte big-endian length
 * followed by that many bytes of one msgpack map:
 *   "v": 1                 format version
 *   "t": uint              wall-clock arrival time, ms since the epoch
 *   "p": str               request path ("/twilio/messages", "/admin/handback"...)
 *   "b": bin               the request body exactly as received
 * Unknown keys are ignored by readers, so fields can be added.
 *
 * The writer appends one record per call and starts a new file once the
 * current one reaches max_bytes. Files are named
 * "<dir>/capture-<UTC yyyymmddThhmmss>-<pid>-<n>.bcap" so several ingress
 * processes can capture into one directory and a sorted listing is in
 * time order.
 *
 * The reader walks one file record by record. A record cut short at the
 * end of a file (a crash mid-write) ends the file quietly; a length past
 * CAPTURE_RECORD_MAX or a record that is not a valid map is an error.
 *
 * Errors: functions return 0 or -1 with errno set and a log line that
 * says which file and why. Records handed out by the reader are owned by
 * the caller (capture_record_release).
 */
#ifndef BATON_CAPTURE_H
#define BATON_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

/* A webhook body is at most 64 KiB (ingress refuses larger); leave room. */
#define CAPTURE_RECORD_MAX (1024 * 1024)

struct capture_record {
	uint64_t t;   /* arrival, wall ms */
	char *path;   /* NUL-terminated */
	char *body;   /* body bytes, also NUL-terminated for convenience */
	size_t len;   /* body length */
};

struct capture_writer;

/** Creates dir if needed. Returns NULL (logged) if it cannot. */
struct capture_writer *capture_open(const char *dir, size_t max_bytes);
/** Append one record; flushed to the kernel before returning (write(2), no fsync). */
int capture_append(struct capture_writer *w, uint64_t t, const char *path, const char *body,
		   size_t len);
/** Closes the current file. *w becomes NULL. */
void capture_close(struct capture_writer **w);

struct capture_reader;

struct capture_reader *capture_reader_open(const char *file);
/** 1 with *rec filled, 0 at the end of the file, -1 on a damaged record. */
int capture_read(struct capture_reader *r, struct capture_record *rec);
void capture_reader_close(struct capture_reader **r);
void capture_record_release(struct capture_record *rec);

#endif
