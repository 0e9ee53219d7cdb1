/*
 * web — baton-console's HTTP server and routing; see web.h. Here: the
 * fixed answers, credentials, the page's files, POST bodies, and the loop
 * that waits for a stop signal while libmicrohttpd's threads serve.
 */
#include "web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api.h"
#include "assets.h"
#include "auth.h"
#include "command.h"
#include "envelope.h"
#include "log.h"
#include "mediaproxy.h"
#include "reader.h"
#include "reply.h"
#include "xalloc.h"

#define WEB_PREFIX "/console"
#define WEB_API WEB_PREFIX "/api/"
#define WEB_REALM "baton console"
#define WEB_CONNECTIONS 64
#define WEB_PER_IP 16
#define WEB_TIMEOUT_S 30
/* Commands are a few hundred bytes of JSON. */
#define WEB_BODY_MAX 4096

struct web {
	const struct config *cfg;
	struct reader *rd;
	struct command *cmd;
	struct mediaproxy *mp;
	struct MHD_Daemon *mhd;
	struct MHD_Response **assets; /* one per console_assets entry */
	size_t nassets;
	struct MHD_Response *r_404, *r_405_get, *r_405_post, *r_401_bearer, *r_401_any, *r_415,
		*r_413, *r_ok;
};

/* A command's body, gathered over MHD's calls. */
struct web_post {
	const char *op;
	char buf[WEB_BODY_MAX];
	size_t len;
	bool too_big;
};

static void web_make_responses(struct web *w)
{
	for (w->nassets = 0; console_assets[w->nassets].name; w->nassets++)
		;
	w->assets = xcalloc(w->nassets ? w->nassets : 1, sizeof(*w->assets));
	for (size_t i = 0; i < w->nassets; i++) {
		const struct console_asset *a = &console_assets[i];
		struct MHD_Response *r = MHD_create_response_from_buffer(
			a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
		/* Revalidated every time: a new console serves its own page at once. */
		MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
		reply_secure(r);
		w->assets[i] = r;
	}
	w->r_404 = reply_fixed("{\"error\":\"not found\"}\n");
	w->r_405_get = reply_fixed("{\"error\":\"method not allowed\"}\n");
	MHD_add_response_header(w->r_405_get, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	w->r_405_post = reply_fixed("{\"error\":\"method not allowed\"}\n");
	MHD_add_response_header(w->r_405_post, MHD_HTTP_HEADER_ALLOW, "POST");
	w->r_401_bearer = reply_fixed("{\"error\":\"unauthorized\"}\n");
	MHD_add_response_header(w->r_401_bearer, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
				"Bearer realm=\"" WEB_REALM "\"");
	w->r_401_any = reply_fixed("{\"error\":\"unauthorized\"}\n");
	MHD_add_response_header(w->r_401_any, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
				"Bearer realm=\"" WEB_REALM "\"");
	MHD_add_response_header(w->r_401_any, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
				"Basic realm=\"" WEB_REALM "\", charset=\"UTF-8\"");
	w->r_415 = reply_fixed("{\"error\":\"expected Content-Type: application/json\"}\n");
	w->r_413 = reply_fixed("{\"error\":\"body too large\"}\n");
	w->r_ok = reply_fixed("{\"ok\":true}\n");
}

static void web_free_responses(struct web *w)
{
	for (size_t i = 0; i < w->nassets; i++)
		MHD_destroy_response(w->assets[i]);
	free(w->assets);
	struct MHD_Response *all[] = { w->r_404, w->r_405_get, w->r_405_post, w->r_401_bearer,
				       w->r_401_any, w->r_415, w->r_413, w->r_ok };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i])
			MHD_destroy_response(all[i]);
}

/* Whether the request carries the console's credentials; *bearer when it tried a token. */
static bool web_authorized(const struct web *w, struct MHD_Connection *c, bool *bearer)
{
	const struct config *cfg = w->cfg;
	*bearer = auth_scheme(c, "Bearer");
	if (*bearer)
		return auth_bearer(c, cfg->console_token);
	return auth_scheme(c, "Basic") && cfg->console_user[0] && cfg->console_password[0] &&
	       auth_basic(c, cfg->console_user, cfg->console_password);
}

static struct MHD_Response *web_asset(const struct web *w, const char *name)
{
	for (size_t i = 0; i < w->nassets; i++)
		if (!strcmp(console_assets[i].name, name))
			return w->assets[i];
	return NULL;
}

static bool web_is_json(struct MHD_Connection *c)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!ct || strncasecmp(ct, "application/json", 16) != 0)
		return false;
	return ct[16] == '\0' || ct[16] == ';' || ct[16] == ' ';
}

/* The page: static, holds no data, needs no credentials. */
static enum MHD_Result web_page(struct web *w, struct MHD_Connection *c, const char *rest,
				bool get)
{
	struct MHD_Response *r = web_asset(w, *rest && strcmp(rest, "/") ? rest + 1 : "index.html");
	if (!r)
		return MHD_queue_response(c, 404, w->r_404);
	return get ? MHD_queue_response(c, 200, r) : MHD_queue_response(c, 405, w->r_405_get);
}

/* A command's body has arrived whole: hand it to the router and answer. */
static enum MHD_Result web_command(struct web *w, struct MHD_Connection *c, struct web_post *p)
{
	if (p->too_big)
		return MHD_queue_response(c, 413, w->r_413);
	const char *why = NULL;
	log_info("console: operator %s", p->op);
	int status = command_run(w->cmd, p->op, p->buf, p->len, &why);
	if (status == 200)
		return MHD_queue_response(c, 200, w->r_ok);
	if (status != 404)
		log_warn("console: %s not done: %s", p->op, why ? why : "unknown reason");
	return reply_error(c, (unsigned)status, why ? why : "failed");
}

