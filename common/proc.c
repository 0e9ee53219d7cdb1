/* proc — process start-up shared by every baton binary; see proc.h. */
#include "proc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "confcheck.h"
#include "log.h"
#include "metrics.h"

volatile sig_atomic_t proc_stop;

static void proc_on_signal(int sig)
{
	(void)sig;
	proc_stop = 1;
}

long proc_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			rl.rlim_cur = was;
	}
	return rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur;
}

int proc_start(struct config *cfg, int argc, char **argv, const char *prog,
	       const char *log_name, unsigned roles, const char *usage)
{
	char err[1024];

	if (config_from_args(cfg, argc, argv, prog, roles, usage) == 1)
		return 1;
	if (confcheck(cfg, roles, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: config error: %s\n", prog, err);
		config_release(cfg);
		exit(CONFIG_EXIT);
	}
	const char *const *keep = confcheck_secrets(roles);
	if (keep)
		config_drop_secrets(cfg, keep);
	/* A core dump would carry the secrets this process kept. */
	if (!cfg->debug_core_dumps)
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	log_init(log_name, cfg->log_level, cfg->log_mask_phone);
	metrics_init(log_name, cfg);
	long nofile = proc_raise_nofile();
	log_info("open files limit %ld", nofile);
	if (cfg->sandbox)
		log_warn("SANDBOX MODE: unset URLs, SIDs and secrets are the sandbox's (loopback fakes, "
			 "public placeholder values); never use this with real customers");

	struct sigaction sa = { .sa_handler = proc_on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}
