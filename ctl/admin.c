/*
 * admin — batonctl handback, escalate and purge: changes never write LMDB;
 * they go through ingress's /admin endpoints to the router, with the same
 * effects as the automatic paths; see ctl.h.
 */
#include "ctl.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convkey.h"
#include "log.h"
#include "xalloc.h"

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
	struct convkey who;
	if (convkey_split(address, &who) < 0) {
		fprintf(stderr, "batonctl: '%s' is not an address (CUSTOMER or CUSTOMER|BUSINESS)\n",
			address);
		return -1;
	}
	json_t *o = json_object();
	json_object_set_new(o, "address", json_string(who.customer));
	if (who.business)
		json_object_set_new(o, "business", json_string(who.business));
	convkey_release(&who);
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
	if (store_conv_get(rd.st, rd.txn, key, &c) == 0) {
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

