/*
 * baton-ingress — Twilio webhooks in, durable envelopes to the router.
 *
 * Parses options and config, installs the stop signals, runs the server.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "server.h"

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

	if (config_from_args(&cfg, argc, argv, "baton-ingress",
			     "Takes Twilio webhooks on HTTP and hands them to the router.") == 1)
		return 0;
	log_level_parse(cfg.log_level, &lvl);
	log_init("ingress", lvl, cfg.log_mask_phone);

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = server_run(&cfg, &stop_flag);
	config_release(&cfg);
	return rc == 0 ? 0 : 1;
}
