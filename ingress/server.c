/*
 * server — libmicrohttpd in the zmq_poll loop; see server.h.
 *
 * A request lives in a struct request (MHD's con_cls) from its first
 * header to its completion. While it waits for the router it is also in
 * a hash by request id (to match the ACK) and a list in deadline order
 * (to answer 503 on time): the ack timeout is the same for all, so
 * insertion order is deadline order.
 */
#include "server.h"

#include <errno.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uthash.h>
#include <utlist.h>
#include <zmq.h>

#include "auth.h"
#include "capture.h"
#include "clock.h"
#include "envelope.h"
#include "events.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "proc.h"
#include "slow.h"
#include "webhook.h"
#include "xalloc.h"
#include "zmqx.h"

#define PATH_HEALTH "/healthz"
/* Most connections served at once; past this MHD refuses new ones. It is
 * also kept this far below the open-files limit, so running out of
 * descriptors never stops the loop (ZeroMQ, LMDB, logs need some). */
#define SERVER_CONN_LIMIT 4096
#define SERVER_FD_RESERVE 128
/* Per-connection memory (headers included): a header block larger than
 * this gets 431 from MHD itself. */
#define SERVER_CONN_MEMORY (16 * 1024)

enum req_state { REQ_READING, REQ_WAITING, REQ_ANSWER };

enum route_kind { RT_MESSAGES, RT_CONVERSATIONS, RT_TASKROUTER, RT_STATUS, RT_ADMIN };

/* Every POST endpoint: Twilio webhooks are signed forms, admin is bearer + JSON. */
struct route {
	const char *path;
	enum route_kind kind;
	const char *admin_op; /* RT_ADMIN */
};

static const struct route routes[] = {
	{ "/twilio/messages", RT_MESSAGES, NULL },
	{ "/twilio/conversations", RT_CONVERSATIONS, NULL },
	{ "/twilio/taskrouter", RT_TASKROUTER, NULL },
	{ "/twilio/status", RT_STATUS, NULL },
	{ "/admin/handback", RT_ADMIN, EV_ADMIN_HANDBACK },
	{ "/admin/escalate", RT_ADMIN, EV_ADMIN_ESCALATE },
	{ "/admin/purge", RT_ADMIN, EV_ADMIN_PURGE },
};

struct request {
	const struct route *route;
	struct MHD_Connection *conn;
	char *body;
	size_t len;
	bool too_big;
	enum req_state state;
	int status; /* set when REQ_ANSWER */
	uint64_t rid;
	uint64_t deadline;
	uint64_t arrived; /* wall ms when the body was complete, for the capture */
	char *sid; /* for log lines */
	UT_hash_handle hh;
	struct request *prev, *next; /* waiting list, deadline order */
};

struct server {
	const struct config *cfg;
	struct MHD_Daemon *mhd;
	void *zctx;
	void *router;
	struct request *waiting_by_rid;
	struct request *waiting; /* utlist DL, oldest first */
	uint64_t next_rid;
	struct capture_writer *capture; /* NULL unless capture.dir is set */
	unsigned long capture_failed;   /* accepted webhooks the capture lost */
	const char **numbers;           /* our WhatsApp numbers: a message's To is one */
	size_t nnumbers;
	struct slow *slow;              /* request-head deadlines */
	bool stopping;                  /* the loop is over: answer, never suspend */
	uint64_t cut_slow;              /* connections cut for a late head */
	uint64_t next_slow_log;         /* mono ms */
	struct MHD_Response *r_twiml, *r_health, *r_404, *r_405_post, *r_405_get,
		*r_400, *r_403, *r_413, *r_415, *r_503, *r_200, *r_204_json, *r_ok_json,
		*r_401, *r_no_conv;
};

static const char TWIML_EMPTY[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

static struct MHD_Response *server_text(const char *text, const char *ctype)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
								 MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	return r;
}

