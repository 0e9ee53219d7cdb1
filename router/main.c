/*
 * baton-router — the single writer of state: routes messages, jobs and results.
 *
 * Parses options and config, installs the stop signals, runs the router loop.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "router.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

int main(int argc, char **argv)
{
	struct config cfg;
	enum log_level lvl = LOG_INFO;

	if (config_from_args(&cfg, argc, argv, "baton-router",
			     "Stores conversations in LMDB and dispatches AI and send jobs to workers.") == 1)
		return 0;
	log_level_parse(cfg.log_level, &lvl);
	log_init("router", lvl, cfg.log_mask_phone);

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = router_run(&cfg, &stop_flag);
	config_release(&cfg);
	return rc == 0 ? 0 : rc == -2 ? CONFIG_EXIT : 1;
}
