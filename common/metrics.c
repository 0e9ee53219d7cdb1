/*
 * metrics — this process's registry, its text format and its file; see
 * metrics.h. Reading the other processes' files and merging them is
 * metrics_merge.c.
 *
 * Families are kept in registration order and found by their def's
 * address (a scan: a process has a few dozen). Series of a family are
 * found by their label values (a scan too, bounded by METRICS_SERIES_MAX).
 */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "xalloc.h"

#define METRICS_COLLECTORS_MAX 8
/* A failing file write is logged at most this often. */
#define METRICS_WARN_EVERY_MS 60000

static const double metrics_le[METRICS_NBUCKETS] = METRICS_BUCKETS_S;

struct series {
	char *v[2];
	double value;  /* counter, gauge */
	double staged; /* counter increments held back by metrics_stage_begin */
	bool in_stage; /* listed in M.stage */
	uint64_t bucket[METRICS_NBUCKETS + 1]; /* histogram, per bucket (not cumulative); last = +Inf */
	uint64_t count;
	double sum;
};

struct family {
	const struct metric_def *def;
	int nlabels;
	struct series *s;
	size_t n, cap;
};

struct collector {
	metrics_collect_fn *fn;
	void *arg;
};

/* A series with staged increments, by index: its family's array may move. */
struct staged_ref {
	size_t f, s;
};

static struct {
	struct family *f;
	size_t n, cap;
	bool staging;
	struct staged_ref *stage; /* series touched since metrics_stage_begin */
	size_t nstage, capstage;
	struct collector col[METRICS_COLLECTORS_MAX];
	size_t ncol;
	/* metrics_init */
	char *proc;
	char pid[24];
	char *dir, *path, *tmp;
	int interval_ms;
	uint64_t next_due;
	uint64_t next_warn;
	double start_time;
	bool atexit_done;
} M;

/* --- the registry --- */

static int def_nlabels(const struct metric_def *d)
{
	return d->labels[0] ? (d->labels[1] ? 2 : 1) : 0;
}

static void metrics_release_family(struct family *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->s[i].v[0]);
		free(f->s[i].v[1]);
	}
	free(f->s);
}

static struct series *family_series(struct family *f, const char *v1, const char *v2)
{
	const char *v[2] = { v1 ? v1 : "", v2 ? v2 : "" };
	for (size_t i = 0; i < f->n; i++) {
		struct series *s = &f->s[i];
		if ((f->nlabels < 1 || !strcmp(s->v[0], v[0])) &&
		    (f->nlabels < 2 || !strcmp(s->v[1], v[1])))
			return s;
	}
	if (f->n >= METRICS_SERIES_MAX - 1 && f->nlabels > 0) {
		/* Full: everything new goes to the one "other" series. */
		if (strcmp(v[0], "other") || (f->nlabels == 2 && strcmp(v[1], "other")))
			return family_series(f, "other", f->nlabels == 2 ? "other" : NULL);
		if (f->n >= METRICS_SERIES_MAX)
			return NULL; /* cannot happen: the slot is kept for it */
	}
	if (f->n == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 4;
		f->s = xrealloc(f->s, f->cap * sizeof(*f->s));
	}
	struct series *s = &f->s[f->n++];
	memset(s, 0, sizeof(*s));
	s->v[0] = xstrdup(f->nlabels >= 1 ? v[0] : "");
	s->v[1] = xstrdup(f->nlabels >= 2 ? v[1] : "");
	return s;
}

static void family_init_series(struct family *f)
{
	const char *const *a = f->def->init[0], *const *b = f->def->init[1];
	if (f->nlabels == 0) {
		family_series(f, NULL, NULL);
	} else if (f->nlabels == 1 && a) {
		for (size_t i = 0; a[i]; i++)
			family_series(f, a[i], NULL);
	} else if (f->nlabels == 2 && a && b) {
		for (size_t i = 0; a[i]; i++)
			for (size_t k = 0; b[k]; k++)
				family_series(f, a[i], b[k]);
	}
}

static struct family *metrics_family(const struct metric_def *d)
{
	for (size_t i = 0; i < M.n; i++)
		if (M.f[i].def == d)
			return &M.f[i];
	for (size_t i = 0; i < M.n; i++)
		if (!strcmp(M.f[i].def->name, d->name)) {
			/* Two defs of one name: the same family if they agree. */
			if (M.f[i].def->type == d->type && M.f[i].nlabels == def_nlabels(d))
				return &M.f[i];
			return NULL;
		}
	if (M.n == M.cap) {
		M.cap = M.cap ? 2 * M.cap : 32;
		M.f = xrealloc(M.f, M.cap * sizeof(*M.f));
	}
	struct family *f = &M.f[M.n++];
	memset(f, 0, sizeof(*f));
	f->def = d;
	f->nlabels = def_nlabels(d);
	family_init_series(f);
	return f;
}

