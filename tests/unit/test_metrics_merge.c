/*
 * test_metrics_merge — common/metrics_merge: the merge of several
 * processes' texts (one HELP/TYPE per family, histogram suffixes,
 * conflicting TYPEs, junk, real renders), the file names, and which files
 * of a directory are fresh (alive writer, recent mtime, bounded size).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "metrics_merge.h"

static const char *const modes[] = { "ai", "human", NULL };

static const struct metric_def C_MODE = { "t_mode_total", METRIC_COUNTER, "By mode.", { "mode" },
					  { modes } };
static const struct metric_def H_LAT = { "t_latency_seconds", METRIC_HISTOGRAM, "Latency.",
					 { NULL }, { NULL } };

static int reset(void **state)
{
	(void)state;
	metrics_reset();
	return 0;
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
	char *m = metrics_merge_texts(texts, 2);
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
	char *m = metrics_merge_texts(texts, 3);
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
	m = metrics_merge_texts(NULL, 0);
	assert_string_equal(m, "");
	free(m);
}

/* The merge of real renders parses back: every sample under a TYPE seen once. */
static void test_merge_of_renders(void **state)
{
	metrics_inc(&C_MODE, "ai", NULL);
	metrics_observe(&H_LAT, NULL, NULL, 0.02);
	char *one = metrics_render_string();
	char *two = metrics_render_string();
	const char *texts[] = { one, two };
	char *m = metrics_merge_texts(texts, 2);
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
	assert_int_equal(metrics_merge_file_pid("router-123.prom", &pid), 0);
	assert_int_equal(pid, 123);
	assert_int_equal(metrics_merge_file_pid("ai-worker-99.prom", &pid), 0);
	assert_int_equal(pid, 99);
	assert_int_equal(metrics_merge_file_pid(".router-123.prom.tmp", &pid), -1);
	assert_int_equal(metrics_merge_file_pid(".router-123.prom", &pid), -1);
	assert_int_equal(metrics_merge_file_pid("router-.prom", &pid), -1);
	assert_int_equal(metrics_merge_file_pid("-12.prom", &pid), -1);
	assert_int_equal(metrics_merge_file_pid("router-12.txt", &pid), -1);
	assert_int_equal(metrics_merge_file_pid("Router-12.prom", &pid), -1);
	assert_int_equal(metrics_merge_file_pid("router-0.prom", &pid), -1);
	assert_int_equal(metrics_merge_file_pid("router-12345678901.prom", &pid), -1);
	assert_int_equal(metrics_merge_file_pid("../x-1.prom", &pid), -1);
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
	size_t n = metrics_merge_read_dir(dir, 1000, self, &texts, &stale);
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

	/* The live file grown over the bound is no baton metrics file: left out, kept. */
	char *big = malloc(METRICS_MERGE_FILE_MAX + 2);
	assert_non_null(big);
	memset(big, '#', METRICS_MERGE_FILE_MAX + 1);
	big[METRICS_MERGE_FILE_MAX + 1] = '\0';
	write_file(dir, n_live, big, 0);
	free(big);
	n = metrics_merge_read_dir(dir, 1000, self, &texts, &stale);
	assert_int_equal(n, 0);
	assert_int_equal(stale, 3);
	assert_true(exists(dir, n_live));
	free(texts);

	/* Files off: nothing read. */
	n = metrics_merge_read_dir(dir, 0, self, &texts, &stale);
	assert_int_equal(n, 0);
	free(texts);
	n = metrics_merge_read_dir("/nonexistent/baton", 1000, self, &texts, &stale);
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

#define T(f) cmocka_unit_test_setup(f, reset)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_merge_groups_families),
		T(test_merge_conflicts_and_junk),
		T(test_merge_of_renders),
		T(test_file_names),
		T(test_read_dir_freshness),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
