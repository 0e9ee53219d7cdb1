/*
 * baton-router — the single writer of state: routes messages, jobs and results.
 *
 * Parses options and config, then runs the router loop until a stop signal.
 */
#include "config.h"
#include "confcheck.h"
#include "proc.h"
#include "router.h"

int main(int argc, char **argv)
{
	struct config cfg;

	if (proc_start(&cfg, argc, argv, "baton-router", "router", CONF_ROUTER,
		       "Stores conversations in LMDB and dispatches AI, send and Flex jobs to workers."))
		return 0;
	int rc = router_run(&cfg, &proc_stop);
	config_release(&cfg);
	return rc == 0 ? 0 : rc == -2 ? CONFIG_EXIT : 1;
}
