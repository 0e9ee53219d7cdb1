/* ctl — batonctl show/handback/escalate/purge and the shared reads; see ctl.h. */
#include "ctl.h"

#include <curl/curl.h>
#include <jansson.h>
#include <zmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "store.h"
#include "xalloc.h"

static void ctl_time(uint64_t ms, char *buf, size_t len)
{
	if (!ms) {
		snprintf(buf, len, "-");
		return;
	}
	clock_iso8601(ms, buf, len);
	buf[19] = '\0'; /* seconds are enough for a person */
	buf[10] = ' ';
}

static json_t *ctl_str(const char *s)
{
	return s ? json_string(s) : json_null();
}

int ctl_read_begin(const struct config *cfg, struct ctl_read *rd)
{
	rd->txn = NULL;
	if (store_open_readonly(&rd->st, cfg->state_dir) < 0) {
		fprintf(stderr, "batonctl: hint: baton's state is read from state.dir, now '%s'. Under "
			"systemd it is /var/lib/baton; point batonctl at it with --config "
			"/etc/baton/baton.conf or BATON_STATE_DIR, and run it as the baton user or "
			"root.\n", cfg->state_dir);
		return CTL_FAIL;
	}
	int rc = mdb_txn_begin(rd->st.env, NULL, MDB_RDONLY, &rd->txn);
	if (rc) {
		fprintf(stderr, "batonctl: cannot read state: %s\n", mdb_strerror(rc));
		rd->txn = NULL;
		store_close(&rd->st);
		return CTL_FAIL;
	}
	return CTL_OK;
}

void ctl_read_end(struct ctl_read *rd)
{
	if (rd->txn)
		mdb_txn_abort(rd->txn);
	rd->txn = NULL;
	store_close(&rd->st);
}

int ctl_read_find(struct ctl_read *rd, const char *address, char **key)
{
	const char *bar = strchr(address, '|');
	char *cust = bar ? xstrndup(address, (size_t)(bar - address)) : xstrdup(address);
	int rc = store_conv_find(&rd->st, rd->txn, cust, bar ? bar + 1 : NULL, key);
	free(cust);
	if (rc == MDB_NOTFOUND) {
		fprintf(stderr, "batonctl: no conversation with %s (batonctl conversations lists "
			"them)\n", address);
		return CTL_NOT_FOUND;
	}
	if (rc) {
		fprintf(stderr, "batonctl: cannot read conversation: %s\n", mdb_strerror(rc));
		return CTL_FAIL;
	}
	return CTL_OK;
}

int ctl_read_conv(const struct config *cfg, struct ctl_read *rd, const char *address, char **key,
		  struct conv_rec *c)
{
	int rc, ret;
	*key = NULL;
	if ((ret = ctl_read_begin(cfg, rd)) != CTL_OK)
		return ret;
	if ((ret = ctl_read_find(rd, address, key)) == CTL_OK &&
	    (rc = store_conv_get(&rd->st, rd->txn, *key, c))) {
		fprintf(stderr, "batonctl: cannot read conversation: %s\n", mdb_strerror(rc));
		ret = CTL_FAIL;
	}
	if (ret != CTL_OK) {
		free(*key);
		*key = NULL;
		ctl_read_end(rd);
	}
	return ret;
}

