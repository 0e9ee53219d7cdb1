/*
 * metrics_merge — the other processes' metrics files and the merge of
 * exposition texts; see metrics_merge.h.
 *
 * Files: listed, sorted by name, filtered by the writer's pid (alive?) and
 * the file's mtime (fresh?), then read whole. The merge: one pass over
 * every line of every text, families in a hash by name plus a list in
 * order of first appearance, each family's samples appended to its own
 * buffer; the output is written at the end, family by family.
 */
#include "metrics_merge.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uthash.h>

#include "clock.h"
#include "xalloc.h"

/* --- files --- */

int metrics_merge_file_pid(const char *name, pid_t *pid)
{
	size_t n = strlen(name);
	if (n < 8 || name[0] == '.' || strcmp(name + n - 5, ".prom") != 0)
		return -1;
	size_t end = n - 5, i = end;
	while (i > 0 && isdigit((unsigned char)name[i - 1]))
		i--;
	if (i == end || i < 2 || name[i - 1] != '-' || end - i > 9)
		return -1;
	for (size_t k = 0; k + 1 < i; k++)
		if (!islower((unsigned char)name[k]) && !isdigit((unsigned char)name[k]) &&
		    name[k] != '-')
			return -1;
	long p = strtol(name + i, NULL, 10);
	if (p <= 0)
		return -1;
	*pid = (pid_t)p;
	return 0;
}

