/*
 * test_metrics — common/metrics and ingress/metrics_http's pure parts:
 * the text format (HELP/TYPE, label escaping, values), histograms
 * (cumulative buckets ending in +Inf == _count, lathist mapping), series at
 * 0 from registration, the bound on label sets, staged counters, the merge
 * of several processes' texts (one HELP/TYPE per family, histogram suffixes,
 * conflicting TYPEs, junk), the file names, which files of a directory are
 * fresh, and the file a process writes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "metrics.h"
#include "metrics_http.h"

static const char *const modes[] = { "ai", "human", NULL };
static const char *const kinds[] = { "a", "b", NULL };

static const struct metric_def C_PLAIN = { "t_plain_total", METRIC_COUNTER, "Plain.", { NULL },
					   { NULL } };
static const struct metric_def C_MODE = { "t_mode_total", METRIC_COUNTER,
					  "By mode.\nSecond line with a \\ backslash.", { "mode" },
					  { modes } };
static const struct metric_def C_TWO = { "t_two_total", METRIC_COUNTER, "Two labels.",
					 { "kind", "mode" }, { kinds, modes } };
static const struct metric_def C_FREE = { "t_free_total", METRIC_COUNTER, "Free text.",
					 { "what" }, { NULL } };
static const struct metric_def G_LEVEL = { "t_level", METRIC_GAUGE, "A gauge.", { "x" },
					   { NULL } };
static const struct metric_def H_LAT = { "t_latency_seconds", METRIC_HISTOGRAM, "Latency.",
					 { NULL }, { NULL } };

static int reset(void **state)
{
	(void)state;
	metrics_reset();
	return 0;
}

static char *render(void)
{
	return metrics_render_string();
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

static size_t count_sub(const char *text, const char *sub)
{
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, sub)); p += strlen(sub))
		n++;
	return n;
}

static void test_counter_help_type_and_escaping(void **state)
{
	metrics_inc(&C_PLAIN, NULL, NULL);
	metrics_add(&C_PLAIN, NULL, NULL, 2);
	metrics_inc(&C_MODE, "a\"b\\c\nd", NULL);
	char *t = render();
	assert_true(has_line(t, "# HELP t_plain_total Plain."));
	assert_true(has_line(t, "# TYPE t_plain_total counter"));
	assert_true(has_line(t, "t_plain_total 3"));
	/* HELP escapes backslash and newline (not quotes); label values all three. */
	assert_true(has_line(t, "# HELP t_mode_total By mode.\\nSecond line with a \\\\ backslash."));
	assert_true(has_line(t, "t_mode_total{mode=\"a\\\"b\\\\c\\nd\"} 1"));
	free(t);

	char buf[64];
	assert_string_equal(metrics_escape_label("x\"y\\z\n", buf, sizeof(buf)), "x\\\"y\\\\z\\n");
	assert_string_equal(metrics_escape_label("abcdef", buf, 4), "abc");
}

static void test_initial_series_are_zero(void **state)
{
	static const struct metric_def *const defs[] = { &C_MODE, &C_TWO, &C_PLAIN, NULL };
	metrics_register(defs);
	char *t = render();
	assert_true(has_line(t, "t_mode_total{mode=\"ai\"} 0"));
	assert_true(has_line(t, "t_mode_total{mode=\"human\"} 0"));
	assert_true(has_line(t, "t_two_total{kind=\"a\",mode=\"ai\"} 0"));
	assert_true(has_line(t, "t_two_total{kind=\"b\",mode=\"human\"} 0"));
	assert_int_equal(count_sub(t, "t_two_total{"), 4);
	assert_true(has_line(t, "t_plain_total 0"));
	free(t);
	/* A family without series (labels, nothing initial) prints nothing. */
	metrics_set(&G_LEVEL, "1", NULL, 0);
	metrics_reset();
	static const struct metric_def *const g[] = { &G_LEVEL, NULL };
	metrics_register(g);
	t = render();
	assert_string_equal(t, "");
	free(t);
}