static enum MHD_Result web_handle(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct web *w = cls;
	(void)version;
	if (*con_cls) {
		/* The rest of a command's body, then its end. */
		struct web_post *p = *con_cls;
		if (*upload_size) {
			if (p->len + *upload_size > sizeof(p->buf) - 1)
				p->too_big = true;
			else
				memcpy(p->buf + p->len, upload, *upload_size);
			p->len += p->too_big ? 0 : *upload_size;
			*upload_size = 0;
			return MHD_YES;
		}
		p->buf[p->len] = '\0';
		return web_command(w, c, p);
	}

	bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
	bool post = !strcmp(method, "POST");
	if (!strcmp(url, "/healthz"))
		return get ? MHD_queue_response(c, 200, w->r_ok) : MHD_queue_response(c, 405, w->r_405_get);
	size_t n = strlen(WEB_PREFIX);
	if (strncmp(url, WEB_PREFIX, n) || (url[n] && url[n] != '/'))
		return MHD_queue_response(c, 404, w->r_404);
	const char *rest = url + n;
	if (strncmp(url, WEB_API, strlen(WEB_API)) != 0)
		return strchr(*rest ? rest + 1 : rest, '/') ? MHD_queue_response(c, 404, w->r_404)
							    : web_page(w, c, rest, get);

	const char *api = url + strlen(WEB_API), *op = NULL, *media = NULL;
	enum MHD_Result (*read)(const struct config *, struct reader *, struct MHD_Connection *) = NULL;
	if (!strncmp(api, "conversations/", 14))
		media = api + 14;
	else if (!strcmp(api, "conversations"))
		read = api_conversations;
	else if (!strcmp(api, "conversation"))
		read = api_conversation;
	else if (!strcmp(api, "reports"))
		read = api_reports;
	else if (!strcmp(api, "handback"))
		op = EV_ADMIN_HANDBACK;
	else if (!strcmp(api, "escalate"))
		op = EV_ADMIN_ESCALATE;
	else
		return MHD_queue_response(c, 404, w->r_404);
	if ((read || media) && !get)
		return MHD_queue_response(c, 405, w->r_405_get);
	if (op && !post)
		return MHD_queue_response(c, 405, w->r_405_post);

	bool bearer;
	if (!web_authorized(w, c, &bearer)) {
		log_warn("console: rejected %s %s: bad or missing credentials", method, url);
		/* Offer basic auth only when it is on and no token was tried: a
		 * page whose token is wrong must not get the browser's dialog. */
		bool basic = w->cfg->console_user[0] && !bearer;
		return MHD_queue_response(c, 401, basic ? w->r_401_any : w->r_401_bearer);
	}
	if (read)
		return read(w->cfg, w->rd, c);
	if (media)
		return api_media(w->cfg, w->rd, w->mp, c, media);
	if (!web_is_json(c))
		return MHD_queue_response(c, 415, w->r_415);
	struct web_post *p = xcalloc(1, sizeof(*p));
	p->op = op;
	*con_cls = p;
	return MHD_YES;
}

static void web_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			  enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	free(*con_cls);
	*con_cls = NULL;
}

static int web_start(struct web *w)
{
	const struct config *cfg = w->cfg;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->console_port) };
	if (inet_pton(AF_INET, cfg->console_bind, &sa.sin_addr) != 1)
		return log_err("console.bind: '%s' is not an IPv4 address", cfg->console_bind);
	w->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
					  MHD_USE_ERROR_LOG,
				  0, NULL, NULL, web_handle, w,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)WEB_TIMEOUT_S,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned int)WEB_CONNECTIONS,
				  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)WEB_PER_IP,
				  MHD_OPTION_NOTIFY_COMPLETED, web_completed, w,
				  MHD_OPTION_END);
	if (!w->mhd)
		return log_err("cannot start the console's HTTP server on %s:%d: %s",
			       cfg->console_bind, cfg->console_port, strerror(errno));
	return 0;
}

int web_run(const struct config *cfg, volatile sig_atomic_t *stop)
{
	struct web w = { .cfg = cfg };
	int rc = -1;

	web_make_responses(&w);
	w.rd = reader_new(cfg);
	if (!(w.cmd = command_new(cfg)) || !(w.mp = mediaproxy_new()) || web_start(&w) < 0)
		goto fail;
	const union MHD_DaemonInfo *pi = MHD_get_daemon_info(w.mhd, MHD_DAEMON_INFO_BIND_PORT);
	if (!pi) {
		log_err("cannot read the console's port");
		goto fail;
	}
	log_notice("ready: console on http://%s:%u/console (%s), state in %s, router %s",
		   cfg->console_bind, (unsigned)pi->port,
		   cfg->console_user[0] ? "bearer token or basic auth" : "bearer token",
		   cfg->state_dir, cfg->router_ingress_endpoint);
	/* libmicrohttpd's threads serve; this one only waits for the signal. */
	while (!*stop)
		usleep(100 * 1000);
	log_notice("stopping");
	rc = 0;
fail:
	/* The media thread first: a request thread waiting for a download is
	 * answered at once, and the server's threads can then end. */
	mediaproxy_stop(w.mp);
	if (w.mhd)
		MHD_stop_daemon(w.mhd);
	mediaproxy_free(w.mp);
	command_free(w.cmd);
	reader_free(w.rd);
	web_free_responses(&w);
	return rc;
}