void metrics_register(const struct metric_def *const *defs)
{
	for (size_t i = 0; defs[i]; i++)
		metrics_family(defs[i]);
}

static struct series *metrics_series(const struct metric_def *d, const char *v1, const char *v2)
{
	struct family *f = metrics_family(d);
	return f ? family_series(f, v1, v2) : NULL;
}

void metrics_add(const struct metric_def *d, const char *v1, const char *v2, double n)
{
	struct family *f = metrics_family(d);
	struct series *s = f ? family_series(f, v1, v2) : NULL;
	if (!s || d->type == METRIC_HISTOGRAM)
		return;
	if (!M.staging || d->type != METRIC_COUNTER) {
		s->value += n;
		return;
	}
	if (!s->in_stage) {
		if (M.nstage == M.capstage) {
			M.capstage = M.capstage ? 2 * M.capstage : 16;
			M.stage = xrealloc(M.stage, M.capstage * sizeof(*M.stage));
		}
		M.stage[M.nstage++] = (struct staged_ref){ (size_t)(f - M.f), (size_t)(s - f->s) };
		s->in_stage = true;
	}
	s->staged += n;
}

void metrics_inc(const struct metric_def *d, const char *v1, const char *v2)
{
	metrics_add(d, v1, v2, 1);
}

void metrics_set(const struct metric_def *d, const char *v1, const char *v2, double v)
{
	struct series *s = metrics_series(d, v1, v2);
	if (s && d->type != METRIC_HISTOGRAM)
		s->value = v;
}

void metrics_observe(const struct metric_def *d, const char *v1, const char *v2, double seconds)
{
	struct series *s = metrics_series(d, v1, v2);
	if (!s || d->type != METRIC_HISTOGRAM)
		return;
	size_t i = 0;
	while (i < METRICS_NBUCKETS && seconds > metrics_le[i])
		i++;
	s->bucket[i]++;
	s->count++;
	s->sum += seconds;
}

void metrics_set_lathist(const struct metric_def *d, const char *v1, const char *v2,
			 const struct lathist *h)
{
	struct series *s = metrics_series(d, v1, v2);
	if (!s || d->type != METRIC_HISTOGRAM)
		return;
	memset(s->bucket, 0, sizeof(s->bucket));
	/* A lathist bucket counts under the first le its largest value fits:
	 * one straddling an le lands in the next (never faster than it was). */
	size_t b = 0;
	for (unsigned i = 0; i < LATHIST_BUCKETS; i++) {
		if (!h->bucket[i])
			continue;
		if (i == LATHIST_BUCKETS - 1) {
			s->bucket[METRICS_NBUCKETS] += h->bucket[i];
			continue;
		}
		double up = (double)lathist_bucket_upper(i) / 1e6;
		while (b < METRICS_NBUCKETS && up > metrics_le[b])
			b++;
		s->bucket[b] += h->bucket[i];
	}
	s->count = h->count;
	s->sum = (double)h->sum_us / 1e6;
}

void metrics_stage_begin(void)
{
	M.staging = true;
}

void metrics_stage_end(bool keep)
{
	M.staging = false;
	/* Only the series touched while staging: this runs after every router batch. */
	for (size_t i = 0; i < M.nstage; i++) {
		struct series *s = &M.f[M.stage[i].f].s[M.stage[i].s];
		if (keep)
			s->value += s->staged;
		s->staged = 0;
		s->in_stage = false;
	}
	M.nstage = 0;
}

void metrics_collector_add(metrics_collect_fn *fn, void *arg)
{
	if (M.ncol < METRICS_COLLECTORS_MAX)
		M.col[M.ncol++] = (struct collector){ fn, arg };
}

void metrics_collector_remove(metrics_collect_fn *fn, void *arg)
{
	for (size_t i = 0; i < M.ncol; i++)
		if (M.col[i].fn == fn && M.col[i].arg == arg) {
			memmove(&M.col[i], &M.col[i + 1], (M.ncol - i - 1) * sizeof(M.col[0]));
			M.ncol--;
			return;
		}
}