static void test_gauge_and_values(void **state)
{
	metrics_set(&G_LEVEL, "half", NULL, 0.5);
	metrics_set(&G_LEVEL, "big", NULL, 1073741824.0);
	metrics_set(&G_LEVEL, "neg", NULL, -3);
	metrics_set(&G_LEVEL, "tenth", NULL, 0.1);
	metrics_set(&G_LEVEL, "half", NULL, 0.25); /* set replaces */
	char *t = render();
	assert_true(has_line(t, "# TYPE t_level gauge"));
	assert_true(has_line(t, "t_level{x=\"half\"} 0.25"));
	assert_true(has_line(t, "t_level{x=\"big\"} 1073741824"));
	assert_true(has_line(t, "t_level{x=\"neg\"} -3"));
	assert_true(has_line(t, "t_level{x=\"tenth\"} 0.1"));
	free(t);
}

static void test_histogram_cumulative(void **state)
{
	const double v[] = { 0.0005, 0.001, 0.002, 0.3, 7, 42 };
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		metrics_observe(&H_LAT, NULL, NULL, v[i]);
	char *t = render();
	assert_true(has_line(t, "# TYPE t_latency_seconds histogram"));
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"0.001\"} 2")); /* le is inclusive */
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"0.005\"} 3"));
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"0.25\"} 3"));
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"0.5\"} 4"));
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"10\"} 5"));
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"+Inf\"} 6"));
	assert_true(has_line(t, "t_latency_seconds_count 6"));
	assert_true(has_line(t, "t_latency_seconds_sum 49.3035"));
	assert_int_equal(count_sub(t, "t_latency_seconds_bucket{"), METRICS_NBUCKETS + 1);
	free(t);
	/* Observing a counter, or adding to a histogram, changes nothing. */
	metrics_observe(&C_PLAIN, NULL, NULL, 1);
	metrics_add(&H_LAT, NULL, NULL, 5);
	t = render();
	assert_true(has_line(t, "t_plain_total 0"));
	assert_true(has_line(t, "t_latency_seconds_count 6"));
	free(t);
}

static void test_lathist_mapping(void **state)
{
	struct lathist h = { 0 };
	lathist_record(&h, 10);        /* 10 us */
	lathist_record(&h, 900);       /* 0.9 ms */
	lathist_record(&h, 3000);      /* 3 ms */
	lathist_record(&h, 2000000);   /* 2 s */
	metrics_set_lathist(&H_LAT, NULL, NULL, &h);
	char *t = render();
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"0.001\"} 2"));
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"0.005\"} 3"));
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"1\"} 3"));
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"2.5\"} 4"));
	assert_true(has_line(t, "t_latency_seconds_bucket{le=\"+Inf\"} 4"));
	assert_true(has_line(t, "t_latency_seconds_count 4"));
	assert_true(has_line(t, "t_latency_seconds_sum 2.00391"));
	free(t);
	/* A copy, not an addition: setting again gives the same figures. */
	metrics_set_lathist(&H_LAT, NULL, NULL, &h);
	t = render();
	assert_true(has_line(t, "t_latency_seconds_count 4"));
	free(t);
}

static void test_label_sets_are_bounded(void **state)
{
	char v[32];
	for (int i = 0; i < 3 * METRICS_SERIES_MAX; i++) {
		snprintf(v, sizeof(v), "v%d", i);
		metrics_inc(&C_FREE, v, NULL);
	}
	char *t = render();
	assert_int_equal(count_sub(t, "t_free_total{"), METRICS_SERIES_MAX);
	char line[64];
	snprintf(line, sizeof(line), "t_free_total{what=\"other\"} %d",
		 3 * METRICS_SERIES_MAX - (METRICS_SERIES_MAX - 1));
	assert_true(has_line(t, line));
	free(t);
	static const char *const allowed[] = { "rule", "tag", NULL };
	assert_string_equal(metrics_label_in("tag", allowed), "tag");
	assert_string_equal(metrics_label_in("free text", allowed), "other");
	assert_string_equal(metrics_label_in(NULL, allowed), "other");
}

