/* confcheck — start-up validation of every role; see confcheck.h. */
#include "confcheck.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "hours.h"
#include "zmqx.h"

static int cc_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int cc_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int confcheck_sid(const char *s, const char *prefix)
{
	if (strlen(s) != 34 || strncmp(s, prefix, 2))
		return 0;
	for (const char *p = s + 2; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

/* 32 times the same digit: the AC000... of examples and the sandbox. */
static bool cc_placeholder(const char *sid)
{
	for (const char *p = sid + 2; *p; p++)
		if (*p != sid[2])
			return false;
	return true;
}

/* whatsapp:+ then 7 to 15 digits, the first not 0 (E.164). */
static bool cc_whatsapp(const char *a)
{
	if (strncmp(a, "whatsapp:+", 10))
		return false;
	size_t n = strlen(a + 10);
	if (n < 7 || n > 15 || a[10] == '0')
		return false;
	for (const char *p = a + 10; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

static int cc_sid(const struct config *cfg, const char *key, const char *v, const char *prefix,
		  bool required, char *err, size_t errlen)
{
	if (!v[0]) {
		if (!required)
			return 0;
		return cc_fail(err, errlen, "%s: not set (%s + 32 hex digits, from the Twilio console)",
			       key, prefix);
	}
	if (!confcheck_sid(v, prefix))
		return cc_fail(err, errlen, "%s: '%s' is not a %s SID (%s + 32 lowercase hex digits)",
			       key, v, prefix, prefix);
	if (!cfg->sandbox && cc_placeholder(v))
		return cc_fail(err, errlen, "%s: '%s' is a placeholder, not a real SID (outside "
			       "sandbox mode)", key, v);
	return 0;
}

/* A secret a process needs: set, and not the sandbox's (which is public). */
static int cc_secret(const struct config *cfg, const char *key, const char *v, char *err,
		     size_t errlen)
{
	if (!v[0])
		return cc_fail(err, errlen, "%s: not set (or %s_file, or a systemd credential named "
			       "%s)", key, key, key);
	const char *sb = config_sandbox_value(key);
	if (!cfg->sandbox && sb && !strcmp(v, sb))
		return cc_fail(err, errlen, "%s: the sandbox's value, which everybody knows; set "
			       "the real one (or sandbox = true for the fakes)", key);
	return 0;
}

/* scheme://host[:port] and nothing after: Twilio signs the whole URL. */
static int cc_public_url(const char *u, char *err, size_t errlen)
{
	const char *host = strstr(u, "://");
	if (!host || !host[3])
		return cc_fail(err, errlen, "http.public_url: '%s' is not scheme://host[:port]", u);
	if (strchr(host + 3, '/') || strchr(host + 3, '?') || strchr(host + 3, '#'))
		return cc_fail(err, errlen, "http.public_url: '%s' has a path; give scheme://host[:port] "
			       "only (baton adds /twilio/messages and the other paths)", u);
	return 0;
}

/* Capture files are replayed with the real token: nobody else may write them. */
static int cc_capture_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	if (stat(dir, &st) != 0)
		return errno == ENOENT ? 0 : cc_fail(err, errlen, "capture.dir: '%s': %s", dir,
						      strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return cc_fail(err, errlen, "capture.dir: '%s' is not a directory", dir);
	if (st.st_uid != geteuid())
		return cc_fail(err, errlen, "capture.dir: '%s' belongs to another user (uid %u): use a "
			       "directory of baton's own", dir, (unsigned)st.st_uid);
	if (st.st_mode & 022)
		return cc_fail(err, errlen, "capture.dir: '%s' is writable by other users (mode %04o): "
			       "a local user could plant records there; chmod 700 it", dir,
			       (unsigned)(st.st_mode & 07777));
	return 0;
}

static int cc_numbers(const struct config *cfg, unsigned roles, char *err, size_t errlen)
{
	const char *why = NULL;
	struct hours h;
	if (cfg->twilio_whatsapp_from[0] && !cc_whatsapp(cfg->twilio_whatsapp_from))
		return cc_fail(err, errlen, "twilio.whatsapp_from: '%s' is not whatsapp:+E164 "
			       "(whatsapp:+ then 7 to 15 digits)", cfg->twilio_whatsapp_from);
	if ((roles & CONF_ROUTER) && hours_parse(cfg->business_hours, &h, &why) < 0)
		return cc_fail(err, errlen, "business.hours: %s in '%s'", why, cfg->business_hours);
	for (size_t i = 0; i < cfg->nnumbers; i++) {
		const struct config_number *n = &cfg->numbers[i];
		if (!cc_whatsapp(n->address))
			return cc_fail(err, errlen, "[number %s]: not a WhatsApp address (whatsapp:+ then "
				       "7 to 15 digits)", n->address);
		if ((roles & CONF_ROUTER) && hours_parse(n->cfg.business_hours, &h, &why) < 0)
			return cc_fail(err, errlen, "[number %s] business.hours: %s in '%s'", n->address,
				       why, n->cfg.business_hours);
		if ((roles & CONF_FLEX) &&
		    cc_sid(cfg, "flex.workflow_sid", n->cfg.flex_workflow_sid, "WW", true, err,
			   errlen) < 0) {
			char inner[512];
			snprintf(inner, sizeof(inner), "%s", err);
			return cc_fail(err, errlen, "[number %s] %s", n->address, inner);
		}
		if ((roles & CONF_ROUTER) && n->cfg.whatsapp_template_sid[0] &&
		    cc_sid(cfg, "whatsapp.template_sid", n->cfg.whatsapp_template_sid, "HX", false, err,
			   errlen) < 0) {
			char inner[512];
			snprintf(inner, sizeof(inner), "%s", err);
			return cc_fail(err, errlen, "[number %s] %s", n->address, inner);
		}
	}
	return 0;
}

/* A Z85 CURVE key: 40 characters that decode to 32 bytes. */
static int cc_key(const char *key, const char *v, bool secret, char *err, size_t errlen)
{
	uint8_t bin[32];
	if (!v[0])
		return cc_fail(err, errlen, "%s: not set; the endpoints are tcp:// (make keys with "
			       "batonctl keygen, or use ipc:// on one host)", key);
	if (strlen(v) != 40 || !zmq_z85_decode(bin, v))
		return cc_fail(err, errlen, "%s: %s%s%s is not a 40-character Z85 key", key,
			       secret ? "" : "'", secret ? "the value" : v, secret ? "" : "'");
	return 0;
}

/* tcp:// endpoints: CURVE keys for the roles that use them, or plain tcp
 * on loopback only. */
static int cc_zmq(const struct config *cfg, unsigned roles, char *err, size_t errlen)
{
	const char *eps[2] = { cfg->router_ingress_endpoint, cfg->router_work_endpoint };
	unsigned users[2] = { CONF_INGRESS | CONF_REPLAY | CONF_CONSOLE,
			      CONF_AI | CONF_EGRESS | CONF_FLEX };
	for (int i = 0; i < 2; i++) {
		if (strncmp(eps[i], "tcp://", 6))
			continue;
		if (cfg->zmq_insecure_tcp) {
			if (!zmqx_loopback(eps[i]))
				return cc_fail(err, errlen, "zmq.insecure_tcp: allowed only on loopback, and "
					       "'%s' is not: give every process CURVE keys", eps[i]);
			continue;
		}
		if (!(roles & (users[i] | CONF_ROUTER)))
			continue;
		if (cc_key("zmq.server_public_key", cfg->zmq_server_public_key, false, err, errlen) < 0)
			return -1;
		if (roles & CONF_ROUTER) {
			if (cc_key("zmq.server_secret_key", cfg->zmq_server_secret_key, true, err, errlen) < 0)
				return -1;
			if (!cfg->zmq_allowed_keys[0])
				return cc_fail(err, errlen, "zmq.allowed_keys: empty, so no process could "
					       "connect to '%s'; list their public keys", eps[i]);
		}
		if ((roles & users[i]) &&
		    (cc_key("zmq.public_key", cfg->zmq_public_key, false, err, errlen) < 0 ||
		     cc_key("zmq.secret_key", cfg->zmq_secret_key, true, err, errlen) < 0))
			return -1;
	}
	return 0;
}

/* Twilio REST credentials: an API key (SK + secret) or the auth token. */
static int cc_rest_auth(const struct config *cfg, char *err, size_t errlen)
{
	if (cc_sid(cfg, "twilio.account_sid", cfg->twilio_account_sid, "AC", true, err, errlen) < 0 ||
	    cc_sid(cfg, "twilio.api_key_sid", cfg->twilio_api_key_sid, "SK", false, err, errlen) < 0)
		return -1;
	if (cfg->twilio_api_key_sid[0])
		return cc_secret(cfg, "twilio.api_key_secret", cfg->twilio_api_key_secret, err, errlen);
	if (cfg->twilio_api_key_secret[0])
		return cc_fail(err, errlen, "twilio.api_key_secret: set without twilio.api_key_sid");
	return cc_secret(cfg, "twilio.auth_token", cfg->twilio_auth_token, err, errlen);
}

/* Whatever the role: a SID that is set has its SID's shape. */
static int cc_shapes(const struct config *cfg, char *err, size_t errlen)
{
	static const struct {
		const char *key, *prefix;
		size_t off;
	} sids[] = {
		{ "twilio.account_sid", "AC", offsetof(struct config, twilio_account_sid) },
		{ "twilio.api_key_sid", "SK", offsetof(struct config, twilio_api_key_sid) },
		{ "flex.workspace_sid", "WS", offsetof(struct config, flex_workspace_sid) },
		{ "flex.workflow_sid", "WW", offsetof(struct config, flex_workflow_sid) },
		{ "whatsapp.template_sid", "HX", offsetof(struct config, whatsapp_template_sid) },
	};
	for (size_t i = 0; i < sizeof(sids) / sizeof(sids[0]); i++) {
		const char *v = *(char *const *)((const char *)cfg + sids[i].off);
		if (v[0] && !confcheck_sid(v, sids[i].prefix))
			return cc_fail(err, errlen, "%s: '%s' is not a %s SID (%s + 32 lowercase hex "
				       "digits)", sids[i].key, v, sids[i].prefix, sids[i].prefix);
	}
	return cc_public_url(cfg->public_url, err, errlen);
}

/* state.backend = postgres: a database to reach, its password kept out of the string. */
static int cc_postgres(const struct config *cfg, unsigned roles, char *err, size_t errlen)
{
	if (cfg->state_backend != CONFIG_BACKEND_POSTGRES ||
	    !(roles & (CONF_ROUTER | CONF_CTL | CONF_CONSOLE)))
		return 0;
	if (!cfg->postgres_dsn[0])
		return cc_fail(err, errlen, "postgres.dsn: not set, and state.backend is postgres");
	if (strstr(cfg->postgres_dsn, "password") || strchr(cfg->postgres_dsn, '@'))
		return cc_fail(err, errlen, "postgres.dsn: holds a password; give it as "
			       "postgres.password_file (or PGPASSFILE) so it never shows in a dump or a log");
	if (roles & CONF_ROUTER) {
		const char *eps[2][2] = { { "router.ingress_endpoint", cfg->router_ingress_endpoint },
					  { "router.work_endpoint", cfg->router_work_endpoint } };
		const char *binds[2] = { cfg->router_ingress_bind, cfg->router_work_bind };
		for (int i = 0; i < 2; i++)
			if (strchr(eps[i][1], ',') && !binds[i][0])
				return cc_fail(err, errlen, "%s lists several routers: set %s to the one this "
					       "router binds", eps[i][0], i ? "router.work_bind" : "router.ingress_bind");
	}
	return 0;
}

int confcheck(const struct config *cfg, unsigned roles, char *err, size_t errlen)
{
	if (cc_shapes(cfg, err, errlen) < 0 || cc_numbers(cfg, roles, err, errlen) < 0 ||
	    cc_zmq(cfg, roles, err, errlen) < 0 || cc_postgres(cfg, roles, err, errlen) < 0)
		return -1;
	if (roles & CONF_INGRESS) {
		if (cc_sid(cfg, "twilio.account_sid", cfg->twilio_account_sid, "AC", true, err,
			   errlen) < 0)
			return -1;
		if (!cfg->twilio_validate_signature && !cfg->sandbox)
			return cc_fail(err, errlen, "twilio.validate_signature: off outside sandbox mode: "
				       "anyone could post messages as any customer");
		if (cfg->twilio_validate_signature &&
		    cc_secret(cfg, "twilio.auth_token", cfg->twilio_auth_token, err, errlen) < 0)
			return -1;
		if (cc_sid(cfg, "flex.workspace_sid", cfg->flex_workspace_sid, "WS", false, err,
			   errlen) < 0)
			return -1;
		if (cfg->capture_dir[0] && cc_capture_dir(cfg->capture_dir, err, errlen) < 0)
			return -1;
	}
	if (roles & CONF_ROUTER) {
		if (cfg->whatsapp_template_sid[0] &&
		    cc_sid(cfg, "whatsapp.template_sid", cfg->whatsapp_template_sid, "HX", false, err,
			   errlen) < 0)
			return -1;
	}
	if (roles & CONF_AI) {
		/* A local OpenAI-compatible server (Ollama, llama.cpp) may need no key. */
		bool remote = !strncmp(cfg->llm_base_url, "https://", 8);
		if ((remote || cfg->llm_api_key[0]) &&
		    cc_secret(cfg, "llm.api_key", cfg->llm_api_key, err, errlen) < 0)
			return -1;
		/* Likewise a local transcription server (whisper.cpp). */
		if (cfg->transcribe_api_key[0] &&
		    cc_secret(cfg, "transcribe.api_key", cfg->transcribe_api_key, err, errlen) < 0)
			return -1;
	}
	/* Checked alone (baton-console itself): a console without a token has
	 * nothing to serve. Among all roles, no token just means no console. */
	if (roles == CONF_CONSOLE && !cfg->console_token[0])
		return cc_fail(err, errlen, "console.token: not set, so baton-console has nothing to "
			       "serve (set it, or do not start baton-console)");
	if ((roles & CONF_CONSOLE) && cfg->console_token[0] &&
	    cc_secret(cfg, "console.token", cfg->console_token, err, errlen) < 0)
		return -1;
	if ((roles & CONF_CONSOLE) && cfg->capture_dir[0] &&
	    cc_capture_dir(cfg->capture_dir, err, errlen) < 0)
		return -1;
	if ((roles & (CONF_EGRESS | CONF_FLEX)) && cc_rest_auth(cfg, err, errlen) < 0)
		return -1;
	if (roles & CONF_FLEX) {
		if (cc_sid(cfg, "flex.workspace_sid", cfg->flex_workspace_sid, "WS", true, err, errlen) < 0 ||
		    cc_sid(cfg, "flex.workflow_sid", cfg->flex_workflow_sid, "WW", true, err, errlen) < 0)
			return -1;
	}
	return 0;
}

const char *const *confcheck_secrets(unsigned roles)
{
	static const char *const ingress[] = { "twilio.auth_token", "admin.token", "metrics.token",
					       "zmq.secret_key", NULL };
	/* The console fetches customers' media from Twilio for the page. */
	static const char *const console[] = { "console.token", "console.password",
					       "twilio.auth_token", "twilio.api_key_secret",
					       "zmq.secret_key", "postgres.password", NULL };
	/* The ai-worker fetches customers' media from Twilio and transcribes voice notes. */
	static const char *const ai[] = { "llm.api_key", "twilio.auth_token", "twilio.api_key_secret",
					  "transcribe.api_key", "zmq.secret_key", NULL };
	static const char *const rest[] = { "twilio.auth_token", "twilio.api_key_secret",
					    "zmq.secret_key", NULL };
	static const char *const ctl[] = { "admin.token", "postgres.password", NULL };
	static const char *const replay[] = { "twilio.auth_token", "admin.token", "zmq.secret_key",
					      NULL };
	static const char *const router[] = { "zmq.server_secret_key", "postgres.password", NULL };
	switch (roles) {
	case CONF_INGRESS: return ingress;
	case CONF_AI: return ai;
	case CONF_EGRESS:
	case CONF_FLEX: return rest;
	case CONF_CTL: return ctl;
	case CONF_REPLAY: return replay;
	case CONF_ROUTER: return router;
	case CONF_CONSOLE: return console;
	default: return NULL; /* several roles: keep everything */
	}
}
