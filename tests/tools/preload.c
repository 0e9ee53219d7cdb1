/*
 * preload — fills a fresh state directory with many conversations, for
 * the state-scale bench: route against 1,000,000 conversations without
 * sending a million webhooks first.
 *
 * Writes through the router's own store module (so the records are the
 * ones the router reads), in large transactions with fsync off. The
 * conversation of customer i is "whatsapp:+1555<i, 7 digits>" with the
 * given business number, named "Customer i", in ai mode (one in
 * PRELOAD_HUMAN with a person, so the console has a queue), active i ms
 * after the first, with TURNS history turns alternating customer and ai,
 * and its MessageSids marked seen like real traffic.
 *
 *   preload STATE_DIR CONVERSATIONS TURNS [BUSINESS]
 *
 * Prints one JSON line: conversations, turns, seconds, data file bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "convkey.h"
#include "store.h"

#define PRELOAD_TXN 20000
#define PRELOAD_HUMAN 1000

static const char *preload_texts[2] = {
	"Hello, I would like to book an appointment for next week, is that possible?",
	"Of course. We have openings on Tuesday at 10:00 and Thursday at 15:30. Which suits you?",
};

static int preload_one(struct store *st, MDB_txn *txn, uint64_t i, long turns,
		       const char *business, uint64_t now)
{
	char customer[64], sid[64], name[32];
	uint64_t at = now + i;
	struct conv_rec c = { .mode = MODE_AI, .created = at, .updated = at, .last_in = at };
	int rc = 0;

	snprintf(customer, sizeof(customer), "whatsapp:+1555%07" PRIu64, i);
	snprintf(name, sizeof(name), "Customer %" PRIu64, i);
	c.name = name;
	char *key = convkey_join(customer, business);
	c.customer = customer;
	c.business = (char *)business;
	for (long t = 0; rc == 0 && t < turns; t++) {
		struct hist_rec h = { .role = t % 2 ? ROLE_AI : ROLE_CUSTOMER,
				      .text = (char *)preload_texts[t % 2], .ts = at };
		if (!(t % 2)) {
			snprintf(sid, sizeof(sid), "SMpre%016" PRIx64 "%011ld", i, t);
			h.sid = sid;
			c.turns++;
			rc = store_seen_put(st, txn, sid, at);
		}
		if (rc == 0)
			rc = store_hist_append(st, txn, key, &c, &h);
	}
	if (i % PRELOAD_HUMAN == PRELOAD_HUMAN - 1) {
		c.mode = MODE_HUMAN;
		c.esc_at = c.accepted_at = at;
		c.escalations = 1;
		c.esc_trigger = (char *)"rule";
		c.agent = (char *)"Agent";
		if (rc == 0)
			rc = store_modes_sync(st, txn, key, &c);
	}
	if (rc == 0)
		rc = store_conv_put(st, txn, key, &c);
	free(key);
	return rc;
}

int main(int argc, char **argv)
{
	struct store st;
	MDB_txn *txn = NULL;
	int rc;

	if (argc < 4) {
		fprintf(stderr, "usage: preload STATE_DIR CONVERSATIONS TURNS [BUSINESS]\n");
		return 2;
	}
	const char *dir = argv[1], *business = argc > 4 ? argv[4] : "whatsapp:+14155238886";
	uint64_t n = strtoull(argv[2], NULL, 10);
	long turns = strtol(argv[3], NULL, 10);
	uint64_t t0 = clock_mono_ms(), now = clock_wall_ms();

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "preload: cannot create %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (store_open(&st, dir, 64 * 1024, false) < 0)
		return 1;
	for (uint64_t i = 0; i < n; i++) {
		if (!txn && (rc = mdb_txn_begin(st.env, NULL, 0, &txn)))
			goto fail;
		if ((rc = preload_one(&st, txn, i, turns, business, now)))
			goto fail;
		if ((i + 1) % PRELOAD_TXN == 0 || i + 1 == n) {
			rc = mdb_txn_commit(txn);
			txn = NULL;
			if (rc)
				goto fail;
		}
	}
	if ((rc = mdb_env_sync(st.env, 1)))
		goto fail;
	store_close(&st);

	char path[4096];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	if (stat(path, &sb) < 0)
		sb.st_size = 0;
	printf("{\"conversations\": %" PRIu64 ", \"turns\": %ld, \"seconds\": %.1f, "
	       "\"bytes\": %lld}\n", n, turns, (double)(clock_mono_ms() - t0) / 1000.0,
	       (long long)sb.st_size);
	return 0;
fail:
	fprintf(stderr, "preload: %s\n", mdb_strerror(rc));
	if (txn)
		mdb_txn_abort(txn);
	store_close(&st);
	return 1;
}
