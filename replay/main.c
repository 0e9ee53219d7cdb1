/*
 * baton-replay — plays capture files back into baton, over HTTP through
 * ingress or straight into the router.
 *
 *   baton-replay [options] FILE|DIR...
 *
 * Parses the options, loads the settings the way every baton binary does
 * (built-in defaults, --config FILE or BATON_CONFIG, BATON_* variables),
 * runs replay/replay.c and prints the summary. Exit 0 when nothing
 * failed, 1 when something did (or a signal cut the replay short), 2 on
 * a usage or config error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "confcheck.h"
#include "log.h"
#include "replay.h"

#define REPLAY_EXIT_FAILED 1
#define REPLAY_CONCURRENCY_DEFAULT 64
#define REPLAY_CONCURRENCY_MAX 100000

static volatile sig_atomic_t replay_stop;

static void replay_on_signal(int sig)
{
	(void)sig;
	replay_stop = 1;
}

static int replay_usage(FILE *out)
{
	fprintf(out,
		"usage: baton-replay [options] FILE|DIR...\n"
		"Plays capture files (capture.dir of ingress) back into baton, records of all files\n"
		"merged in time order; a directory means its *.bcap files.\n"
		"  --to http|router     through ingress over HTTP (default; Twilio paths re-signed with\n"
		"                       twilio.auth_token over http.public_url, admin paths with\n"
		"                       admin.token), or straight to router.ingress_endpoint\n"
		"  --url BASE           ingress base URL (default http://<http.bind>:<http.port>)\n"
		"  --concurrency N      requests in flight (default %d)\n"
		"  --speed 1|N|max      original pace (default), N times faster, or as fast as possible\n"
		"  --progress           progress bar on stderr even when it is not a terminal\n"
		"  --json               the summary as one JSON object on stdout\n"
		"  --sent-log FILE      one line per request sent: <CLOCK_MONOTONIC ns> <MessageSid or ->\n"
		"  --config FILE        settings file (else BATON_CONFIG; BATON_* variables override)\n"
		"  --trust-files        replay files of another user, or writable by others (their\n"
		"                       records are re-signed with the real token: only for files\n"
		"                       you know)\n"
		"exit: 0 nothing failed, 1 something failed, 2 usage or config error\n",
		REPLAY_CONCURRENCY_DEFAULT);
	return out == stdout ? 0 : CONFIG_EXIT;
}

/*
 * Records are replayed with the real token and admin.token: a file another
 * user could have written is a way to forge a customer message or an
 * /admin/purge. Such files are refused unless the operator says so.
 */
static int replay_check_files(char *const *files, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (stat(files[i], &st) != 0) {
			fprintf(stderr, "baton-replay: '%s': %s\n", files[i], strerror(errno));
			return -1;
		}
		const char *why = st.st_uid != geteuid() ? "belongs to another user"
				  : (st.st_mode & 022) ? "is writable by other users" : NULL;
		if (why) {
			fprintf(stderr, "baton-replay: '%s' %s (uid %u, mode %04o): its records would be "
				"re-signed with the real token; refused (--trust-files to replay it "
				"anyway)\n", files[i], why, (unsigned)st.st_uid,
				(unsigned)(st.st_mode & 07777));
			return -1;
		}
	}
	return 0;
}

static int replay_parse_speed(const char *v, double *out)
{
	char *end;
	if (!strcmp(v, "max")) {
		*out = 0;
		return 0;
	}
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || !(d > 0) || d > 1e9)
		return -1;
	*out = d;
	return 0;
}

static int replay_parse_int(const char *v, long lo, long hi, int *out)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
		return -1;
	*out = (int)n;
	return 0;
}

