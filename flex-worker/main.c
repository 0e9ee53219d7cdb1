/*
 * baton-flex-worker — runs the Twilio Flex handoff pipeline, forwards
 * customer messages to the agent's conversation, closes the Flex side on
 * hand-back.
 *
 * Parses options and config, then wires the shared worker loop to the
 * pipeline.
 */
#include "config.h"
#include "confcheck.h"
#include "log.h"
#include "pipeline.h"
#include "proc.h"
#include "worker.h"

int main(int argc, char **argv)
{
	struct config cfg;
	struct flexwork fw;
	int rc = 1;

	if (proc_start(&cfg, argc, argv, "baton-flex-worker", "flex-worker", CONF_FLEX,
		       "Hands conversations to Twilio Flex agents (Conversations + Interactions)."))
		return 0;
	flexwork_init(&fw, &cfg);
	struct worker *w = worker_new(&cfg, "flex", cfg.flex_credit);
	if (w) {
		rc = worker_run(w, ENV_JOB_FLEX, flexwork_job, &fw, &proc_stop) == 0 ? 0 : 1;
		log_info("handoffs %lu, forwards %lu, retries %lu, failures %lu", fw.handoffs,
			 fw.forwards, fw.retries, fw.failures);
		worker_destroy(&w);
	}
	config_release(&cfg);
	return rc;
}