static void test_staged_counters(void **state)
{
	metrics_stage_begin();
	metrics_inc(&C_MODE, "ai", NULL);
	metrics_set(&G_LEVEL, "g", NULL, 7); /* gauges are not staged */
	char *t = render();
	assert_true(has_line(t, "t_mode_total{mode=\"ai\"} 0"));
	assert_true(has_line(t, "t_level{x=\"g\"} 7"));
	free(t);
	metrics_stage_end(false);
	metrics_stage_begin();
	metrics_inc(&C_MODE, "ai", NULL);
	metrics_inc(&C_MODE, "ai", NULL);
	metrics_stage_end(true);
	metrics_inc(&C_MODE, "ai", NULL); /* not staging: at once */
	t = render();
	assert_true(has_line(t, "t_mode_total{mode=\"ai\"} 3"));
	free(t);
	/* Several families and series staged at once, one created while staging. */
	metrics_stage_begin();
	metrics_inc(&C_MODE, "human", NULL);
	metrics_add(&C_TWO, "b", "ai", 2);
	metrics_inc(&C_FREE, "new", NULL);
	metrics_inc(&C_MODE, "human", NULL);
	metrics_stage_end(true);
	metrics_stage_begin();
	metrics_stage_end(true); /* nothing staged: nothing applied twice */
	t = render();
	assert_true(has_line(t, "t_mode_total{mode=\"ai\"} 3"));
	assert_true(has_line(t, "t_mode_total{mode=\"human\"} 2"));
	assert_true(has_line(t, "t_two_total{kind=\"b\",mode=\"ai\"} 2"));
	assert_true(has_line(t, "t_free_total{what=\"new\"} 1"));
	free(t);
}

static void test_merge_groups_families(void **state)
{
	const char *a = "# HELP up_total Things.\n# TYPE up_total counter\n"
			"up_total{process=\"ingress\",pid=\"1\"} 1\n"
			"# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n"
			"lat_seconds_bucket{process=\"ingress\",pid=\"1\",le=\"+Inf\"} 2\n"
			"lat_seconds_sum{process=\"ingress\",pid=\"1\"} 0.5\n"
			"lat_seconds_count{process=\"ingress\",pid=\"1\"} 2\n";
	const char *b = "# HELP up_total Other words.\n# TYPE up_total counter\n"
			"up_total{process=\"router\",pid=\"2\"} 5\n"
			"# TYPE lat_seconds histogram\n"
			"lat_seconds_bucket{process=\"router\",pid=\"2\",le=\"+Inf\"} 1\n"
			"lat_seconds_sum{process=\"router\",pid=\"2\"} 0.1\n"
			"lat_seconds_count{process=\"router\",pid=\"2\"} 1\n"
			"# TYPE only_b gauge\nonly_b 3"; /* no final newline */
	const char *texts[] = { a, b };
	char *m = metrics_merge(texts, 2);
	assert_int_equal(count_sub(m, "# TYPE up_total "), 1);
	assert_int_equal(count_sub(m, "# HELP up_total "), 1);
	assert_int_equal(count_sub(m, "# TYPE lat_seconds "), 1);
	assert_true(has_line(m, "# HELP up_total Things."));
	const char *want =
		"# HELP up_total Things.\n# TYPE up_total counter\n"
		"up_total{process=\"ingress\",pid=\"1\"} 1\n"
		"up_total{process=\"router\",pid=\"2\"} 5\n"
		"# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n"
		"lat_seconds_bucket{process=\"ingress\",pid=\"1\",le=\"+Inf\"} 2\n"
		"lat_seconds_sum{process=\"ingress\",pid=\"1\"} 0.5\n"
		"lat_seconds_count{process=\"ingress\",pid=\"1\"} 2\n"
		"lat_seconds_bucket{process=\"router\",pid=\"2\",le=\"+Inf\"} 1\n"
		"lat_seconds_sum{process=\"router\",pid=\"2\"} 0.1\n"
		"lat_seconds_count{process=\"router\",pid=\"2\"} 1\n"
		"# TYPE only_b gauge\nonly_b 3\n";
	assert_string_equal(m, want);
	free(m);
}

