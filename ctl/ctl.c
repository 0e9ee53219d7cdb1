/* ctl — batonctl's shared reads and output helpers, addresses, keygen; see ctl.h. */
#include "ctl.h"

#include <jansson.h>
#include <zmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"
#include "clock.h"
#include "convkey.h"
#include "log.h"
#include "store.h"
#include "xalloc.h"

void ctl_time(uint64_t ms, bool full, char *buf, size_t len)
{
	if (!ms) {
		snprintf(buf, len, "-");
		return;
	}
	clock_iso8601(ms, buf, len);
	if (!full && strlen(buf) >= 20) {
		buf[19] = 'Z'; /* seconds are enough for a person */
		buf[20] = '\0';
	}
}

json_t *ctl_jtime(uint64_t ms)
{
	char b[40];
	if (!ms)
		return json_null();
	ctl_time(ms, true, b, sizeof(b));
	return json_string(b);
}

void ctl_dump(json_t *root)
{
	json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
}

int ctl_read_begin(const struct config *cfg, struct ctl_read *rd)
{
	const char *why = NULL;
	rd->txn = NULL;
	rd->st = NULL;
	if (!(rd->acc = access_open(cfg, "batonctl", &why))) {
		if (cfg->state_backend == CONFIG_BACKEND_POSTGRES)
			fprintf(stderr, "batonctl: %s; check postgres.dsn and that a router has run "
				"once against it\n", why);
		else
			fprintf(stderr, "batonctl: hint: baton's state is read from state.dir, now '%s'. "
				"Under systemd it is /var/lib/baton; point batonctl at it with --config "
				"/etc/baton/baton.conf or BATON_STATE_DIR, and run it as the baton user or "
				"root.\n", cfg->state_dir);
		return CTL_FAIL;
	}
	rd->st = access_store(rd->acc);
	int rc = mdb_txn_begin(rd->st->env, NULL, MDB_RDONLY, &rd->txn);
	if (rc) {
		fprintf(stderr, "batonctl: cannot read state: %s\n", mdb_strerror(rc));
		rd->txn = NULL;
		ctl_read_end(rd);
		return CTL_FAIL;
	}
	return CTL_OK;
}

void ctl_read_end(struct ctl_read *rd)
{
	if (rd->txn)
		mdb_txn_abort(rd->txn);
	rd->txn = NULL;
	access_close(rd->acc);
	rd->acc = NULL;
	rd->st = NULL;
}

int ctl_read_find(struct ctl_read *rd, const char *address, char **key)
{
	struct convkey who;
	if (convkey_split(address, &who) < 0) {
		fprintf(stderr, "batonctl: '%s' is not an address (CUSTOMER or CUSTOMER|BUSINESS)\n",
			address);
		return CTL_USAGE;
	}
	int rc = store_conv_find(rd->st, rd->txn, who.customer, who.business, key);
	convkey_release(&who);
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
	    (rc = store_conv_get(rd->st, rd->txn, *key, c))) {
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
	const char *biz = convkey_business(in);
	char *cust = ctl_side(in, convkey_customer_len(in));
	if (!biz)
		return cust;
	char *b = ctl_side(biz, strlen(biz));
	char *out = convkey_join(cust, b);
	free(cust);
	free(b);
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