int main(int argc, char **argv)
{
	struct replay_opts o = { .to = REPLAY_HTTP, .concurrency = REPLAY_CONCURRENCY_DEFAULT,
				 .speed = 1, .stop = &replay_stop };
	struct replay_summary sum;
	struct config cfg;
	const char *file = NULL, *sent_log = NULL;
	char **files = NULL, err[1024];
	size_t nfiles = 0, npaths = 0;
	bool json = false, progress = false, cfg_loaded = false, opts_done = false, trust = false;
	int rc = CONFIG_EXIT;

	/* Logging before the config is read: option errors are reported too. */
	log_init("baton-replay", LOG_WARN, true);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has = i + 1 < argc;
		if (opts_done || a[0] != '-') {
			/* An empty directory is fine (nothing captured yet); a missing path is not. */
			if (replay_add_path(a, &files, &nfiles) < 0)
				goto fail;
			npaths++;
		} else if (!strcmp(a, "--")) {
			opts_done = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			rc = replay_usage(stdout);
			goto fail;
		} else if (!strcmp(a, "--to") && has) {
			a = argv[++i];
			if (!strcmp(a, "http")) {
				o.to = REPLAY_HTTP;
			} else if (!strcmp(a, "router")) {
				o.to = REPLAY_ROUTER;
			} else {
				fprintf(stderr, "baton-replay: --to: '%s' is not http or router\n", a);
				goto fail;
			}
		} else if (!strcmp(a, "--url") && has) {
			o.url = argv[++i];
			if (strncmp(o.url, "http://", 7) && strncmp(o.url, "https://", 8)) {
				fprintf(stderr, "baton-replay: --url: '%s' is not an http(s) URL\n", o.url);
				goto fail;
			}
		} else if (!strcmp(a, "--concurrency") && has) {
			if (replay_parse_int(argv[++i], 1, REPLAY_CONCURRENCY_MAX, &o.concurrency) < 0) {
				fprintf(stderr, "baton-replay: --concurrency: '%s' is not 1..%d\n", argv[i],
					REPLAY_CONCURRENCY_MAX);
				goto fail;
			}
		} else if (!strcmp(a, "--speed") && has) {
			if (replay_parse_speed(argv[++i], &o.speed) < 0) {
				fprintf(stderr, "baton-replay: --speed: '%s' is not a positive number or max\n",
					argv[i]);
				goto fail;
			}
		} else if (!strcmp(a, "--progress")) {
			progress = true;
		} else if (!strcmp(a, "--trust-files")) {
			trust = true;
		} else if (!strcmp(a, "--json")) {
			json = true;
		} else if (!strcmp(a, "--sent-log") && has) {
			sent_log = argv[++i];
		} else if (!strcmp(a, "--config") && has) {
			file = argv[++i];
		} else {
			fprintf(stderr, "baton-replay: unknown option or missing value: '%s' (try --help)\n",
				a);
			goto fail;
		}
	}
	if (!npaths) {
		rc = replay_usage(stderr);
		goto fail;
	}
	if (!trust && replay_check_files(files, nfiles) < 0)
		goto fail;
	if (config_load(&cfg, file, err, sizeof(err)) < 0) {
		fprintf(stderr, "baton-replay: config error: %s\n", err);
		goto fail;
	}
	cfg_loaded = true;
	config_drop_secrets(&cfg, confcheck_secrets(CONF_REPLAY));
	/* Quieter than warn if asked; never per-record chatter at info/debug. */
	log_init("baton-replay", cfg.log_level < LOG_WARN ? LOG_WARN : cfg.log_level,
		 cfg.log_mask_phone);
	if (sent_log && !(o.sent_log = fopen(sent_log, "w"))) {
		fprintf(stderr, "baton-replay: --sent-log: cannot create '%s': %s\n", sent_log,
			strerror(errno));
		goto fail;
	}
	o.files = files;
	o.nfiles = nfiles;
	o.progress = progress || isatty(STDERR_FILENO);

	struct sigaction sa = { .sa_handler = replay_on_signal };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
		fprintf(stderr, "baton-replay: cannot install signal handlers: %s\n", strerror(errno));
		goto fail;
	}
	signal(SIGPIPE, SIG_IGN);

	if (replay_run(&cfg, &o, &sum) < 0) {
		rc = REPLAY_EXIT_FAILED;
		goto fail;
	}
	replay_print_summary(&sum, json, stdout);
	/* Cut short by a signal is not "nothing failed": records were left out. */
	rc = sum.failed || sum.damaged || sum.interrupted ? REPLAY_EXIT_FAILED : 0;
fail:
	if (o.sent_log) {
		/* Lines are written as requests go out and checked here, once. */
		if (ferror(o.sent_log) | fclose(o.sent_log)) {
			fprintf(stderr, "baton-replay: --sent-log: writing '%s' failed\n", sent_log);
			if (rc == 0)
				rc = REPLAY_EXIT_FAILED;
		}
	}
	if (fflush(stdout) != 0 && rc == 0)
		rc = REPLAY_EXIT_FAILED;
	if (cfg_loaded)
		config_release(&cfg);
	replay_free_paths(files, nfiles);
	return rc;
}
