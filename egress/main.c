/*
 * baton-egress — sends replies to customers through the Twilio Messages API.
 *
 * Parses options and config, then wires the shared worker loop to the
 * Twilio sender.
 */
#include "config.h"
#include "confcheck.h"
#include "log.h"
#include "proc.h"
#include "sender.h"
#include "worker.h"

int main(int argc, char **argv)
{
	struct config cfg;
	struct sender snd;
	int rc = 1;

	if (proc_start(&cfg, argc, argv, "baton-egress", "egress", CONF_EGRESS,
		       "Sends WhatsApp messages through the Twilio Messages API."))
		return 0;
	sender_init(&snd, &cfg);
	struct worker *w = worker_new(&cfg, "egress", cfg.egress_credit);
	if (w) {
		rc = worker_run(w, ENV_JOB_SEND, sender_job, &snd, &proc_stop) == 0 ? 0 : 1;
		log_info("sent %lu, retries %lu, failures %lu, found already sent %lu", snd.sent,
			 snd.retries, snd.failures, snd.reconciled);
		worker_destroy(&w);
	}
	sender_release(&snd);
	config_release(&cfg);
	return rc;
}