static void test_merge_conflicts_and_junk(void **state)
{
	const char *a = "# TYPE x counter\nx{a=\"1\"} 1\n";
	const char *b = "# TYPE x gauge\nx{a=\"2\"} 9\n"           /* conflicting TYPE: dropped */
			"# a plain comment\n\n"
			"stray_metric{q=\"} {\"} 4\n"              /* no TYPE: untyped */
			"bad name 1\n9starts_with_digit 1\n"      /* malformed: dropped */
			"x_total{unterminated=\"1} 2\n"
			"# TYPE x_count counter\nx_count 1\r\n";   /* not a histogram suffix here */
	const char *texts[] = { a, NULL, b };
	char *m = metrics_merge(texts, 3);
	assert_true(has_line(m, "# TYPE x counter"));
	assert_true(has_line(m, "x{a=\"1\"} 1"));
	assert_null(strstr(m, "x{a=\"2\"}"));
	assert_null(strstr(m, "# TYPE x gauge"));
	assert_null(strstr(m, "plain comment"));
	assert_true(has_line(m, "# TYPE stray_metric untyped"));
	assert_true(has_line(m, "stray_metric{q=\"} {\"} 4"));
	assert_null(strstr(m, "bad name"));
	assert_null(strstr(m, "9starts"));
	assert_null(strstr(m, "unterminated"));
	assert_true(has_line(m, "# TYPE x_count counter"));
	assert_true(has_line(m, "x_count 1"));
	free(m);
	m = metrics_merge(NULL, 0);
	assert_string_equal(m, "");
	free(m);
}

/* The merge of real renders parses back: every sample under a TYPE seen once. */
static void test_merge_of_renders(void **state)
{
	metrics_inc(&C_MODE, "ai", NULL);
	metrics_observe(&H_LAT, NULL, NULL, 0.02);
	char *one = render();
	char *two = render();
	const char *texts[] = { one, two };
	char *m = metrics_merge(texts, 2);
	assert_int_equal(count_sub(m, "# TYPE t_mode_total counter"), 1);
	assert_int_equal(count_sub(m, "# TYPE t_latency_seconds histogram"), 1);
	assert_int_equal(count_sub(m, "t_latency_seconds_count 1\n"), 2);
	free(one);
	free(two);
	free(m);
}

static void test_file_names(void **state)
{
	pid_t pid = 0;
	assert_int_equal(metrics_file_pid("router-123.prom", &pid), 0);
	assert_int_equal(pid, 123);
	assert_int_equal(metrics_file_pid("ai-worker-99.prom", &pid), 0);
	assert_int_equal(pid, 99);
	assert_int_equal(metrics_file_pid(".router-123.prom.tmp", &pid), -1);
	assert_int_equal(metrics_file_pid(".router-123.prom", &pid), -1);
	assert_int_equal(metrics_file_pid("router-.prom", &pid), -1);
	assert_int_equal(metrics_file_pid("-12.prom", &pid), -1);
	assert_int_equal(metrics_file_pid("router-12.txt", &pid), -1);
	assert_int_equal(metrics_file_pid("Router-12.prom", &pid), -1);
	assert_int_equal(metrics_file_pid("router-0.prom", &pid), -1);
	assert_int_equal(metrics_file_pid("router-12345678901.prom", &pid), -1);
	assert_int_equal(metrics_file_pid("../x-1.prom", &pid), -1);
}

static void test_http_paths(void **state)
{
	assert_string_equal(metrics_http_path("/twilio/messages"), "/twilio/messages");
	assert_string_equal(metrics_http_path("/metrics"), "/metrics");
	/* The console is baton-console's: ingress does not serve it. */
	assert_string_equal(metrics_http_path("/console"), "other");
	assert_string_equal(metrics_http_path("/console/api/conversations"), "other");
	assert_string_equal(metrics_http_path("/wp-login.php"), "other");
	assert_true(metrics_http_owns("/metrics"));
	assert_false(metrics_http_owns("/metrics/"));
}

static void write_file(const char *dir, const char *name, const char *text, time_t age_s)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	if (age_s) {
		struct timeval tv[2];
		gettimeofday(&tv[0], NULL);
		tv[0].tv_sec -= age_s;
		tv[1] = tv[0];
		assert_int_equal(utimes(path, tv), 0);
	}
}

