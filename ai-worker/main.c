/*
 * baton-ai-worker — answers AI jobs with the configured LLM.
 *
 * Parses options and config, installs the stop signals, wires the
 * shared worker loop to the LLM job handler.
 */
#include <signal.h>
#include <stdlib.h>

#include "aiwork.h"
#include "config.h"
#include "log.h"
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
	struct aiwork ai;
	enum log_level lvl = LOG_INFO;

	if (config_from_args(&cfg, argc, argv, "baton-ai-worker",
			     "Calls the LLM (Anthropic or OpenAI-compatible) for AI jobs.") == 1)
		return 0;
	log_level_parse(cfg.log_level, &lvl);
	log_init("ai-worker", lvl, cfg.log_mask_phone);

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = 1;
	aiwork_init(&ai, &cfg);
	struct worker *w = worker_new(&cfg, "ai", cfg.ai_worker_credit);
	if (w) {
		rc = worker_run(w, ENV_JOB_AI, aiwork_job, &ai, &stop_flag) == 0 ? 0 : 1;
		log_info("LLM calls %lu, retries %lu, failures %lu", ai.calls, ai.retries, ai.failures);
		worker_destroy(&w);
	}
	config_release(&cfg);
	return rc;
}