void metrics_reset(void)
{
	for (size_t i = 0; i < M.n; i++)
		metrics_release_family(&M.f[i]);
	free(M.f);
	M.f = NULL;
	M.n = M.cap = 0;
	free(M.stage);
	M.stage = NULL;
	M.nstage = M.capstage = 0;
	M.ncol = 0;
	M.staging = false;
}

/* --- the text format --- */

/* The text format's escape for c, or NULL: backslash and newline always,
 * the double quote in label values only (not in HELP). */
static const char *escape_of(char c, bool quote_too)
{
	return c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '"' && quote_too ? "\\\"" : NULL;
}

char *metrics_escape_label(const char *v, char *out, size_t len)
{
	size_t o = 0;
	if (!len)
		return out;
	for (; *v && o + 1 < len; v++) {
		const char *rep = escape_of(*v, true);
		if (rep) {
			if (o + 2 >= len)
				break;
			out[o++] = rep[0];
			out[o++] = rep[1];
		} else {
			out[o++] = *v;
		}
	}
	out[o] = '\0';
	return out;
}

const char *metrics_label_in(const char *v, const char *const *allowed)
{
	for (size_t i = 0; v && allowed[i]; i++)
		if (!strcmp(v, allowed[i]))
			return allowed[i];
	return "other";
}

static void put_escaped(FILE *out, const char *v, bool quote_too)
{
	for (; *v; v++) {
		const char *rep = escape_of(*v, quote_too);
		if (rep)
			fputs(rep, out);
		else
			fputc(*v, out);
	}
}

static void put_value(FILE *out, double v)
{
	char b[40];
	if (isnan(v)) {
		fputs("NaN", out);
	} else if (isinf(v)) {
		fputs(v > 0 ? "+Inf" : "-Inf", out);
	} else if (v == floor(v) && fabs(v) < 1e15) {
		fprintf(out, "%.0f", v);
	} else {
		/* The shortest form that reads back as v. */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(b, sizeof(b), "%.*g", prec, v);
			if (strtod(b, NULL) == v)
				break;
		}
		fputs(b, out);
	}
}

/* One name="value" of a label set, opening it with '{' when first. */
static void put_label(FILE *out, bool *first, const char *name, const char *value)
{
	fprintf(out, "%s%s=\"", *first ? "{" : ",", name);
	put_escaped(out, value, true);
	fputc('"', out);
	*first = false;
}

/* {process="..",pid="..",l1="..",l2="..",le=".."}: the constant labels, the
 * series' and an optional le. Nothing at all when there is no label. */
static void put_labels(FILE *out, const struct family *f, const struct series *s, const char *le)
{
	bool first = true;
	if (M.proc) {
		put_label(out, &first, "process", M.proc);
		put_label(out, &first, "pid", M.pid);
	}
	for (int i = 0; i < f->nlabels; i++)
		put_label(out, &first, f->def->labels[i], s->v[i]);
	if (le)
		put_label(out, &first, "le", le);
	if (!first)
		fputc('}', out);
}

static void render_family(FILE *out, const struct family *f)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };
	const struct metric_def *d = f->def;
	if (!f->n)
		return; /* a family without series says nothing */
	fprintf(out, "# HELP %s ", d->name);
	put_escaped(out, d->help, false);
	fprintf(out, "\n# TYPE %s %s\n", d->name, types[d->type]);
	for (size_t i = 0; i < f->n; i++) {
		const struct series *s = &f->s[i];
		if (d->type != METRIC_HISTOGRAM) {
			fputs(d->name, out);
			put_labels(out, f, s, NULL);
			fputc(' ', out);
			put_value(out, s->value);
			fputc('\n', out);
			continue;
		}
		uint64_t cum = 0;
		for (size_t b = 0; b <= METRICS_NBUCKETS; b++) {
			char le[32];
			cum += s->bucket[b];
			if (b < METRICS_NBUCKETS)
				snprintf(le, sizeof(le), "%g", metrics_le[b]);
			else
				strcpy(le, "+Inf");
			fprintf(out, "%s_bucket", d->name);
			put_labels(out, f, s, le);
			fprintf(out, " %llu\n", (unsigned long long)cum);
		}
		fprintf(out, "%s_sum", d->name);
		put_labels(out, f, s, NULL);
		fputc(' ', out);
		put_value(out, s->sum);
		fprintf(out, "\n%s_count", d->name);
		put_labels(out, f, s, NULL);
		fprintf(out, " %llu\n", (unsigned long long)s->count);
	}
}

