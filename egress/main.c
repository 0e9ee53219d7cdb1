/*
 * baton-egress — sends replies to customers through the Twilio Messages API.
 *
 * Parses options and config, installs the stop signals, wires the
 * shared worker loop to the Twilio sender.
 */
#include <signal.h>
#include <stdlib.h>

#include "sender.h"
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
	struct sender snd;
	enum log_level lvl = LOG_INFO;

	if (config_from_args(&cfg, argc, argv, "baton-egress",
			     "Sends WhatsApp messages through the Twilio Messages API.") == 1)
		return 0;
	log_level_parse(cfg.log_level, &lvl);
	log_init("egress", lvl, cfg.log_mask_phone);

	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = 1;
	sender_init(&snd, &cfg);
	struct worker *w = worker_new(&cfg, "egress", cfg.egress_credit);
	if (w) {
		rc = worker_run(w, ENV_JOB_SEND, sender_job, &snd, &stop_flag) == 0 ? 0 : 1;
		log_info("sent %lu, retries %lu, failures %lu", snd.sent, snd.retries, snd.failures);
		worker_destroy(&w);
	}
	sender_release(&snd);
	config_release(&cfg);
	return rc;
}