static void server_make_responses(struct server *s)
{
	s->r_twiml = server_text(TWIML_EMPTY, "text/xml");
	s->r_health = server_text("{\"status\":\"ok\"}\n", "application/json");
	s->r_404 = server_text("not found\n", "text/plain");
	s->r_405_post = server_text("method not allowed\n", "text/plain");
	MHD_add_response_header(s->r_405_post, MHD_HTTP_HEADER_ALLOW, "POST");
	s->r_405_get = server_text("method not allowed\n", "text/plain");
	MHD_add_response_header(s->r_405_get, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	s->r_400 = server_text("bad request\n", "text/plain");
	s->r_403 = server_text("forbidden\n", "text/plain");
	s->r_413 = server_text("payload too large\n", "text/plain");
	s->r_415 = server_text("unsupported media type\n", "text/plain");
	s->r_503 = server_text("service unavailable\n", "text/plain");
	s->r_200 = server_text("", "text/plain");
	/* TaskRouter wants 204 with this content type, within 15 s. */
	s->r_204_json = server_text("", "application/json");
	s->r_ok_json = server_text("{\"ok\":true}\n", "application/json");
	s->r_401 = server_text("{\"error\":\"unauthorized\"}\n", "application/json");
	MHD_add_response_header(s->r_401, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	s->r_no_conv = server_text("{\"error\":\"no such conversation\"}\n", "application/json");
}

static void server_free_responses(struct server *s)
{
	struct MHD_Response **all[] = { &s->r_twiml, &s->r_health, &s->r_404, &s->r_405_post,
					&s->r_405_get, &s->r_400, &s->r_403, &s->r_413,
					&s->r_415, &s->r_503, &s->r_200, &s->r_204_json,
					&s->r_ok_json, &s->r_401, &s->r_no_conv };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (*all[i]) {
			MHD_destroy_response(*all[i]);
			*all[i] = NULL;
		}
}

/* The success answer each endpoint owes its caller. */
static enum MHD_Result server_success(struct server *s, struct MHD_Connection *c,
				      const struct route *rt)
{
	switch (rt->kind) {
	case RT_MESSAGES: return MHD_queue_response(c, 200, s->r_twiml);
	case RT_TASKROUTER: return MHD_queue_response(c, 204, s->r_204_json);
	case RT_ADMIN: return MHD_queue_response(c, 200, s->r_ok_json);
	default: return MHD_queue_response(c, 200, s->r_200);
	}
}

static enum MHD_Result server_reply(struct server *s, struct MHD_Connection *c, int status)
{
	struct MHD_Response *r;
	switch (status) {
	case 200: r = s->r_twiml; break;
	case 401: r = s->r_401; break;
	case 404: r = s->r_no_conv; break;
	case 400: r = s->r_400; break;
	case 403: r = s->r_403; break;
	case 413: r = s->r_413; break;
	case 415: r = s->r_415; break;
	default: r = s->r_503; status = 503; break;
	}
	return MHD_queue_response(c, (unsigned)status, r);
}

static void request_free(struct request *r)
{
	if (!r)
		return;
	free(r->body);
	free(r->sid);
	free(r);
}

static void server_unwait(struct server *s, struct request *r)
{
	HASH_DEL(s->waiting_by_rid, r);
	DL_DELETE(s->waiting, r);
}

/* Answers a suspended request: MHD calls the handler again after resume. */
static void server_finish(struct server *s, struct request *r, int status)
{
	server_unwait(s, r);
	r->state = REQ_ANSWER;
	r->status = status;
	MHD_resume_connection(r->conn);
}

static bool server_is_form(struct MHD_Connection *c)
{
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

static bool server_admin_ok(struct server *s, struct MHD_Connection *c)
{
	return auth_bearer(c, s->cfg->admin_token);
}

/* Converts a complete request into an envelope: 0 forward, EVENTS_IGNORE
 * (answer success now), or an HTTP status. */
static int server_convert(struct server *s, struct request *r, struct envelope *env)
{
	const struct route *rt = r->route;
	const char *why = NULL;
	char *url = xasprintf("%s%s", s->cfg->public_url, rt->path);
	struct webhook_cfg wc = { .auth_token = s->cfg->twilio_auth_token, .url = url,
				  .check_signature = s->cfg->twilio_validate_signature,
				  .max_params = (size_t)s->cfg->http_max_params,
				  .account_sid = s->cfg->twilio_account_sid,
				  .workspace_sid = s->cfg->flex_workspace_sid,
				  .numbers = s->numbers, .nnumbers = s->nnumbers };
	const char *sig = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Twilio-Signature");
	const char *body = r->body ? r->body : "";
	struct form f;
	int status;

	memset(env, 0, sizeof(*env));
	if (rt->kind == RT_MESSAGES) {
		status = webhook_inbound(&wc, sig, body, r->len, env, &why);
	} else if (rt->kind == RT_ADMIN) {
		status = server_admin_ok(s, r->conn)
				 ? events_admin(rt->admin_op, body, r->len, env, &why)
				 : 401;
		if (status == 401)
			why = "bad or missing bearer token";
	} else if ((status = webhook_form(&wc, sig, body, r->len, &f, &why)) == 0) {
		if (rt->kind == RT_CONVERSATIONS)
			status = events_conversations(&wc, &f, env, &why);
		else if (rt->kind == RT_TASKROUTER)
			status = events_taskrouter(&wc, &f, env, &why);
		else
			status = events_status(&wc, &f, env, &why);
		form_release(&f);
	}
	free(url);
	if (status && status != EVENTS_IGNORE)
		log_warn("rejected %s (%d): %s", rt->path, status, why ? why : "");
	if (status == 403)
		metrics_http_signature_failure(rt->path);
	return status;
}

/* Parses, checks and forwards a complete request; suspends until the router answers. */
static enum MHD_Result server_forward(struct server *s, struct request *r)
{
	struct envelope env;

	r->arrived = clock_wall_ms();
	if (r->too_big) {
		log_warn("rejected %s: body over %ld bytes", r->route->path, s->cfg->http_max_body);
		return server_reply(s, r->conn, 413);
	}
	if (r->route->kind != RT_ADMIN && !server_is_form(r->conn)) {
		log_warn("rejected %s: content type is not form-urlencoded", r->route->path);
		return server_reply(s, r->conn, 415);
	}
	/* Stopping: nothing more may be suspended (MHD refuses to stop with
	 * suspended connections), and the router will not answer anyway. */
	if (s->stopping)
		return server_reply(s, r->conn, 503);
	int status = server_convert(s, r, &env);
	if (status == EVENTS_IGNORE)
		return server_success(s, r->conn, r->route);
	if (status)
		return server_reply(s, r->conn, status);
	const char *idem = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						       "I-Twilio-Idempotency-Token");
	if (idem && env.type == ENV_INBOUND)
		env.idem = xstrdup(idem);
	env.id = r->rid = ++s->next_rid;
	r->sid = xstrdup(env.sid ? env.sid : env.op);
	struct log_ids ids = { .sid = env.sid };
	if (zmqx_send_env(s->router, NULL, &env) < 0) {
		log_emit(LOG_ERROR, &ids, "cannot hand webhook to router: %s", zmq_strerror(errno));
		env_release(&env);
		return server_reply(s, r->conn, 503);
	}
	env_release(&env);
	r->state = REQ_WAITING;
	r->deadline = clock_mono_ms() + (uint64_t)s->cfg->http_ack_timeout_ms;
	HASH_ADD(hh, s->waiting_by_rid, rid, sizeof(r->rid), r);
	DL_APPEND(s->waiting, r);
	MHD_suspend_connection(r->conn);
	return MHD_YES;
}

/* Counts Content-Length headers and notes Transfer-Encoding. */
static enum MHD_Result server_count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
					   const char *value)
{
	int *f = cls;
	if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
		f[0]++;
	else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING))
		f[1] += strcasecmp(value, "chunked") ? 2 : 1;
	return MHD_YES;
}