void metrics_render(FILE *out)
{
	for (size_t i = 0; i < M.ncol; i++)
		M.col[i].fn(M.col[i].arg);
	for (size_t i = 0; i < M.n; i++)
		render_family(out, &M.f[i]);
}

char *metrics_render_string(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return xstrdup("");
	metrics_render(f);
	if (fclose(f) != 0 || !buf) {
		free(buf);
		return xstrdup("");
	}
	return buf;
}

/* --- the process's own figures --- */

static const struct metric_def M_RSS = {
	"process_resident_memory_bytes", METRIC_GAUGE, "Resident memory size in bytes.", { 0 }, { 0 } };
static const struct metric_def M_VSZ = {
	"process_virtual_memory_bytes", METRIC_GAUGE, "Virtual memory size in bytes.", { 0 }, { 0 } };
static const struct metric_def M_CPU = {
	"process_cpu_seconds_total", METRIC_COUNTER, "Total user and system CPU time spent in seconds.",
	{ 0 }, { 0 } };
static const struct metric_def M_START = {
	"process_start_time_seconds", METRIC_GAUGE,
	"Start time of the process since unix epoch in seconds.", { 0 }, { 0 } };

static void metrics_collect_process(void *arg)
{
	(void)arg;
	long page = sysconf(_SC_PAGESIZE);
	unsigned long vsz = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lu %lu", &vsz, &rss) == 2 && page > 0) {
			metrics_set(&M_RSS, NULL, NULL, (double)rss * (double)page);
			metrics_set(&M_VSZ, NULL, NULL, (double)vsz * (double)page);
		}
		fclose(f);
	}
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		metrics_set(&M_CPU, NULL, NULL,
			    (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
				    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	metrics_set(&M_START, NULL, NULL, M.start_time);
}

/* --- files --- */

char *metrics_dir(const char *state_dir)
{
	return xasprintf("%s/metrics", state_dir);
}

static void metrics_mkdirs(void)
{
	char *slash = strrchr(M.dir, '/');
	if (slash) {
		*slash = '\0';
		if (*M.dir)
			mkdir(M.dir, 0700);
		*slash = '/';
	}
	mkdir(M.dir, 0700);
}

static int metrics_write_file(void)
{
	FILE *f = fopen(M.tmp, "w");
	if (!f && errno == ENOENT) {
		metrics_mkdirs();
		f = fopen(M.tmp, "w");
	}
	if (!f)
		return -1;
	metrics_render(f);
	bool bad = ferror(f) != 0;
	if (fclose(f) != 0 || bad || rename(M.tmp, M.path) != 0) {
		int e = errno;
		unlink(M.tmp);
		errno = e;
		return -1;
	}
	return 0;
}

int metrics_tick(void)
{
	if (!M.path)
		return -1;
	uint64_t now = clock_mono_ms();
	if (now >= M.next_due) {
		if (metrics_write_file() < 0 && now >= M.next_warn) {
			log_warn("metrics: cannot write %s: %s", M.path, strerror(errno));
			M.next_warn = now + METRICS_WARN_EVERY_MS;
		}
		M.next_due = now + (uint64_t)M.interval_ms;
	}
	return (int)(M.next_due - now);
}

static void metrics_atexit(void)
{
	if (M.path) {
		unlink(M.path);
		unlink(M.tmp);
	}
	metrics_reset();
	free(M.proc);
	free(M.dir);
	free(M.path);
	free(M.tmp);
	M.proc = M.dir = M.path = M.tmp = NULL;
}

void metrics_init(const char *proc, const struct config *cfg)
{
	free(M.proc);
	M.proc = xstrdup(proc);
	snprintf(M.pid, sizeof(M.pid), "%ld", (long)getpid());
	M.start_time = (double)clock_wall_ms() / 1000.0;
	static const struct metric_def *const process_defs[] = { &M_RSS, &M_VSZ, &M_CPU, &M_START,
								 NULL };
	metrics_register(process_defs);
	metrics_collector_add(metrics_collect_process, NULL);
	M.interval_ms = cfg->metrics_interval_ms;
	if (M.interval_ms > 0) {
		M.dir = metrics_dir(cfg->state_dir);
		M.path = xasprintf("%s/%s-%s.prom", M.dir, proc, M.pid);
		M.tmp = xasprintf("%s/.%s-%s.prom.tmp", M.dir, proc, M.pid);
		metrics_mkdirs();
		M.next_due = 0; /* the first turn of the loop writes it */
	}
	if (!M.atexit_done) {
		atexit(metrics_atexit);
		M.atexit_done = true;
	}
}

