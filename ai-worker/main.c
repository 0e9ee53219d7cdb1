/*
 * baton-ai-worker — answers AI jobs with the configured LLM.
 *
 * Parses options and config, then wires the shared worker loop to the LLM
 * job handler.
 */
#include "aiwork.h"
#include "config.h"
#include "confcheck.h"
#include "log.h"
#include "proc.h"
#include "worker.h"

int main(int argc, char **argv)
{
	struct config cfg;
	struct aiwork ai;
	int rc = 1;

	if (proc_start(&cfg, argc, argv, "baton-ai-worker", "ai-worker", CONF_AI,
		       "Calls the LLM (Anthropic or OpenAI-compatible) for AI jobs."))
		return 0;
	aiwork_init(&ai, &cfg);
	struct worker *w = worker_new(&cfg, "ai", cfg.ai_worker_credit);
	if (w) {
		rc = worker_run(w, ENV_JOB_AI, aiwork_job, &ai, &proc_stop) == 0 ? 0 : 1;
		log_info("LLM calls %lu, retries %lu, failures %lu", ai.calls, ai.retries, ai.failures);
		worker_destroy(&w);
	}
	config_release(&cfg);
	return rc;
}
