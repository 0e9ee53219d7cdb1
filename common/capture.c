/*
 * capture — append-only capture files of accepted webhooks; see capture.h.
 *
 * Writer: one record is packed into an sbuffer behind a 4-byte length
 * placeholder and handed to the kernel with write(2) in one piece. A write
 * that fails half way is cut back off the file (ftruncate), so a bad record
 * can only ever sit at the very end of a file, where the reader treats it
 * as the crash tail it looks like; the file stays open for the next record
 * unless the cut failed too. A writer's error lines are rate-limited (one
 * a minute, with the count of the quiet ones): a full disk fails every
 * append, and ingress must not flood its log with one line per webhook.
 *
 * Reader: the length is checked against CAPTURE_RECORD_MAX before any
 * allocation, and the record's msgpack is walked without allocating
 * (mpscan_size) before msgpack-c sees it, because msgpack-c allocates
 * a container's elements from the count in its header.
 */
#include "capture.h"

#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mpscan.h"
#include "xalloc.h"

#define CAPTURE_VERSION 1
/* Records are flat maps; anything nested deeper than this is not ours. */
#define CAPTURE_DEPTH_MAX 8
/* Capture files hold customers' messages: owner only. */
#define CAPTURE_FILE_MODE 0600
#define CAPTURE_DIR_MODE 0700
/* At most one writer error line this often. */
#define CAPTURE_ERR_LOG_MS 60000

struct capture_writer {
	char *dir;
	size_t max_bytes;
	int fd;        /* -1 until the first record of a file */
	char *file;    /* path of the open file, for log lines */
	size_t size;   /* bytes in the open file */
	unsigned seq;  /* files started by this writer */
	uint64_t err_logged;    /* mono ms of the last error line, 0 = none yet */
	unsigned long err_quiet; /* failures since then that were not logged */
};

struct capture_reader {
	char *file;
	FILE *f;
	uint64_t off;  /* offset of the next record, for log lines */
	char *buf;
	size_t cap;
	bool broken;   /* a damaged record was seen: nothing after it is trusted */
};

/* --- writer --- */

/* mkdir -p: every missing component, so "captures/today" works. */
static int capture_mkdirs(const char *dir)
{
	char *p = xstrdup(dir);
	int rc = -1;

	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, CAPTURE_DIR_MODE) < 0 && errno != EEXIST)
			goto fail;
		*s = '/';
	}
	if (mkdir(p, CAPTURE_DIR_MODE) < 0 && errno != EEXIST)
		goto fail;
	rc = 0;
fail:
	free(p);
	return rc;
}

struct capture_writer *capture_open(const char *dir, size_t max_bytes)
{
	struct stat st;