/*
 * A body's length must be said one way: two Content-Length headers, or
 * Content-Length beside Transfer-Encoding, or an encoding other than
 * chunked, are what request smuggling behind a proxy is made of. 400.
 */
static bool server_framing_ok(struct MHD_Connection *c)
{
	int f[2] = { 0, 0 };
	MHD_get_connection_values(c, MHD_HEADER_KIND, server_count_framing, f);
	return f[0] <= 1 && f[1] <= 1 && !(f[0] && f[1]);
}

static enum MHD_Result server_handle(void *cls, struct MHD_Connection *c, const char *url,
				     const char *method, const char *version,
				     const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct server *s = cls;
	struct request *r = *con_cls;

	metrics_http_begin(c, url);
	if (!r) {
		slow_head_done(s->slow, c);
		if (!server_framing_ok(c)) {
			log_warn("rejected %s: ambiguous body length (Content-Length twice, or with "
				 "Transfer-Encoding)", url);
			return MHD_queue_response(c, 400, s->r_400);
		}
		bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
		if (!strcmp(url, PATH_HEALTH))
			return get ? MHD_queue_response(c, 200, s->r_health)
				   : MHD_queue_response(c, 405, s->r_405_get);
		/* Pages with a module of their own (metrics) are matched here,
		 * one line each, before the webhook routes. */
		if (metrics_http_owns(url)) return metrics_http_handle(c, method, s->cfg);
		const struct route *rt = NULL;
		for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
			if (!strcmp(url, routes[i].path))
				rt = &routes[i];
		/* Admin endpoints do not exist unless a token is configured. */
		if (!rt || (rt->kind == RT_ADMIN && !s->cfg->admin_token[0]))
			return MHD_queue_response(c, 404, s->r_404);
		if (strcmp(method, "POST") != 0)
			return MHD_queue_response(c, 405, s->r_405_post);
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoll(cl, NULL, 10) > s->cfg->http_max_body) {
			log_warn("rejected webhook: Content-Length %s over %ld", cl, s->cfg->http_max_body);
			return MHD_queue_response(c, 413, s->r_413);
		}
		r = xcalloc(1, sizeof(*r));
		r->conn = c;
		r->route = rt;
		*con_cls = r;
		return MHD_YES;
	}
	if (r->state == REQ_ANSWER)
		return r->status == 200 ? server_success(s, c, r->route) : server_reply(s, c, r->status);
	if (*upload_size) {
		/* A chunked body has no Content-Length: the bound is enforced here too. */
		if (!r->too_big && r->len + *upload_size <= (size_t)s->cfg->http_max_body) {
			r->body = xrealloc(r->body, r->len + *upload_size + 1);
			memcpy(r->body + r->len, upload_data, *upload_size);
			r->len += *upload_size;
			r->body[r->len] = '\0';
		} else {
			r->too_big = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	return server_forward(s, r);
}

static void server_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			     enum MHD_RequestTerminationCode toe)
{
	struct server *s = cls;
	struct request *r = *con_cls;
	metrics_http_completed(c);
	slow_request_done(s->slow, c);
	if (!r)
		return;
	if (r->state == REQ_WAITING)
		server_unwait(s, r);
	request_free(r);
	*con_cls = NULL;
}