int ctl_show(const struct config *cfg, const char *address, bool json)
{
	struct ctl_read rd;
	struct conv_rec c;
	char *key, when[32];
	int ret;

	if ((ret = ctl_read_conv(cfg, &rd, address, &key, &c)) != CTL_OK)
		return ret;
	json_t *root = json_object(), *tl = json_array(), *hist = json_array();
	json_object_set_new(root, "conversation", json_string(key));
	json_object_set_new(root, "mode", json_string(conv_mode_name(c.mode)));
	json_object_set_new(root, "name", ctl_str(c.name));
	json_object_set_new(root, "flex_conversation", ctl_str(c.flex_ch));
	json_object_set_new(root, "flex_interaction", ctl_str(c.flex_kd));
	json_object_set_new(root, "task", ctl_str(c.flex_wt));
	json_object_set_new(root, "window_closed", json_boolean(c.window_closed != 0));
	json_object_set_new(root, "last_error_code", json_integer(c.err_code));
	for (uint64_t i = 1; i <= c.tl_seq; i++) {
		struct tl_rec t;
		if (store_tl_get(&rd.st, rd.txn, key, i, &t))
			continue;
		json_array_append_new(tl, json_pack("{s:I, s:s, s:s}", "ts", (json_int_t)t.ts,
						    "event", t.event ? t.event : "", "detail",
						    t.detail ? t.detail : ""));
		tl_rec_release(&t);
	}
	for (uint64_t i = 1; i <= c.seq; i++) {
		struct hist_rec h;
		if (store_hist_get(&rd.st, rd.txn, key, i, &h))
			continue;
		json_t *o = json_pack("{s:I, s:s, s:s}", "ts", (json_int_t)h.ts, "role",
				      env_role_name(h.role), "text", h.text ? h.text : "");
		if (h.who)
			json_object_set_new(o, "agent", json_string(h.who));
		if (h.sid)
			json_object_set_new(o, "sid", json_string(h.sid));
		if (h.msid)
			json_object_set_new(o, "sent", json_string(h.msid));
		json_array_append_new(hist, o);
		hist_rec_release(&h);
	}
	json_object_set_new(root, "timeline", tl);
	json_object_set_new(root, "history", hist);

	if (json) {
		json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
	} else {
		char masked[STORE_KEY_MAX + 1];
		log_show_address(key, masked, sizeof(masked));
		printf("conversation  %s\nmode          %s\n", masked, conv_mode_name(c.mode));
		if (c.flex_ch)
			printf("flex          conversation %s, interaction %s, task %s\n", c.flex_ch,
			       c.flex_kd ? c.flex_kd : "-", c.flex_wt ? c.flex_wt : "-");
		if (c.window_closed)
			printf("whatsapp      window closed (free-form messages cannot be sent)\n");
		printf("\ntimeline\n");
		size_t i;
		json_t *e;
		json_array_foreach(tl, i, e) {
			ctl_time((uint64_t)json_integer_value(json_object_get(e, "ts")), when, sizeof(when));
			printf("  %s  %-18s %s\n", when, json_string_value(json_object_get(e, "event")),
			       json_string_value(json_object_get(e, "detail")));
		}
		printf("\ntranscript\n");
		json_array_foreach(hist, i, e) {
			const char *role = json_string_value(json_object_get(e, "role"));
			const char *agent = json_string_value(json_object_get(e, "agent"));
			char who[64];
			snprintf(who, sizeof(who), "%s%s%s%s", role, agent ? " (" : "", agent ? agent : "",
				 agent ? ")" : "");
			ctl_time((uint64_t)json_integer_value(json_object_get(e, "ts")), when, sizeof(when));
			printf("  %s  %-18s %s\n", when, who, json_string_value(json_object_get(e, "text")));
		}
	}
	json_decref(root);
	conv_rec_release(&c);
	free(key);
	ctl_read_end(&rd);
	return CTL_OK;
}

static size_t ctl_sink(char *p, size_t s, size_t n, void *u)
{
	(void)p;
	(void)u;
	return s * n;
}

/* POSTs {"address", "business"?, "reason"?} to ingress /admin/<what>. Returns
 * the HTTP status, 0 when ingress could not be reached (reported), or -1
 * without admin.token (reported). */
static long ctl_post(const struct config *cfg, const char *what, const char *address,
		     const char *reason)
{
	if (!cfg->admin_token[0]) {
		fprintf(stderr, "batonctl: admin.token is not set: operator commands are off\n");
		return -1;
	}
	const char *bar = strchr(address, '|');
	json_t *o = json_object();
	json_object_set_new(o, "address", bar ? json_stringn(address, (size_t)(bar - address))
					      : json_string(address));
	if (bar)
		json_object_set_new(o, "business", json_string(bar + 1));
	if (reason)
		json_object_set_new(o, "reason", json_string(reason));
	char *body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	const char *host = strcmp(cfg->http_bind, "0.0.0.0") ? cfg->http_bind : "127.0.0.1";
	char *url = xasprintf("http://%s:%d/admin/%s", host, cfg->http_port, what);
	char *auth = xasprintf("Authorization: Bearer %s", cfg->admin_token);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	CURL *e = curl_easy_init();
	long status = 0;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ctl_sink);
	CURLcode cc = curl_easy_perform(e);
	if (cc != CURLE_OK)
		fprintf(stderr, "batonctl: cannot reach ingress at %s: %s\n", url, curl_easy_strerror(cc));
	else
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(e);
	curl_slist_free_all(h);
	free(auth);
	free(url);
	free(body);
	return status;
}

int ctl_admin(const struct config *cfg, const char *what, const char *address,
	      const char *reason)
{
	long status = ctl_post(cfg, what, address, reason);
	if (status < 0)
		return CTL_USAGE;
	if (status == 200) {
		printf("%s: %s done\n", address, what);
		return CTL_OK;
	}
	if (status == 404) {
		fprintf(stderr, "batonctl: no conversation for %s\n", address);
		return CTL_NOT_FOUND;
	}
	if (status)
		fprintf(stderr, "batonctl: ingress answered HTTP %ld\n", status);
	return CTL_FAIL;
}