	if (!dir || !*dir) {
		errno = EINVAL;
		log_err("capture: no directory given");
		return NULL;
	}
	if (capture_mkdirs(dir) < 0 || stat(dir, &st) < 0) {
		log_err("capture: cannot create directory '%s': %s", dir, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		log_err("capture: '%s' is not a directory", dir);
		return NULL;
	}
	/* Say so at start-up rather than at the first accepted webhook. */
	if (access(dir, W_OK | X_OK) < 0) {
		log_err("capture: cannot write in '%s': %s", dir, strerror(errno));
		return NULL;
	}
	struct capture_writer *w = xcalloc(1, sizeof(*w));
	w->dir = xstrdup(dir);
	w->max_bytes = max_bytes ? max_bytes : 1;
	w->fd = -1;
	return w;
}

/* Logs a failed append unless one was logged within CAPTURE_ERR_LOG_MS;
 * keeps errno for the caller. Returns -1. */
static int capture_werr(struct capture_writer *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int capture_werr(struct capture_writer *w, const char *fmt, ...)
{
	int e = errno;
	char msg[512];
	va_list ap;
	uint64_t now = clock_mono_ms();

	if (w->err_logged && now - w->err_logged < CAPTURE_ERR_LOG_MS) {
		w->err_quiet++;
		errno = e;
		return -1;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w->err_quiet)
		log_err("capture: %s (and %lu more records not captured in the last minute)", msg,
			w->err_quiet);
	else
		log_err("capture: %s", msg);
	w->err_logged = now ? now : 1;
	w->err_quiet = 0;
	errno = e;
	return -1;
}

/* Files are opened on the first record, so a start-up without traffic
 * leaves no empty file behind. */
static int capture_next_file(struct capture_writer *w)
{
	char stamp[32];
	struct tm tm;
	time_t now = time(NULL);

	if (!gmtime_r(&now, &tm) || strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm) == 0) {
		errno = EINVAL;
		return capture_werr(w, "cannot format the time for a file name");
	}
	w->seq++;
	free(w->file);
	/* Zero-padded so a sorted listing keeps one writer's files in order. */
	w->file = xasprintf("%s/capture-%s-%ld-%06u.bcap", w->dir, stamp, (long)getpid(), w->seq);
	w->fd = open(w->file, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, CAPTURE_FILE_MODE);
	if (w->fd < 0)
		return capture_werr(w, "cannot create '%s': %s", w->file, strerror(errno));
	w->size = 0;
	log_info("capture: writing %s", w->file);
	return 0;
}

static void capture_close_file(struct capture_writer *w)
{
	if (w->fd >= 0 && close(w->fd) < 0)
		log_warn("capture: closing '%s': %s", w->file, strerror(errno));
	w->fd = -1;
}

/* msgpack-c's pack calls fail only when the sbuffer cannot grow. */
static int capture_pack_str(msgpack_packer *pk, const char *s, size_t n)
{
	return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

int capture_append(struct capture_writer *w, uint64_t t, const char *path, const char *body,
		   size_t len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	static const char placeholder[4];
	int rc = -1;

	if (!w || !path) {
		errno = EINVAL;
		return log_err("capture: append without a writer or a path");
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	/* The length goes in front once the map's size is known. */
	int perr = msgpack_sbuffer_write(&sb, placeholder, sizeof(placeholder));
	perr |= msgpack_pack_map(&pk, 4);
	perr |= capture_pack_str(&pk, "v", 1);
	perr |= msgpack_pack_unsigned_int(&pk, CAPTURE_VERSION);
	perr |= capture_pack_str(&pk, "t", 1);
	perr |= msgpack_pack_uint64(&pk, t);
	perr |= capture_pack_str(&pk, "p", 1);
	perr |= capture_pack_str(&pk, path, strlen(path));
	perr |= capture_pack_str(&pk, "b", 1);
	perr |= msgpack_pack_bin(&pk, len);
	perr |= msgpack_pack_bin_body(&pk, body ? body : "", len);
	if (perr) {
		errno = ENOMEM;
		capture_werr(w, "out of memory packing a record");
		goto fail;
	}

	size_t n = sb.size - sizeof(placeholder);
	if (n > CAPTURE_RECORD_MAX) {
		errno = EMSGSIZE;
		capture_werr(w, "a %zu-byte record for %s is over %d bytes", n, path,
			     CAPTURE_RECORD_MAX);
		goto fail;
	}
	unsigned char *p = (unsigned char *)sb.data;
	p[0] = (unsigned char)(n >> 24);
	p[1] = (unsigned char)(n >> 16);
	p[2] = (unsigned char)(n >> 8);
	p[3] = (unsigned char)n;

	if (w->fd < 0 && capture_next_file(w) < 0)
		goto fail;
	size_t done = 0;
	while (done < sb.size) {
		ssize_t k = write(w->fd, sb.data + done, sb.size - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			int e = k < 0 ? errno : EIO;
			/* Cut the partial record off and keep the file: a full disk would
			 * otherwise leave one empty file per failed append. Only a file
			 * that cannot be cut is given up (the next append starts another). */
			if (done && ftruncate(w->fd, (off_t)w->size) < 0) {
				capture_werr(w, "writing '%s': %s; cannot cut the partial record off: %s",
					     w->file, strerror(e), strerror(errno));
				capture_close_file(w);
			} else {
				capture_werr(w, "writing '%s': %s", w->file, strerror(e));
			}
			errno = e;
			goto fail;
		}
		done += (size_t)k;
	}
	w->size += sb.size;
	if (w->size >= w->max_bytes)
		capture_close_file(w);
	rc = 0;
fail:
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

void capture_close(struct capture_writer **wp)
{
	if (!wp || !*wp)
		return;
	struct capture_writer *w = *wp;
	capture_close_file(w);
	free(w->file);
	free(w->dir);
	free(w);
	*wp = NULL;
}

/* --- reader --- */

struct capture_reader *capture_reader_open(const char *file)
{
	FILE *f = fopen(file, "rb");
	if (!f) {
		log_err("capture: cannot open '%s': %s", file, strerror(errno));
		return NULL;
	}
	struct capture_reader *r = xcalloc(1, sizeof(*r));
	r->file = xstrdup(file);
	r->f = f;
	return r;
}

static bool capture_key_is(const msgpack_object *k, const char *name)
{
	size_t n = strlen(name);
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
	       memcmp(k->via.str.ptr, name, n) == 0;
}

/* Fills rec from the record's map; why says what is wrong otherwise. */
static int capture_decode(const msgpack_object *root, struct capture_record *rec,
			  const char **why)
{
	const msgpack_object *v = NULL, *t = NULL, *p = NULL, *b = NULL;

	if (root->type != MSGPACK_OBJECT_MAP) {
		*why = "not a map";
		return -1;
	}
	for (uint32_t i = 0; i < root->via.map.size; i++) {
		const msgpack_object *k = &root->via.map.ptr[i].key;
		const msgpack_object *val = &root->via.map.ptr[i].val;
		if (capture_key_is(k, "v"))
			v = val;
		else if (capture_key_is(k, "t"))
			t = val;
		else if (capture_key_is(k, "p"))
			p = val;
		else if (capture_key_is(k, "b"))
			b = val;
	}
	if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 != CAPTURE_VERSION) {
		*why = "missing or unknown version \"v\"";
		return -1;
	}
	if (!t || t->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*why = "missing or malformed time \"t\"";
		return -1;
	}
	if (!p || p->type != MSGPACK_OBJECT_STR || p->via.str.size == 0 ||
	    memchr(p->via.str.ptr, '\0', p->via.str.size)) {
		*why = "missing or malformed path \"p\"";
		return -1;
	}
	/* bin by contract; a str body is accepted too, the bytes are the same. */
	if (!b || (b->type != MSGPACK_OBJECT_BIN && b->type != MSGPACK_OBJECT_STR)) {
		*why = "missing or malformed body \"b\"";
		return -1;
	}
	const char *bp = b->type == MSGPACK_OBJECT_BIN ? b->via.bin.ptr : b->via.str.ptr;
	size_t bn = b->type == MSGPACK_OBJECT_BIN ? b->via.bin.size : b->via.str.size;
	rec->t = t->via.u64;
	rec->path = xstrndup(p->via.str.ptr, p->via.str.size);
	rec->body = xmalloc(bn + 1);
	if (bn)
		memcpy(rec->body, bp, bn);
	rec->body[bn] = '\0';
	rec->len = bn;
	return 0;
}

/* Reads exactly n bytes: 1 when read, 0 at a clean end (nothing read), -2 cut short, -1 error. */
static int capture_read_exact(struct capture_reader *r, void *buf, size_t n)
{
	size_t got = fread(buf, 1, n, r->f);
	if (got == n)
		return 1;
	if (ferror(r->f))
		return -1;
	return got == 0 ? 0 : -2;
}

/* Decodes one record's bytes into rec: NULL, or why they are not a record. */
static const char *capture_parse(const char *buf, size_t n, struct capture_record *rec)
{
	msgpack_unpacked up;
	size_t off = 0;
	const char *why = NULL;

	if (mpscan_size((const unsigned char *)buf, n, CAPTURE_DEPTH_MAX) != n)
		return "not one well-formed msgpack object";
	msgpack_unpacked_init(&up);
	msgpack_unpack_return ur = msgpack_unpack_next(&up, buf, n, &off);
	if (ur != MSGPACK_UNPACK_SUCCESS || off != n)
		why = "msgpack did not decode";
	else
		capture_decode(&up.data, rec, &why); /* sets why when it fails */
	msgpack_unpacked_destroy(&up);
	return why;
}

/* A record cut short by the end of the file: what a crash mid-write leaves. */
static int capture_cut_short(const struct capture_reader *r)
{
	log_warn("capture: '%s': record at offset %llu cut short (a crash mid-write?): end of file",
		 r->file, (unsigned long long)r->off);
	return 0;
}

int capture_read(struct capture_reader *r, struct capture_record *rec)
{
	unsigned char hdr[4];
	char msg[96];
	const char *why = "read error";
	int err = EIO;

	memset(rec, 0, sizeof(*rec));
	if (r->broken) {
		errno = EBADMSG;
		return -1;
	}
	int rc = capture_read_exact(r, hdr, sizeof(hdr));
	if (rc == 0)
		return 0;
	if (rc == -2)
		return capture_cut_short(r);
	if (rc < 0)
		goto fail;
	size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
	/* Checked before anything is allocated for it. */
	if (n == 0 || n > CAPTURE_RECORD_MAX) {
		snprintf(msg, sizeof(msg), "claims %zu bytes (1..%d): damaged file", n,
			 CAPTURE_RECORD_MAX);
		why = msg;
		err = EFBIG;
		goto fail;
	}
	if (n > r->cap) {
		free(r->buf);
		r->buf = xmalloc(n);
		r->cap = n;
	}
	rc = capture_read_exact(r, r->buf, n);
	if (rc == 0 || rc == -2)
		return capture_cut_short(r);
	if (rc < 0)
		goto fail;
	if ((why = capture_parse(r->buf, n, rec)) != NULL) {
		err = EBADMSG;
		goto fail;
	}
	r->off += sizeof(hdr) + n;
	return 1;
fail:
	/* Nothing after a damaged record can be trusted to start on a boundary. */
	r->broken = true;
	log_err("capture: '%s': record at offset %llu: %s", r->file, (unsigned long long)r->off,
		why);
	errno = err;
	return -1;
}

void capture_reader_close(struct capture_reader **rp)
{
	if (!rp || !*rp)
		return;
	struct capture_reader *r = *rp;
	if (r->f)
		fclose(r->f);
	free(r->buf);
	free(r->file);
	free(r);
	*rp = NULL;
}

void capture_record_release(struct capture_record *rec)
{
	if (!rec)
		return;
	free(rec->path);
	free(rec->body);
	memset(rec, 0, sizeof(*rec));
}
