/*
 * test_metrics — common/metrics and ingress/metrics_http's pure parts:
 * the text format (HELP/TYPE, label escaping, values), histograms
 * (cumulative buckets ending in +Inf == _count, lathist mapping), series at
 * 0 from registration, the bound on label sets, staged counters, the path
 * labels of ingress's requests, and the file a process writes. The merge of
 * several processes' files is test_metrics_merge.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
		T(test_http_paths),
		T(test_process_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