/* Appends an accepted request to the capture. A failure never fails the
 * request (the message is already durable): the writer logs it, at most
 * once a minute with the count of the others, so a full disk does not
 * flood the log with one line per webhook. */
static void server_capture(struct server *s, const struct request *r)
{
	if (s->capture && capture_append(s->capture, r->arrived, r->route->path,
					 r->body ? r->body : "", r->len) < 0)
		s->capture_failed++;
}

static void server_on_ack(struct server *s, const struct envelope *env)
{
	struct request *r = NULL;
	uint64_t rid = env->id;
	HASH_FIND(hh, s->waiting_by_rid, &rid, sizeof(rid), r);
	if (!r) {
		log_debug("ack for request %llu that already timed out", (unsigned long long)rid);
		return;
	}
	struct log_ids ids = { .sid = r->sid };
	int status;
	switch (env->status) {
	case ST_OK:
		/* Only what the router stored: a duplicate was captured the first time. */
		server_capture(s, r);
		status = 200;
		break;
	case ST_DUPLICATE:
		status = 200;
		break;
	case ST_FAILED:
		log_emit(LOG_WARN, &ids, "router refused the request: %s",
			 env->err && *env->err ? env->err : "no reason given");
		status = r->route->kind == RT_ADMIN ? 404 : 400;
		break;
	default:
		log_emit(LOG_WARN, &ids, "router could not store the message: %s",
			 env->err ? env->err : "busy");
		status = 503;
		break;
	}
	server_finish(s, r, status);
}