/* Asks on the terminal; true when the operator typed yes. */
static bool ctl_confirm(const char *what)
{
	char line[64];
	fprintf(stderr, "%s\nType 'yes' to erase it for good: ", what);
	fflush(stderr);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	line[strcspn(line, "\r\n")] = '\0';
	return !strcmp(line, "yes") || !strcmp(line, "YES");
}

int ctl_purge(const struct config *cfg, const char *address, const char *reason, bool yes)
{
	struct ctl_read rd;
	char *key = NULL, masked[STORE_KEY_MAX + 1], *what = NULL;
	int ret;

	/* What is about to go, from a read-only look: the router decides. */
	if ((ret = ctl_read_begin(cfg, &rd)) != CTL_OK)
		return ret;
	if ((ret = ctl_read_find(&rd, address, &key)) != CTL_OK) {
		ctl_read_end(&rd);
		return ret;
	}
	struct conv_rec c;
	if (store_conv_get(&rd.st, rd.txn, key, &c) == 0) {
		log_show_address(key, masked, sizeof(masked));
		what = xasprintf("Purge conversation %s: %s mode, %llu messages, %llu timeline entries%s.\n"
				 "Its history, timeline, jobs and index entries are erased; an audit record "
				 "keeps only when, the masked address and the counts.",
				 masked, conv_mode_name(c.mode), (unsigned long long)c.seq,
				 (unsigned long long)c.tl_seq,
				 c.mode != MODE_AI ? "; its Flex conversation will be closed" : "");
		conv_rec_release(&c);
	}
	ctl_read_end(&rd);
	if (!yes) {
		if (!isatty(STDIN_FILENO) || !isatty(STDERR_FILENO)) {
			fprintf(stderr, "batonctl: purge erases a conversation for good: pass --yes "
				"(there is no terminal to ask on)\n");
			ret = CTL_USAGE;
			goto out;
		}
		if (!ctl_confirm(what ? what : "Purge this conversation.")) {
			fprintf(stderr, "batonctl: not purged\n");
			ret = CTL_FAIL;
			goto out;
		}
	}
	/* The key found, not the address typed: the same conversation as shown. */
	long status = ctl_post(cfg, "purge", key, reason);
	if (status < 0) {
		ret = CTL_USAGE;
	} else if (status == 200) {
		log_show_address(key, masked, sizeof(masked));
		printf("%s: purged (Twilio keeps its own copies: message logs, Flex conversations "
		       "and tasks are erased in Twilio)\n", masked);
		ret = CTL_OK;
	} else if (status == 404) {
		fprintf(stderr, "batonctl: no conversation for %s\n", address);
		ret = CTL_NOT_FOUND;
	} else if (status == 503) {
		fprintf(stderr, "batonctl: not purged now: a Flex handoff of this conversation is still "
			"in progress, or the router is busy; nothing was erased, try again in a few "
			"seconds\n");
		ret = CTL_FAIL;
	} else {
		if (status)
			fprintf(stderr, "batonctl: ingress answered HTTP %ld\n", status);
		ret = CTL_FAIL;
	}
out:
	free(what);
	free(key);
	return ret;
}

/* One side of an address: whatsapp:+E164 from +E164 or bare digits. */
static char *ctl_side(const char *s, size_t n)
{
	while (n && *s == ' ')
		s++, n--;
	while (n && s[n - 1] == ' ')
		n--;
	if (n >= 9 && !strncmp(s, "whatsapp:", 9))
		return xstrndup(s, n);
	if (n && *s == '+')
		return xasprintf("whatsapp:%.*s", (int)n, s);
	bool digits = n > 0;
	for (size_t i = 0; i < n; i++)
		digits = digits && s[i] >= '0' && s[i] <= '9';
	return digits ? xasprintf("whatsapp:+%.*s", (int)n, s) : xstrndup(s, n);
}

char *ctl_address(const char *in)
{
	const char *bar = strchr(in, '|');
	char *cust = ctl_side(in, bar ? (size_t)(bar - in) : strlen(in));
	if (!bar)
		return cust;
	char *biz = ctl_side(bar + 1, strlen(bar + 1));
	char *out = xasprintf("%s|%s", cust, biz);
	free(cust);
	free(biz);
	return out;
}

int ctl_keygen(bool json)
{
	char pub[41], sec[41];
	if (zmq_curve_keypair(pub, sec) != 0) {
		fprintf(stderr, "batonctl: cannot make a CURVE key pair: %s (libzmq without CURVE?)\n",
			zmq_strerror(zmq_errno()));
		return CTL_FAIL;
	}
	if (json)
		printf("{\"public\": \"%s\", \"secret\": \"%s\"}\n", pub, sec);
	else
		printf("public = %s\nsecret = %s\n", pub, sec);
	explicit_bzero(sec, sizeof(sec));
	return CTL_OK;
}
