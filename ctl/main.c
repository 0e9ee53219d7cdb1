/*
 * batonctl — the operator's command line. Option parsing only: the
 * commands are in ctl.c and report.c (see ctl.h).
 *
 *   batonctl [--config FILE] conversations [--mode ai|human|escalating]
 *                                          [--since DURATION|ISO8601] [--limit N] [--json]
 *   batonctl [--config FILE] stats [--json]
 *   batonctl [--config FILE] show ADDRESS [--json]
 *   batonctl [--config FILE] export ADDRESS [--format json|text]
 *   batonctl [--config FILE] handback ADDRESS
 *   batonctl [--config FILE] escalate ADDRESS [--reason TEXT]
 *   batonctl [--config FILE] purge ADDRESS [--yes] [--reason TEXT]
 *   batonctl [COMMAND] --help
 *
 * conversations, stats, show and export read LMDB read-only (safe while
 * the router runs); handback, escalate and purge go through ingress's
 * /admin endpoints to the router, the only writer. ADDRESS is the
 * customer's (whatsapp:+E164), optionally "|" and the business number.
 * Options may come before or after the command. Exit codes: 0 done,
 * 1 failed, 2 usage or config error, 3 no such conversation (ctl.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "confcheck.h"
#include "ctl.h"
#include "log.h"

enum opt {
	O_JSON = 1 << 0,
	O_MODE = 1 << 1,
	O_SINCE = 1 << 2,
	O_LIMIT = 1 << 3,
	O_FORMAT = 1 << 4,
	O_YES = 1 << 5,
	O_REASON = 1 << 6,
};

struct cmd {
	const char *name;
	bool address;   /* takes ADDRESS */
	unsigned opts;  /* options it accepts (--config and --help: all) */
	const char *usage;
};