static void server_drain_router(struct server *s)
{
	struct envelope env;
	int rc;
	while ((rc = zmqx_recv_env(s->router, NULL, &env)) != 0) {
		if (rc < 0)
			continue;
		if (env.type == ENV_ACK)
			server_on_ack(s, &env);
		else
			log_warn("ignored a %s envelope from the router", env_type_name(env.type));
		env_release(&env);
	}
}

static void server_expire(struct server *s)
{
	uint64_t now = clock_mono_ms();
	while (s->waiting && s->waiting->deadline <= now) {
		struct request *r = s->waiting;
		struct log_ids ids = { .sid = r->sid };
		log_emit(LOG_WARN, &ids, "router did not acknowledge within %d ms: answering 503",
			 s->cfg->http_ack_timeout_ms);
		server_finish(s, r, 503);
	}
}

/* Cuts connections whose request head is late (slow.h); logged once a minute. */
static void server_cut_slow(struct server *s)
{
	uint64_t now = clock_mono_ms();
	size_t n = slow_expire(s->slow, now);
	if (!n)
		return;
	s->cut_slow += n;
	metrics_http_slow_cut(n);
	if (now >= s->next_slow_log) {
		log_warn("cut %llu connections that sent no complete request head within %d s "
			 "(slow or idle clients) since the last such line",
			 (unsigned long long)s->cut_slow, s->cfg->http_head_timeout_s);
		s->cut_slow = 0;
		s->next_slow_log = now + 60000;
	}
}

static int server_timeout(struct server *s)
{
	MHD_UNSIGNED_LONG_LONG mhd_ms = 0;
	long t = 1000;
	if (MHD_get_timeout(s->mhd, &mhd_ms) == MHD_YES && (long long)mhd_ms < t)
		t = (long)mhd_ms;
	uint64_t due = slow_next_due(s->slow), now = clock_mono_ms();
	if (due && (due <= now || (long)(due - now) < t))
		t = due <= now ? 0 : (long)(due - now);
	if (s->waiting) {
		long w = s->waiting->deadline > now ? (long)(s->waiting->deadline - now) : 0;
		if (w < t)
			t = w;
	}
	return (int)t;
}

static int server_start(struct server *s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)s->cfg->http_port) };
	if (inet_pton(AF_INET, s->cfg->http_bind, &sa.sin_addr) != 1)
		return log_err("http.bind: '%s' is not an IPv4 address", s->cfg->http_bind);
	long nofile = proc_raise_nofile();
	unsigned limit = SERVER_CONN_LIMIT;
	if (nofile > 0 && nofile - SERVER_FD_RESERVE < (long)limit)
		limit = nofile > 2 * SERVER_FD_RESERVE ? (unsigned)(nofile - SERVER_FD_RESERVE) : 16;
	log_info("HTTP: at most %u connections (open files limit %ld), %d per address, %d s for a "
		 "request head", limit, nofile, s->cfg->http_per_ip_limit, s->cfg->http_head_timeout_s);
	/* SO_REUSEPORT only when asked: the kernel spreads connections over
	 * every socket on the port that set it, so a stray process sharing it
	 * would take some of the webhooks and answer them for another state. */
	struct MHD_OptionItem share[] = {
		{ s->cfg->http_share_port ? MHD_OPTION_LISTENING_ADDRESS_REUSE : MHD_OPTION_END, 1,
		  NULL },
		{ MHD_OPTION_END, 0, NULL },
	};
	s->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
				  0, NULL, NULL, server_handle, s,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				  MHD_OPTION_ARRAY, share,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)s->cfg->http_conn_timeout_s,
				  MHD_OPTION_CONNECTION_LIMIT, limit,
				  MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)s->cfg->http_per_ip_limit,
				  MHD_OPTION_NOTIFY_CONNECTION, slow_notify, s->slow,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SERVER_CONN_MEMORY,
				  MHD_OPTION_NOTIFY_COMPLETED, server_completed, s,
				  MHD_OPTION_END);
	if (!s->mhd)
		return log_err("cannot start HTTP server on %s:%d: %s%s", s->cfg->http_bind,
			       s->cfg->http_port, strerror(errno),
			       errno == EADDRINUSE && !s->cfg->http_share_port
				       ? " (another process has the port; several ingress processes "
					 "share it only with http.share_port = true)"
				       : "");
	return 0;
}