static bool exists(const char *dir, const char *name)
{
	char path[512];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

static void test_read_dir_freshness(void **state)
{
	char dir[] = "/tmp/baton-test-metrics-XXXXXX";
	assert_non_null(mkdtemp(dir));
	/* A pid that surely is gone: a child that exited and was reaped. */
	pid_t dead = fork();
	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	pid_t live = getppid(), self = getpid();
	char n_live[64], n_old[64], n_dead_old[64], n_dead_new[64], n_self[64];
	snprintf(n_live, sizeof(n_live), "router-%d.prom", (int)live);
	snprintf(n_old, sizeof(n_old), "egress-%d.prom", (int)live);
	snprintf(n_dead_old, sizeof(n_dead_old), "flex-worker-%d.prom", (int)dead);
	snprintf(n_dead_new, sizeof(n_dead_new), "ai-worker-%d.prom", (int)dead);
	snprintf(n_self, sizeof(n_self), "ingress-%d.prom", (int)self);
	write_file(dir, n_live, "live 1\n", 0);
	write_file(dir, n_old, "old 1\n", 60);         /* 60 s > 3 x 1 s */
	write_file(dir, n_dead_old, "deadold 1\n", 60);
	write_file(dir, n_dead_new, "deadnew 1\n", 0);
	write_file(dir, n_self, "self 1\n", 0);
	write_file(dir, ".router-1.prom.tmp", "tmp 1\n", 0);
	write_file(dir, "notes.txt", "x\n", 0);

	char **texts = NULL;
	size_t stale = 0;
	size_t n = metrics_read_dir(dir, 1000, self, &texts, &stale);
	assert_int_equal(n, 1);
	assert_string_equal(texts[0], "live 1\n");
	assert_int_equal(stale, 3);
	/* A dead process's stale file is removed; a live one's or a fresh one is kept. */
	assert_false(exists(dir, n_dead_old));
	assert_true(exists(dir, n_dead_new));
	assert_true(exists(dir, n_old));
	for (size_t i = 0; i < n; i++)
		free(texts[i]);
	free(texts);

	/* Files off: nothing read. */
	n = metrics_read_dir(dir, 0, self, &texts, &stale);
	assert_int_equal(n, 0);
	free(texts);
	n = metrics_read_dir("/nonexistent/baton", 1000, self, &texts, &stale);
	assert_int_equal(n, 0);
	free(texts);

	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' || strlen(de->d_name) > 2) {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		}
	closedir(d);
	rmdir(dir);
}

/* Last: metrics_init sets the process's constant labels for good. */
static void test_process_file(void **state)
{
	char dir[] = "/tmp/baton-test-metrics-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct config cfg = { 0 };
	cfg.state_dir = dir;
	cfg.metrics_interval_ms = 1000;
	metrics_init("ai-worker", &cfg);
	metrics_inc(&C_MODE, "ai", NULL);
	int next = metrics_tick(); /* the first tick writes at once */
	assert_true(next > 0 && next <= 1000);
	char path[512];
	snprintf(path, sizeof(path), "%s/metrics/ai-worker-%d.prom", dir, (int)getpid());
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	char line[128];
	snprintf(line, sizeof(line), "t_mode_total{process=\"ai-worker\",pid=\"%d\",mode=\"ai\"} 1",
		 (int)getpid());
	assert_true(has_line(buf, line));
	assert_non_null(strstr(buf, "# TYPE process_resident_memory_bytes gauge"));
	assert_non_null(strstr(buf, "# TYPE process_start_time_seconds gauge"));
	snprintf(line, sizeof(line), "process_resident_memory_bytes{process=\"ai-worker\",pid=\"%d\"} ",
		 (int)getpid());
	const char *rss = strstr(buf, line);
	assert_non_null(rss);
	assert_true(strtod(rss + strlen(line), NULL) > 0);
	/* Not due again yet: nothing written (the tick says how long to wait). */
	unlink(path);
	assert_true(metrics_tick() > 0);
	assert_null(fopen(path, "r"));
	snprintf(path, sizeof(path), "%s/metrics", dir);
	rmdir(path);
	rmdir(dir);
}

#define T(f) cmocka_unit_test_setup(f, reset)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_counter_help_type_and_escaping),
		T(test_initial_series_are_zero),
		T(test_gauge_and_values),
		T(test_histogram_cumulative),
		T(test_lathist_mapping),
		T(test_label_sets_are_bounded),
		T(test_staged_counters),
		T(test_merge_groups_families),
		T(test_merge_conflicts_and_junk),
		T(test_merge_of_renders),
		T(test_file_names),
		T(test_http_paths),
		T(test_read_dir_freshness),
		T(test_process_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
