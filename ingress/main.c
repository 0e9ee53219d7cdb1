/*
 * baton-ingress — Twilio webhooks in, durable envelopes to the router.
 *
 * Parses options and config, then runs the HTTP server until a stop signal.
 */
#include "config.h"
#include "confcheck.h"
#include "proc.h"
#include "server.h"

int main(int argc, char **argv)
{
	struct config cfg;

	if (proc_start(&cfg, argc, argv, "baton-ingress", "ingress", CONF_INGRESS,
		       "Takes Twilio webhooks and operator commands on HTTP and hands them to the router."))
		return 0;
	int rc = server_run(&cfg, &proc_stop);
	config_release(&cfg);
	return rc == 0 ? 0 : 1;
}