int server_run(const struct config *cfg, volatile sig_atomic_t *stop)
{
	struct server s = { .cfg = cfg };
	int rc = -1;

	server_make_responses(&s);
	/* With twilio.whatsapp_from naming the default number, a message's To
	 * is it or a [number] section's; without it the base settings serve
	 * any number, so any WhatsApp address is ours. */
	s.numbers = xcalloc(cfg->nnumbers + 1, sizeof(*s.numbers));
	if (cfg->twilio_whatsapp_from[0]) {
		for (size_t i = 0; i < cfg->nnumbers; i++)
			s.numbers[s.nnumbers++] = cfg->numbers[i].address;
		s.numbers[s.nnumbers++] = cfg->twilio_whatsapp_from;
	}
	s.slow = slow_new((uint64_t)cfg->http_head_timeout_s * 1000);
	s.zctx = zmq_ctx_new();
	if (!s.zctx) {
		log_err("cannot create ZeroMQ context");
		goto fail;
	}
	struct zmqx_keys keys;
	if (!(s.router = zmqx_dealer_connect(s.zctx, cfg->router_ingress_endpoint,
					     zmqx_keys_for(cfg, cfg->router_ingress_endpoint, &keys))))
		goto fail;
	/* Asked for and impossible is a start-up error, not a silent no-capture. */
	if (cfg->capture_dir[0] &&
	    !(s.capture = capture_open(cfg->capture_dir, (size_t)cfg->capture_max_mb * 1024 * 1024)))
		goto fail;
	if (server_start(&s) < 0)
		goto fail;
	const union MHD_DaemonInfo *pi = MHD_get_daemon_info(s.mhd, MHD_DAEMON_INFO_BIND_PORT);
	const union MHD_DaemonInfo *ei = MHD_get_daemon_info(s.mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!pi || !ei) {
		log_err("cannot read the HTTP server's port or epoll fd");
		goto fail;
	}
	log_notice("ready: listening on http://%s:%u, router %s", cfg->http_bind,
		 (unsigned)pi->port, cfg->router_ingress_endpoint);

	while (!*stop) {
		zmq_pollitem_t items[2] = {
			{ .socket = s.router, .events = ZMQ_POLLIN },
			{ .fd = ei->epoll_fd, .events = ZMQ_POLLIN },
		};
		if (zmq_poll(items, 2, server_timeout(&s)) < 0 && errno != EINTR) {
			log_err("zmq_poll: %s", zmq_strerror(errno));
			break;
		}
		server_drain_router(&s);
		server_expire(&s);
		server_cut_slow(&s);
		MHD_run(s.mhd);
		metrics_tick();
	}
	log_info("stopping: %u requests waiting for the router get 503", HASH_COUNT(s.waiting_by_rid));
	if (s.capture_failed)
		log_warn("capture: %lu accepted webhooks could not be captured", s.capture_failed);
	rc = 0;
fail:
	/* MHD refuses to stop with suspended connections: answer them first,
	 * and suspend no new one while MHD sends those answers. */
	s.stopping = true;
	while (s.waiting)
		server_finish(&s, s.waiting, 503);
	if (s.mhd) {
		MHD_run(s.mhd);
		MHD_stop_daemon(s.mhd);
	}
	zmqx_close(&s.router, 0);
	if (s.zctx)
		zmq_ctx_term(s.zctx);
	capture_close(&s.capture);
	server_free_responses(&s);
	slow_free(&s.slow);
	free(s.numbers);
	return rc;
}
