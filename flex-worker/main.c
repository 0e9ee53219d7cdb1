/*
 * baton-flex-worker — runs the Twilio Flex handoff pipeline and forwards
 * customer messages to the agent's conversation.
 *
 * Parses options and config, installs the stop signals, wires the shared
 * worker loop to the pipeline.
 */
#include <signal.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "pipeline.h"
#include "worker.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct flexwork fw;
	enum log_level lvl = LOG_INFO;

	if (config_from_args(&cfg, argc, argv, "baton-flex-worker",
			     "Hands conversations to Twilio Flex agents (Conversations + Interactions).") == 1)
		return 0;
	log_level_parse(cfg.log_level, &lvl);
	log_init("flex-worker", lvl, cfg.log_mask_phone);

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = 1;
	flexwork_init(&fw, &cfg);
	struct worker *w = worker_new(&cfg, "flex", cfg.flex_credit);
	if (w) {
		rc = worker_run(w, ENV_JOB_FLEX, flexwork_job, &fw, &stop_flag) == 0 ? 0 : 1;
		log_info("handoffs %lu, forwards %lu, retries %lu, failures %lu", fw.handoffs,
			 fw.forwards, fw.retries, fw.failures);
		worker_destroy(&w);
	}
	config_release(&cfg);
	return rc;
}