/* The whole file, NUL-terminated (malloc'd), or NULL: unreadable or too large. */
static char *metrics_merge_slurp(const char *path)
{
	size_t cap = 8192, n = 0, got;
	char *buf = NULL;
	FILE *f = fopen(path, "r");
	if (!f)
		goto fail;
	buf = xmalloc(cap);
	while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
		n += got;
		if (n > METRICS_MERGE_FILE_MAX)
			goto fail;
		if (cap - n - 1 == 0) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
fail:
	if (f)
		fclose(f);
	free(buf);
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t metrics_merge_read_dir(const char *dir, int interval_ms, pid_t self, char ***texts,
			      size_t *stale)
{
	char **names = NULL;
	size_t nnames = 0, cap = 0, out = 0;
	*texts = NULL;
	*stale = 0;
	if (interval_ms <= 0)
		return 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		pid_t pid;
		if (metrics_merge_file_pid(de->d_name, &pid) < 0 || pid == self)
			continue;
		if (nnames == cap) {
			cap = cap ? 2 * cap : 16;
			names = xrealloc(names, cap * sizeof(*names));
		}
		names[nnames++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (nnames)
		qsort(names, nnames, sizeof(*names), cmp_str);
	*texts = xcalloc(nnames + 1, sizeof(**texts));
	uint64_t now = clock_wall_ms(), window = (uint64_t)interval_ms * METRICS_MERGE_FRESH_INTERVALS;
	for (size_t i = 0; i < nnames; i++) {
		pid_t pid = 0;
		struct stat st;
		char *path = xasprintf("%s/%s", dir, names[i]);
		metrics_merge_file_pid(names[i], &pid);
		bool alive = kill(pid, 0) == 0 || errno == EPERM;
		if (stat(path, &st) == 0) {
			uint64_t mtime = (uint64_t)st.st_mtim.tv_sec * 1000u +
					 (uint64_t)st.st_mtim.tv_nsec / 1000000u;
			bool fresh = mtime + window >= now;
			char *text = alive && fresh ? metrics_merge_slurp(path) : NULL;
			if (text) {
				(*texts)[out++] = text;
			} else {
				(*stale)++;
				/* What a crashed process left behind goes once it is stale. */
				if (!alive && !fresh)
					unlink(path);
			}
		}
		free(path);
		free(names[i]);
	}
	free(names);
	return out;
}

/* --- the merge --- */

struct sbuf {
	char *p;
	size_t n, cap;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

struct mfam {
	char *name;
	char *help; /* the text after "# HELP name ", as written */
	char *type; /* NULL until declared */
	struct sbuf samples;
	struct mfam *next; /* order of first appearance */
	UT_hash_handle hh;
};

struct merge {
	struct mfam *by_name, *first, *last;
	/* Families whose TYPE in the current text disagrees: its samples are dropped. */
	char **dropped;
	size_t ndropped, capdropped;
};

static struct mfam *merge_find(struct merge *m, const char *name, size_t len)
{
	struct mfam *f = NULL;
	HASH_FIND(hh, m->by_name, name, len, f);
	return f;
}

static struct mfam *merge_get(struct merge *m, const char *name, size_t len)
{
	struct mfam *f = merge_find(m, name, len);
	if (f)
		return f;
	f = xcalloc(1, sizeof(*f));
	f->name = xstrndup(name, len);
	HASH_ADD_KEYPTR(hh, m->by_name, f->name, len, f);
	if (m->last)
		m->last->next = f;
	else
		m->first = f;
	m->last = f;
	return f;
}

static bool merge_is_dropped(const struct merge *m, const char *name)
{
	for (size_t i = 0; i < m->ndropped; i++)
		if (!strcmp(m->dropped[i], name))
			return true;
	return false;
}

static bool name_start(int c)
{
	return isalpha(c) || c == '_' || c == ':';
}

static bool name_char(int c)
{
	return isalnum(c) || c == '_' || c == ':';
}

static size_t metric_name_len(const char *s, size_t n)
{
	size_t i = 0;
	if (n == 0 || !name_start((unsigned char)s[0]))
		return 0;
	while (i < n && name_char((unsigned char)s[i]))
		i++;
	return i;
}

/* The metric types of the text format; a TYPE line with another is dropped. */
static bool merge_known_type(const char *t)
{
	static const char *const known[] = { "counter", "gauge", "histogram", "summary", "untyped" };
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(t, known[i]))
			return true;
	return false;
}

/* "# HELP name text" / "# TYPE name type". */
static void merge_comment(struct merge *m, const char *l, size_t n)
{
	bool help = n > 7 && !strncmp(l, "# HELP ", 7), type = n > 7 && !strncmp(l, "# TYPE ", 7);
	if (!help && !type)
		return; /* other comments are dropped */
	const char *name = l + 7;
	size_t nl = metric_name_len(name, n - 7);
	if (!nl || (7 + nl < n && name[nl] != ' '))
		return;
	const char *rest = 7 + nl < n ? name + nl + 1 : name + nl;
	size_t rl = (size_t)(l + n - rest);
	char key[256];
	if (nl >= sizeof(key))
		return;
	memcpy(key, name, nl);
	key[nl] = '\0';
	if (merge_is_dropped(m, key))
		return;
	if (type) {
		char t[16];
		if (rl == 0 || rl >= sizeof(t))
			return;
		memcpy(t, rest, rl);
		t[rl] = '\0';
		if (!merge_known_type(t))
			return;
		struct mfam *f = merge_get(m, name, nl);
		if (!f->type) {
			f->type = xstrdup(t);
		} else if (strcmp(f->type, t)) {
			if (m->ndropped == m->capdropped) {
				m->capdropped = m->capdropped ? 2 * m->capdropped : 8;
				m->dropped = xrealloc(m->dropped, m->capdropped * sizeof(*m->dropped));
			}
			m->dropped[m->ndropped++] = xstrdup(key);
		}
	} else {
		struct mfam *f = merge_get(m, name, nl);
		if (!f->help)
			f->help = xstrndup(rest, rl);
	}
}

/* The family a sample belongs to: its own name, or a histogram's or
 * summary's with the suffix taken off. */
static struct mfam *merge_sample_family(struct merge *m, const char *name, size_t nl)
{
	static const char *const sfx[] = { "_bucket", "_sum", "_count" };
	struct mfam *f = merge_find(m, name, nl);
	if (f && f->type)
		return f;
	for (size_t i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		size_t sl = strlen(sfx[i]);
		if (nl <= sl || memcmp(name + nl - sl, sfx[i], sl))
			continue;
		struct mfam *base = merge_find(m, name, nl - sl);
		if (base && base->type &&
		    (!strcmp(base->type, "histogram") ||
		     (i > 0 && !strcmp(base->type, "summary"))))
			return base;
	}
	return f ? f : merge_get(m, name, nl);
}

/* "value" or "value timestamp": a float (Inf and NaN spelled as Go and
 * Prometheus do) and an optional integer in milliseconds. */
static bool merge_value_ok(const char *v, size_t n)
{
	char buf[64], *end = NULL;
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, v, n);
	buf[n] = '\0';
	char *sp = strchr(buf, ' ');
	if (sp)
		*sp = '\0';
	if (strcmp(buf, "+Inf") && strcmp(buf, "-Inf") && strcmp(buf, "NaN")) {
		if (!isdigit((unsigned char)buf[0]) && buf[0] != '-' && buf[0] != '+' && buf[0] != '.')
			return false;
		strtod(buf, &end);
		if (*end)
			return false;
	}
	if (sp) {
		const char *t = sp + 1;
		if (*t == '-')
			t++;
		if (!*t)
			return false;
		for (; *t; t++)
			if (!isdigit((unsigned char)*t))
				return false;
	}
	return true;
}

/* A sample line: name, optional {labels} (quotes and escapes respected), a value. */
static void merge_sample(struct merge *m, const char *l, size_t n)
{
	size_t nl = metric_name_len(l, n), i = nl;
	if (!nl || nl >= 256)
		return;
	if (i < n && l[i] == '{') {
		bool quoted = false;
		for (i++; i < n; i++) {
			if (quoted && l[i] == '\\')
				i++;
			else if (l[i] == '"')
				quoted = !quoted;
			else if (!quoted && l[i] == '}')
				break;
		}
		if (i >= n)
			return;
		i++;
	}
	if (i >= n || l[i] != ' ' || !merge_value_ok(l + i + 1, n - i - 1))
		return;
	struct mfam *f = merge_sample_family(m, l, nl);
	if (merge_is_dropped(m, f->name))
		return;
	sbuf_add(&f->samples, l, n);
	sbuf_add(&f->samples, "\n", 1);
}

char *metrics_merge_texts(const char *const *texts, size_t n)
{
	struct merge m = { 0 };
	struct sbuf out = { 0 };

	for (size_t t = 0; t < n; t++) {
		const char *p = texts[t];
		if (!p)
			continue;
		while (*p) {
			const char *nl = strchr(p, '\n');
			size_t len = nl ? (size_t)(nl - p) : strlen(p);
			size_t l = len;
			if (l && p[l - 1] == '\r')
				l--;
			if (l && p[0] == '#')
				merge_comment(&m, p, l);
			else if (l)
				merge_sample(&m, p, l);
			p += len + (nl ? 1 : 0);
		}
		for (size_t i = 0; i < m.ndropped; i++)
			free(m.dropped[i]);
		m.ndropped = 0;
	}
	sbuf_add(&out, "", 0);
	for (struct mfam *f = m.first; f; f = f->next) {
		if (f->samples.n) {
			if (f->help) {
				sbuf_add(&out, "# HELP ", 7);
				sbuf_add(&out, f->name, strlen(f->name));
				sbuf_add(&out, " ", 1);
				sbuf_add(&out, f->help, strlen(f->help));
				sbuf_add(&out, "\n", 1);
			}
			const char *type = f->type ? f->type : "untyped";
			sbuf_add(&out, "# TYPE ", 7);
			sbuf_add(&out, f->name, strlen(f->name));
			sbuf_add(&out, " ", 1);
			sbuf_add(&out, type, strlen(type));
			sbuf_add(&out, "\n", 1);
			sbuf_add(&out, f->samples.p, f->samples.n);
		}
	}
	struct mfam *f, *tmp;
	HASH_ITER(hh, m.by_name, f, tmp) {
		HASH_DEL(m.by_name, f);
		free(f->name);
		free(f->help);
		free(f->type);
		free(f->samples.p);
		free(f);
	}
	free(m.dropped);
	return out.p;
}