static const struct cmd cmds[] = {
	{ "conversations", false, O_JSON | O_MODE | O_SINCE | O_LIMIT,
	  "batonctl conversations [--mode ai|human|escalating] [--since DURATION|ISO8601] [--limit N] [--json]\n"
	  "  Conversations by last activity, newest first: customer (masked unless\n"
	  "  log.mask_phone=false), business, mode, last activity (UTC), customer turns,\n"
	  "  last Twilio error code, open Flex conversation (CH) and task (WT).\n"
	  "  --since 90s|30m|1h|2d|1w|1h30m, or 2026-05-01[THH:MM[:SS]][Z|+HH:MM]: last activity\n"
	  "  at or after it. --limit N: the N newest. --json: an array of objects.\n" },
	{ "stats", false, O_JSON,
	  "batonctl stats [--json]\n"
	  "  Conversations by mode and the escalation rate; escalations by trigger and\n"
	  "  reason and hand-backs by path (from the timelines); jobs queued by kind and\n"
	  "  the outbox backlog (send jobs); errors by Twilio code; history size; purges;\n"
	  "  LMDB file size and map usage.\n" },
	{ "show", true, O_JSON,
	  "batonctl show ADDRESS [--json]\n"
	  "  Mode, Flex SIDs, timeline and transcript of the conversation.\n" },
	{ "export", true, O_JSON | O_FORMAT,
	  "batonctl export ADDRESS [--format json|text]\n"
	  "  The whole conversation for an audit or an access request: the record, the\n"
	  "  transcript with roles (customer, ai, agent, system) and UTC times, turns still\n"
	  "  pending, and the timeline with each mode change and its reason. The address\n"
	  "  is printed in clear: this is the record itself. json (default; --json too) is\n"
	  "  one document, text is readable lines.\n" },
	{ "handback", true, 0,
	  "batonctl handback ADDRESS\n"
	  "  Hand the conversation back to the AI and close its Flex side (through the router).\n" },
	{ "escalate", true, O_REASON,
	  "batonctl escalate ADDRESS [--reason TEXT]\n"
	  "  Hand the conversation to a person (through the router).\n" },
	{ "purge", true, O_YES | O_REASON,
	  "batonctl purge ADDRESS [--yes] [--reason TEXT]\n"
	  "  Right to erasure, through the router in one transaction: history, pending\n"
	  "  turns, timeline, index entries, jobs and the record go; a conversation in\n"
	  "  human mode gets its Flex side closed first. An audit record keeps when, the\n"
	  "  masked address, the counts and --reason (your reference, e.g. a ticket).\n"
	  "  Refused (exit 1, try again) while a Flex handoff of it is still running.\n"
	  "  Without --yes it asks on a terminal, and refuses (exit 2) without one.\n"
	  "  Twilio's own copies (message logs, Flex conversations) are erased in Twilio.\n" },
	{ "keygen", false, O_JSON,
	  "batonctl keygen [--json]\n"
	  "  A new ZeroMQ CURVE key pair in Z85, for tcp:// endpoints: the router's goes in\n"
	  "  zmq.server_public_key (everyone) and zmq.server_secret_key (the router only);\n"
	  "  each other process gets a pair for zmq.public_key and zmq.secret_key, and its\n"
	  "  public key goes in the router's zmq.allowed_keys. Keep secret keys in files\n"
	  "  (mode 600) or systemd credentials.\n" },
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

#define CTL_SYSTEM_CONFIG "/etc/baton/baton.conf"
#define CTL_SYSTEM_STATE "/var/lib/baton"

static const char COMMON[] =
	"ADDRESS: the customer's number (whatsapp:+5511..., +5511... or 5511...), optionally\n"
	"  |the business number.\n"
	"--config FILE: settings file (else BATON_CONFIG, else /etc/baton/baton.conf when it\n"
	"  exists; BATON_* variables win). The state is state.dir's, else /var/lib/baton.\n"
	"exit: 0 done, 1 failed, 2 usage or config error, 3 no such conversation\n";

static int usage(FILE *out, const struct cmd *c)
{
	if (c && out == stdout) {
		fprintf(out, "usage: %s%s", c->usage, COMMON);
	} else if (c) {
		const char *nl = strchr(c->usage, '\n');
		fprintf(out, "usage: %.*s\n(batonctl %s --help for more)\n", (int)(nl - c->usage),
			c->usage, c->name);
	} else {
		fprintf(out, "usage: batonctl [--config FILE] COMMAND [ARGS] (COMMAND --help for more)\n");
		for (size_t i = 0; i < NCMDS; i++) {
			const char *nl = strchr(cmds[i].usage, '\n');
			fprintf(out, "  %.*s\n", (int)(nl - cmds[i].usage), cmds[i].usage);
		}
		fputs(COMMON, out);
	}
	return out == stdout ? CTL_OK : CTL_USAGE;
}

static int bad(const struct cmd *c, const char *fmt, const char *arg)
{
	fprintf(stderr, "batonctl: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return usage(stderr, c);
}

int main(int argc, char **argv)
{
	const char *file = NULL, *addr = NULL, *reason = NULL, *mode = NULL, *since = NULL;
	const char *limit = NULL, *format = NULL, *extra = NULL;
	const struct cmd *cmd = NULL;
	unsigned given = 0;
	bool json = false, yes = false, help = false;
	struct config cfg;
	char err[1024];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **val = NULL;
		unsigned o = 0;
		if (!strcmp(a, "--config"))
			val = &file;
		else if (!strcmp(a, "--reason"))
			val = &reason, o = O_REASON;
		else if (!strcmp(a, "--mode"))
			val = &mode, o = O_MODE;
		else if (!strcmp(a, "--since"))
			val = &since, o = O_SINCE;
		else if (!strcmp(a, "--limit"))
			val = &limit, o = O_LIMIT;
		else if (!strcmp(a, "--format"))
			val = &format, o = O_FORMAT;
		else if (!strcmp(a, "--json"))
			json = true, o = O_JSON;
		else if (!strcmp(a, "--yes") || !strcmp(a, "-y"))
			yes = true, o = O_YES;
		else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			help = true;
		else if (a[0] == '-' && a[1])
			return bad(cmd, "unknown option %s", a);
		else if (!cmd) {
			for (size_t c = 0; c < NCMDS; c++)
				if (!strcmp(a, cmds[c].name))
					cmd = &cmds[c];
			if (!cmd)
				return bad(NULL, "unknown command '%s'", a);
		} else if (cmd->address && !addr)
			addr = a;
		else if (!extra)
			extra = a;
		if (val) {
			if (i + 1 >= argc)
				return bad(cmd, "%s needs a value", a);
			*val = argv[++i];
		}
		given |= o;
	}
	if (help)
		return usage(stdout, cmd);
	if (!cmd)
		return usage(stderr, NULL);
	if (extra)
		return bad(cmd, "unexpected argument '%s'", extra);
	if (cmd->address && !addr)
		return bad(cmd, "%s needs an ADDRESS", cmd->name);
	if (given & ~cmd->opts) {
		static const char *const names[] = { "--json", "--mode", "--since", "--limit",
						     "--format", "--yes", "--reason" };
		for (unsigned b = 0; b < 7; b++)
			if (given & ~cmd->opts & (1u << b))
				return bad(cmd, "%s does not apply to this command", names[b]);
	}

	if (!strcmp(cmd->name, "keygen"))
		return ctl_keygen(json);

	struct ctl_list list = { .mode = -1, .json = json };
	if (mode) {
		if (!strcmp(mode, "ai"))
			list.mode = MODE_AI;
		else if (!strcmp(mode, "human"))
			list.mode = MODE_HUMAN;
		else if (!strcmp(mode, "escalating"))
			list.mode = MODE_ESCALATING;
		else
			return bad(cmd, "--mode is ai, human or escalating, not '%s'", mode);
	}
	if (since && ctl_parse_since(since, clock_wall_ms(), &list.since) < 0)
		return bad(cmd, "--since wants a duration (30m, 1h, 2d) or an ISO-8601 time, not '%s'",
			   since);
	if (limit) {
		char *end;
		list.limit = strtol(limit, &end, 10);
		if (*end || end == limit || list.limit <= 0)
			return bad(cmd, "--limit wants a positive number, not '%s'", limit);
	}
	bool export_json = true;
	if (format) {
		if (!strcmp(format, "text"))
			export_json = false;
		else if (strcmp(format, "json"))
			return bad(cmd, "--format is json or text, not '%s'", format);
		if (json && !export_json)
			return bad(cmd, "%s", "--json and --format text contradict each other");
	}

	/* Where a packaged baton keeps its settings, unless told otherwise. */
	if (!file && !getenv("BATON_CONFIG") && access(CTL_SYSTEM_CONFIG, R_OK) == 0)
		file = CTL_SYSTEM_CONFIG;
	if (config_load(&cfg, file, err, sizeof(err)) < 0) {
		fprintf(stderr, "batonctl: config error: %s\n", err);
		return CTL_USAGE;
	}
	/* The units' state directory when nothing else names one. */
	if (!getenv("BATON_STATE_DIR") && !strcmp(cfg.state_dir, "var") &&
	    access("var/data.mdb", F_OK) != 0 && access(CTL_SYSTEM_STATE "/data.mdb", F_OK) == 0) {
		free(cfg.state_dir);
		cfg.state_dir = strdup(CTL_SYSTEM_STATE);
	}
	config_drop_secrets(&cfg, confcheck_secrets(CONF_CTL));
	log_init("batonctl", LOG_WARN, cfg.log_mask_phone);
	log_plain(true);
	char *address = addr ? ctl_address(addr) : NULL;
	addr = address;
	int rc;
	if (!strcmp(cmd->name, "conversations"))
		rc = ctl_conversations(&cfg, &list);
	else if (!strcmp(cmd->name, "stats"))
		rc = ctl_stats(&cfg, json);
	else if (!strcmp(cmd->name, "show"))
		rc = ctl_show(&cfg, addr, json);
	else if (!strcmp(cmd->name, "export"))
		rc = ctl_export(&cfg, addr, export_json);
	else if (!strcmp(cmd->name, "purge"))
		rc = ctl_purge(&cfg, addr, reason, yes);
	else
		rc = ctl_admin(&cfg, cmd->name, addr, reason);
	free(address);
	config_release(&cfg);
	return rc;
}
