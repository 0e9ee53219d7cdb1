/*
 * baton-console — the operator console: a page and its JSON API over the
 * router's state (read-only), and hand-back/escalate sent to the router.
 *
 * Parses options and config, then serves until a stop signal.
 */
#include "config.h"
#include "confcheck.h"
#include "proc.h"
#include "web.h"

int main(int argc, char **argv)
{
	struct config cfg;

	if (proc_start(&cfg, argc, argv, "baton-console", "console", CONF_CONSOLE,
		       "Serves the operator console: conversations, the escalation queue, "
		       "transcripts, reports, hand-back and escalate."))
		return 0;
	int rc = web_run(&cfg, &proc_stop);
	config_release(&cfg);
	return rc == 0 ? 0 : 1;
}
