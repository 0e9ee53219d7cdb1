/*
 * batonctl — the operator's command line.
 *
 *   batonctl [--config FILE] [--json] show ADDRESS
 *   batonctl [--config FILE] handback ADDRESS
 *   batonctl [--config FILE] escalate ADDRESS [--reason TEXT]
 *
 * ADDRESS is the customer's (whatsapp:+E164), optionally "|" and the
 * business number. Exit codes are in ctl.h.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "log.h"

static int usage(FILE *out)
{
	fprintf(out,
		"usage: batonctl [--config FILE] [--json] show ADDRESS\n"
		"       batonctl [--config FILE] handback ADDRESS\n"
		"       batonctl [--config FILE] escalate ADDRESS [--reason TEXT]\n"
		"ADDRESS: whatsapp:+E164 of the customer, optionally |whatsapp:+E164 of the business.\n"
		"exit: 0 done, 1 failed, 2 usage/config error, 3 no such conversation\n");
	return out == stdout ? CTL_OK : CTL_USAGE;
}

int main(int argc, char **argv)
{
	const char *file = NULL, *cmd = NULL, *addr = NULL, *reason = NULL;
	bool json = false;
	struct config cfg;
	char err[1024];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			file = argv[++i];
		else if (!strcmp(argv[i], "--reason") && i + 1 < argc)
			reason = argv[++i];
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return usage(stdout);
		else if (!cmd)
			cmd = argv[i];
		else if (!addr)
			addr = argv[i];
		else
			return usage(stderr);
	}
	if (!cmd || !addr)
		return usage(stderr);
	if (config_load(&cfg, file, err, sizeof(err)) < 0) {
		fprintf(stderr, "batonctl: config error: %s\n", err);
		return CTL_USAGE;
	}
	log_init("batonctl", LOG_WARN, cfg.log_mask_phone);
	int rc;
	if (!strcmp(cmd, "show"))
		rc = ctl_show(&cfg, addr, json);
	else if (!strcmp(cmd, "handback") || !strcmp(cmd, "escalate"))
		rc = ctl_admin(&cfg, cmd, addr, reason);
	else
		rc = usage(stderr);
	config_release(&cfg);
	return rc;
}
