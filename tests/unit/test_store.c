/*
 * test_store — state/store: the LMDB schema. Conversation, history,
 * pending-turn, seen-SID and job records round-trip with every field;
 * pending turns pop in FIFO order; job ids increase; absent records give
 * MDB_NOTFOUND; everything survives closing and reopening the store.
 * store_conv_erase (purge) takes every record of one conversation and
 * nothing of another, even one whose key extends it; audit records of one
 * millisecond do not overwrite each other.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convkey.h"
#include "journal.h"
#include "convview.h"
#include "store.h"

#define KEY "whatsapp:+14155550100|whatsapp:+14155238886"

struct fixture {
	char dir[64];
	struct store st;
	bool open;
};

static void fx_open(struct fixture *fx)
{
	assert_int_equal(store_open(&fx->st, fx->dir, 16, false), 0);
	assert_non_null(fx->st.env);
	fx->open = true;
}

static void fx_close(struct fixture *fx)
{
	store_close(&fx->st);
	assert_null(fx->st.env);
	fx->open = false;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	strcpy(fx->dir, "/tmp/baton-test-store-XXXXXX");
	if (!mkdtemp(fx->dir)) {
		free(fx);
		return -1;
	}
	fx_open(fx);
	*state = fx;
	return 0;
}

/* Removes the files LMDB created and the directory itself. */
static int teardown(void **state)
{
	struct fixture *fx = *state;
	if (fx->open)
		store_close(&fx->st);
	DIR *d = opendir(fx->dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char p[512];
			snprintf(p, sizeof(p), "%s/%s", fx->dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	int rc = rmdir(fx->dir);
	free(fx);
	return rc;
}

static MDB_txn *begin(struct fixture *fx, bool rdonly)
{
	MDB_txn *txn = NULL;
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, rdonly ? MDB_RDONLY : 0, &txn), 0);
	return txn;
}

static void commit(MDB_txn *txn)
{
	assert_int_equal(mdb_txn_commit(txn), 0);
}

static void fill_conv(struct conv_rec *c)
{
	memset(c, 0, sizeof(*c));
	c->mode = MODE_HUMAN;
	c->seq = 17;
	c->pend_in = 5;
	c->pend_out = 3;
	c->ai_job = 99;
	c->created = 1700000000000ull;
	c->updated = 1700000000500ull;
	c->last_in = 1700000000400ull;
	c->turns = 12;
	c->err_code = -63016;
	c->customer = "whatsapp:+14155550100";
	c->business = "whatsapp:+14155238886";
	c->name = "Jos\xc3\xa9";
	c->err = "Failed to send freeform message";
	c->handoff_job = 77;
	c->escalations = 2;
	c->handoff_failures = 1;
	c->esc_at = 1700000000450ull;
	c->esc_trigger = "tool";
	c->esc_reason = "pediu um humano";
	c->flex_ch = "CH0123";
	c->flex_mb = "MB0123";
	c->flex_kd = "KD0123";
	c->flex_uo = "UO0123";
	c->flex_wt = "WT0123";
}

static void assert_conv(const struct conv_rec *c)
{
	assert_int_equal(c->mode, MODE_HUMAN);
	assert_true(c->seq == 17);
	assert_true(c->pend_in == 5);
	assert_true(c->pend_out == 3);
	assert_true(c->ai_job == 99);
	assert_true(c->created == 1700000000000ull);
	assert_true(c->updated == 1700000000500ull);
	assert_true(c->last_in == 1700000000400ull);
	assert_true(c->turns == 12);
	assert_true(c->err_code == -63016);
	assert_non_null(c->customer);
	assert_string_equal(c->customer, "whatsapp:+14155550100");
	assert_string_equal(c->business, "whatsapp:+14155238886");
	assert_string_equal(c->name, "Jos\xc3\xa9");
	assert_string_equal(c->err, "Failed to send freeform message");
	assert_true(c->handoff_job == 77);
	assert_true(c->escalations == 2);
	assert_true(c->handoff_failures == 1);
	assert_true(c->esc_at == 1700000000450ull);
	assert_non_null(c->esc_trigger);
	assert_string_equal(c->esc_trigger, "tool");
	assert_string_equal(c->esc_reason, "pediu um humano");
	assert_string_equal(c->flex_ch, "CH0123");
	assert_string_equal(c->flex_mb, "MB0123");
	assert_string_equal(c->flex_kd, "KD0123");
	assert_string_equal(c->flex_uo, "UO0123");
	assert_string_equal(c->flex_wt, "WT0123");
}

static void make_hist(struct hist_rec *h, enum env_role role, const char *text, uint64_t ts)
{
	memset(h, 0, sizeof(*h));
	h->role = role;
	h->text = (char *)text;
	h->ts = ts;
}

static void fill_job_send(struct job_rec *j)
{
	memset(j, 0, sizeof(*j));
	j->kind = JOB_SEND;
	j->conv = KEY;
	j->created = 1700000001000ull;
	j->hseq = 4;
	j->to = "whatsapp:+14155550100";
	j->from = "whatsapp:+14155238886";
	j->body = "Ol\xc3\xa1! \xf0\x9f\x91\x8b";
	j->attempts = 3;
}

static void assert_job_send(const struct job_rec *j)
{
	assert_int_equal(j->kind, JOB_SEND);
	assert_non_null(j->conv);
	assert_string_equal(j->conv, KEY);
	assert_true(j->created == 1700000001000ull);
	assert_true(j->hseq == 4);
	assert_true(j->upto == 0);
	assert_string_equal(j->to, "whatsapp:+14155550100");
	assert_string_equal(j->from, "whatsapp:+14155238886");
	assert_string_equal(j->body, "Ol\xc3\xa1! \xf0\x9f\x91\x8b");
	assert_true(j->attempts == 3);
}

/* --- tests --- */

static void test_conv_key(void **state)
{
	(void)state;
	char *k = convkey_join("whatsapp:+14155550100", "whatsapp:+14155238886");
	assert_string_equal(k, KEY);
	free(k);
	assert_string_equal(job_kind_name(JOB_AI), "ai");
	assert_string_equal(job_kind_name(JOB_SEND), "send");
	assert_string_equal(job_kind_name(JOB_FLEX), "flex");
	assert_string_equal(conv_mode_name(MODE_ESCALATING), "escalating");
	assert_string_equal(conv_mode_name(MODE_HUMAN), "human");
}

static void test_conv_roundtrip(void **state)
{
	struct fixture *fx = *state;
	struct conv_rec c, got;
	fill_conv(&c);
	MDB_txn *txn = begin(fx, false);
	assert_int_equal(store_conv_put(&fx->st, txn, KEY, &c), 0);
	/* visible inside the same transaction */
	assert_int_equal(store_conv_get(&fx->st, txn, KEY, &got), 0);
	assert_conv(&got);
	conv_rec_release(&got);
	assert_null(got.customer);
	commit(txn);

	txn = begin(fx, true);
	assert_int_equal(store_conv_get(&fx->st, txn, KEY, &got), 0);
	assert_conv(&got);
	conv_rec_release(&got);
	mdb_txn_abort(txn);
}

static void test_conv_absent_strings_and_overwrite(void **state)
{
	struct fixture *fx = *state;
	struct conv_rec c, got;
	memset(&c, 0, sizeof(c));
	c.mode = MODE_ESCALATING;
	c.seq = 1;
	MDB_txn *txn = begin(fx, false);
	assert_int_equal(store_conv_put(&fx->st, txn, "k2", &c), 0);
	assert_int_equal(store_conv_get(&fx->st, txn, "k2", &got), 0);
	assert_int_equal(got.mode, MODE_ESCALATING);
	assert_true(got.seq == 1);
	assert_null(got.customer);
	assert_null(got.err);
	assert_null(got.flex_ch);
	assert_null(got.esc_trigger);
	conv_rec_release(&got);
	/* a second put replaces the record */
	fill_conv(&c);
	assert_int_equal(store_conv_put(&fx->st, txn, "k2", &c), 0);
	assert_int_equal(store_conv_get(&fx->st, txn, "k2", &got), 0);
	assert_conv(&got);
	conv_rec_release(&got);
	commit(txn);
}

static void test_conv_missing(void **state)
{
	struct fixture *fx = *state;
	struct conv_rec got;
	memset(&got, 0x5a, sizeof(got));
	MDB_txn *txn = begin(fx, true);
	assert_int_equal(store_conv_get(&fx->st, txn, "nobody|nowhere", &got), MDB_NOTFOUND);
	/* the output is zeroed, so releasing it is safe */
	assert_null(got.customer);
	assert_true(got.seq == 0);
	conv_rec_release(&got);
	mdb_txn_abort(txn);
}

static void test_conv_find_and_parties(void **state)
{
	struct fixture *fx = *state;
	struct conv_rec c;
	char *k = NULL, *cust, *biz, big[STORE_KEY_MAX + 2];
	memset(&c, 0, sizeof(c));
	MDB_txn *txn = begin(fx, false);
	assert_int_equal(store_conv_put(&fx->st, txn, KEY, &c), 0);
	commit(txn);

	txn = begin(fx, true);
	assert_int_equal(store_conv_find(&fx->st, txn, "whatsapp:+14155550100", NULL, &k), 0);
	assert_string_equal(k, KEY);
	free(k);
	assert_int_equal(store_conv_find(&fx->st, txn, "whatsapp:+14155550100",
					 "whatsapp:+14155238886", &k), 0);
	assert_string_equal(k, KEY);
	free(k);
	/* Longer than any stored key: not found (LMDB would refuse the lookup). */
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(store_conv_find(&fx->st, txn, big, NULL, &k), MDB_NOTFOUND);
	assert_null(k);
	big[300] = '\0';
	assert_int_equal(store_conv_find(&fx->st, txn, big, big, &k), MDB_NOTFOUND);
	assert_null(k);
	mdb_txn_abort(txn);

	/* Parties: split from the key when the record lacks them, else the record's. */
	store_conv_parties(KEY, &c, &cust, &biz);
	assert_string_equal(cust, "whatsapp:+14155550100");
	assert_string_equal(biz, "whatsapp:+14155238886");
	free(cust);
	free(biz);
	store_conv_parties("lonely", &c, &cust, &biz);
	assert_string_equal(cust, "lonely");
	assert_string_equal(biz, "");
	free(cust);
	free(biz);
	c.customer = "whatsapp:+1";
	c.business = "whatsapp:+2";
	store_conv_parties(KEY, &c, &cust, &biz);
	assert_string_equal(cust, "whatsapp:+1");
	assert_string_equal(biz, "whatsapp:+2");
	free(cust);
	free(biz);
}

static void test_hist_append_and_get(void **state)
{
	struct fixture *fx = *state;
	struct conv_rec c;
	struct hist_rec h, got;
	memset(&c, 0, sizeof(c));
	MDB_txn *txn = begin(fx, false);

	make_hist(&h, ROLE_CUSTOMER, "Hola \xc2\xbfqu\xc3\xa9 tal?", 1000);
	h.sid = "SM111";
	h.nmedia = 2;
	h.media = "{\"type\":\"audio\",\"items\":[{\"url\":\"https://api.twilio.com/m/ME1\","
		  "\"ct\":\"audio/ogg\"}]}";
	h.transcript = true;
	assert_int_equal(store_hist_append(&fx->st, txn, KEY, &c, &h), 0);
	assert_true(c.seq == 1);
	make_hist(&h, ROLE_AI, "Bien, gracias.", 2000);
	h.msid = "SMa,SMb";
	h.escalate = true;
	assert_int_equal(store_hist_append(&fx->st, txn, KEY, &c, &h), 0);
	assert_true(c.seq == 2);
	make_hist(&h, ROLE_AGENT, "", 3000);
	assert_int_equal(store_hist_append(&fx->st, txn, KEY, &c, &h), 0);
	assert_true(c.seq == 3);
	assert_int_equal(store_conv_put(&fx->st, txn, KEY, &c), 0);
	commit(txn);

	txn = begin(fx, true);
	assert_int_equal(store_hist_get(&fx->st, txn, KEY, 1, &got), 0);
	assert_int_equal(got.role, ROLE_CUSTOMER);
	assert_string_equal(got.text, "Hola \xc2\xbfqu\xc3\xa9 tal?");
	assert_true(got.ts == 1000);
	assert_string_equal(got.sid, "SM111");
	assert_null(got.msid);
	assert_true(got.nmedia == 2);
	assert_non_null(strstr(got.media, "audio/ogg"));
	assert_true(got.transcript);
	assert_false(got.escalate);
	/* The view: the description as an object, its text rendering, the mark. */
	json_t *v = convview_turn(1, &got);
	assert_string_equal(json_string_value(json_object_get(json_object_get(v, "media"), "type")),
			    "audio");
	assert_string_equal(json_string_value(json_object_get(v, "media_text")),
			    "[voice note (audio/ogg)]");
	assert_true(json_is_true(json_object_get(v, "transcript")));
	json_decref(v);
	hist_rec_release(&got);

	assert_int_equal(store_hist_get(&fx->st, txn, KEY, 2, &got), 0);
	assert_int_equal(got.role, ROLE_AI);
	assert_string_equal(got.text, "Bien, gracias.");
	assert_true(got.ts == 2000);
	assert_null(got.sid);
	assert_string_equal(got.msid, "SMa,SMb");
	assert_true(got.escalate);
	hist_rec_release(&got);

	assert_int_equal(store_hist_get(&fx->st, txn, KEY, 3, &got), 0);
	assert_int_equal(got.role, ROLE_AGENT);
	assert_string_equal(got.text, "");
	assert_true(got.ts == 3000);
	hist_rec_release(&got);

	assert_int_equal(store_hist_get(&fx->st, txn, KEY, 4, &got), MDB_NOTFOUND);
	assert_int_equal(store_hist_get(&fx->st, txn, KEY, 0, &got), MDB_NOTFOUND);
	/* another conversation's history is separate */
	assert_int_equal(store_hist_get(&fx->st, txn, "other|key", 1, &got), MDB_NOTFOUND);
	mdb_txn_abort(txn);
}

static void test_hist_keys_do_not_collide(void **state)
{
	struct fixture *fx = *state;
	struct hist_rec h, got;
	MDB_txn *txn = begin(fx, false);
	/* "a" seq 256 and "a\x01" must not alias (key \0 be64(seq)) */
	make_hist(&h, ROLE_CUSTOMER, "first", 1);
	assert_int_equal(store_hist_put(&fx->st, txn, "a", 256, &h), 0);
	make_hist(&h, ROLE_CUSTOMER, "second", 2);
	assert_int_equal(store_hist_put(&fx->st, txn, "a\x01", 0, &h), 0);
	assert_int_equal(store_hist_get(&fx->st, txn, "a", 256, &got), 0);
	assert_string_equal(got.text, "first");
	hist_rec_release(&got);
	assert_int_equal(store_hist_get(&fx->st, txn, "a\x01", 0, &got), 0);
	assert_string_equal(got.text, "second");
	hist_rec_release(&got);
	mdb_txn_abort(txn);
}

static void test_pend_fifo(void **state)
{
	struct fixture *fx = *state;
	struct conv_rec c;
	struct hist_rec h, got;
	memset(&c, 0, sizeof(c));
	MDB_txn *txn = begin(fx, false);

	assert_int_equal(store_pend_pop(&fx->st, txn, KEY, &c, &got), MDB_NOTFOUND);
	assert_null(got.text);

	static const char *const texts[] = { "one", "two", "three" };
	for (int i = 0; i < 3; i++) {
		make_hist(&h, ROLE_CUSTOMER, texts[i], 100 + (uint64_t)i);
		h.sid = "SMx";
		assert_int_equal(store_pend_push(&fx->st, txn, KEY, &c, &h), 0);
		assert_true(c.pend_in == (uint64_t)i + 1);
	}
	assert_int_equal(store_conv_put(&fx->st, txn, KEY, &c), 0);
	commit(txn);

	/* pop across transactions with the conv record carried in LMDB */
	txn = begin(fx, false);
	assert_int_equal(store_conv_get(&fx->st, txn, KEY, &c), 0);
	assert_int_equal(store_pend_pop(&fx->st, txn, KEY, &c, &got), 0);
	assert_string_equal(got.text, "one");
	assert_true(got.ts == 100);
	assert_string_equal(got.sid, "SMx");
	assert_true(c.pend_out == 1);
	hist_rec_release(&got);
	/* a push between pops goes to the back */
	make_hist(&h, ROLE_CUSTOMER, "four", 103);
	assert_int_equal(store_pend_push(&fx->st, txn, KEY, &c, &h), 0);
	for (int i = 1; i < 4; i++) {
		assert_int_equal(store_pend_pop(&fx->st, txn, KEY, &c, &got), 0);
		assert_string_equal(got.text, i == 3 ? "four" : texts[i]);
		hist_rec_release(&got);
	}
	assert_true(c.pend_out == 4);
	assert_true(c.pend_in == 4);
	assert_int_equal(store_pend_pop(&fx->st, txn, KEY, &c, &got), MDB_NOTFOUND);
	assert_true(c.pend_out == 4);
	conv_rec_release(&c);
	commit(txn);
}

static void test_pend_pop_deletes(void **state)
{
	struct fixture *fx = *state;
	struct conv_rec c, stale;
	struct hist_rec h, got;
	memset(&c, 0, sizeof(c));
	MDB_txn *txn = begin(fx, false);
	make_hist(&h, ROLE_CUSTOMER, "only", 1);
	assert_int_equal(store_pend_push(&fx->st, txn, KEY, &c, &h), 0);
	stale = c; /* a copy that did not see the pop */
	assert_int_equal(store_pend_pop(&fx->st, txn, KEY, &c, &got), 0);
	hist_rec_release(&got);
	/* the record is gone: popping with the stale counters finds nothing */
	assert_int_equal(store_pend_pop(&fx->st, txn, KEY, &stale, &got), MDB_NOTFOUND);
	assert_true(stale.pend_out == 0);
	mdb_txn_abort(txn);
}

static void test_seen(void **state)
{
	struct fixture *fx = *state;
	MDB_txn *txn = begin(fx, false);
	assert_int_equal(store_seen_get(&fx->st, txn, "SM0001"), MDB_NOTFOUND);
	assert_int_equal(store_seen_put(&fx->st, txn, "SM0001", 1700000000000ull), 0);
	assert_int_equal(store_seen_get(&fx->st, txn, "SM0001"), 0);
	assert_int_equal(store_seen_get(&fx->st, txn, "SM0002"), MDB_NOTFOUND);
	assert_int_equal(store_seen_get(&fx->st, txn, "SM000"), MDB_NOTFOUND);
	/* putting again is fine */
	assert_int_equal(store_seen_put(&fx->st, txn, "SM0001", 1700000000001ull), 0);
	commit(txn);
	txn = begin(fx, true);
	assert_int_equal(store_seen_get(&fx->st, txn, "SM0001"), 0);
	mdb_txn_abort(txn);
}

/* Pruning in small steps: old entries go, new ones stay, the cursor goes on
 * where it stopped and ends with NULL. */
static void test_seen_prune(void **state)
{
	struct fixture *fx = *state;
	char sid[32];
	MDB_txn *txn = begin(fx, false);
	for (int i = 0; i < 300; i++) {
		snprintf(sid, sizeof(sid), "SM%04d", i);
		/* every third is recent */
		assert_int_equal(store_seen_put(&fx->st, txn, sid, i % 3 ? 1000 : 9000), 0);
	}
	commit(txn);
	char *cursor = NULL;
	size_t total = 0, steps = 0, deleted;
	do {
		txn = begin(fx, false);
		assert_int_equal(store_seen_prune(&fx->st, txn, &cursor, 7, 5000, &deleted), 0);
		commit(txn);
		total += deleted;
		steps++;
		assert_true(steps < 100);
	} while (cursor);
	assert_int_equal(total, 200);
	txn = begin(fx, true);
	for (int i = 0; i < 300; i++) {
		snprintf(sid, sizeof(sid), "SM%04d", i);
		assert_int_equal(store_seen_get(&fx->st, txn, sid), i % 3 ? MDB_NOTFOUND : 0);
	}
	mdb_txn_abort(txn);
	/* A second pass finds nothing more; an empty table is fine too. */
	txn = begin(fx, false);
	assert_int_equal(store_seen_prune(&fx->st, txn, &cursor, 1000, 5000, &deleted), 0);
	assert_int_equal(deleted, 0);
	assert_null(cursor);
	assert_int_equal(store_seen_prune(&fx->st, txn, &cursor, 1000, 100000, &deleted), 0);
	assert_int_equal(deleted, 100);
	assert_int_equal(store_seen_prune(&fx->st, txn, &cursor, 1000, 100000, &deleted), 0);
	assert_int_equal(deleted, 0);
	assert_null(cursor);
	mdb_txn_abort(txn);
}

static void test_seen_aborted_txn(void **state)
{
	struct fixture *fx = *state;
	MDB_txn *txn = begin(fx, false);
	assert_int_equal(store_seen_put(&fx->st, txn, "SMabort", 1), 0);
	mdb_txn_abort(txn);
	txn = begin(fx, true);
	assert_int_equal(store_seen_get(&fx->st, txn, "SMabort"), MDB_NOTFOUND);
	mdb_txn_abort(txn);
}

static void test_jobs(void **state)
{
	struct fixture *fx = *state;
	struct job_rec j, got;
	uint64_t id1 = 0, id2 = 0, id3 = 0;

	MDB_txn *txn = begin(fx, false);
	memset(&j, 0, sizeof(j));
	j.kind = JOB_AI;
	j.conv = KEY;
	j.created = 5;
	j.upto = 7;
	assert_int_equal(store_job_add(&fx->st, txn, &j, &id1), 0);
	fill_job_send(&j);
	assert_int_equal(store_job_add(&fx->st, txn, &j, &id2), 0);
	commit(txn);

	txn = begin(fx, false);
	assert_int_equal(store_job_add(&fx->st, txn, &j, &id3), 0);
	assert_true(id1 >= 1);
	assert_true(id2 > id1);
	assert_true(id3 > id2);

	assert_int_equal(store_job_get(&fx->st, txn, id1, &got), 0);
	assert_int_equal(got.kind, JOB_AI);
	assert_string_equal(got.conv, KEY);
	assert_true(got.created == 5);
	assert_true(got.upto == 7);
	assert_null(got.to);
	assert_null(got.body);
	assert_true(got.attempts == 0);
	job_rec_release(&got);

	assert_int_equal(store_job_get(&fx->st, txn, id2, &got), 0);
	assert_job_send(&got);
	job_rec_release(&got);

	/* put replaces */
	fill_job_send(&j);
	j.attempts = 4;
	assert_int_equal(store_job_put(&fx->st, txn, id2, &j), 0);
	assert_int_equal(store_job_get(&fx->st, txn, id2, &got), 0);
	assert_true(got.attempts == 4);
	job_rec_release(&got);

	/* del */
	assert_int_equal(store_job_del(&fx->st, txn, id1), 0);
	assert_int_equal(store_job_get(&fx->st, txn, id1, &got), MDB_NOTFOUND);
	assert_null(got.conv);
	assert_int_equal(store_job_del(&fx->st, txn, id1), MDB_NOTFOUND);
	assert_int_equal(store_job_get(&fx->st, txn, 123456, &got), MDB_NOTFOUND);
	commit(txn);

	/* ids keep increasing after a delete: never reused */
	txn = begin(fx, false);
	uint64_t id4 = 0;
	assert_int_equal(store_job_add(&fx->st, txn, &j, &id4), 0);
	assert_true(id4 > id3);
	commit(txn);
}

static void test_job_flex(void **state)
{
	struct fixture *fx = *state;
	struct job_rec j, got;
	uint64_t id = 0;
	memset(&j, 0, sizeof(j));
	j.kind = JOB_FLEX;
	j.conv = KEY;
	j.created = 11;
	j.upto = 9;
	j.hfrom = 3;
	j.op = "handoff";
	j.trigger = "rule";
	j.reason = "matched 'humano'";
	j.summary = "wants a person";
	j.attempts = 1;
	MDB_txn *txn = begin(fx, false);
	assert_int_equal(store_job_add(&fx->st, txn, &j, &id), 0);
	commit(txn);
	txn = begin(fx, true);
	assert_int_equal(store_job_get(&fx->st, txn, id, &got), 0);
	assert_int_equal(got.kind, JOB_FLEX);
	assert_string_equal(got.conv, KEY);
	assert_true(got.created == 11);
	assert_true(got.upto == 9);
	assert_true(got.hfrom == 3);
	assert_true(got.hseq == 0);
	assert_string_equal(got.op, "handoff");
	assert_string_equal(got.trigger, "rule");
	assert_string_equal(got.reason, "matched 'humano'");
	assert_string_equal(got.summary, "wants a person");
	assert_null(got.to);
	assert_true(got.attempts == 1);
	job_rec_release(&got);
	assert_null(got.op);
	mdb_txn_abort(txn);
}

static void test_persistence(void **state)
{
	struct fixture *fx = *state;
	struct conv_rec c, gotc;
	struct hist_rec h, goth;
	struct job_rec j, gotj;
	uint64_t id = 0, id_after = 0;

	MDB_txn *txn = begin(fx, false);
	fill_conv(&c);
	c.seq = 0;
	make_hist(&h, ROLE_CUSTOMER, "persist me", 42);
	assert_int_equal(store_hist_append(&fx->st, txn, KEY, &c, &h), 0);
	c.seq = 17; /* back to what assert_conv expects */
	assert_int_equal(store_conv_put(&fx->st, txn, KEY, &c), 0);
	assert_int_equal(store_seen_put(&fx->st, txn, "SMpersist", 9), 0);
	fill_job_send(&j);
	assert_int_equal(store_job_add(&fx->st, txn, &j, &id), 0);
	commit(txn);

	fx_close(fx);
	fx_open(fx);

	txn = begin(fx, false);
	assert_int_equal(store_conv_get(&fx->st, txn, KEY, &gotc), 0);
	assert_conv(&gotc);
	conv_rec_release(&gotc);
	assert_int_equal(store_hist_get(&fx->st, txn, KEY, 1, &goth), 0);
	assert_string_equal(goth.text, "persist me");
	assert_true(goth.ts == 42);
	hist_rec_release(&goth);
	assert_int_equal(store_seen_get(&fx->st, txn, "SMpersist"), 0);
	assert_int_equal(store_job_get(&fx->st, txn, id, &gotj), 0);
	assert_job_send(&gotj);
	job_rec_release(&gotj);
	/* the job id counter persists too */
	assert_int_equal(store_job_add(&fx->st, txn, &j, &id_after), 0);
	assert_true(id_after > id);
	commit(txn);
}

static void test_uncommitted_not_persisted(void **state)
{
	struct fixture *fx = *state;
	struct conv_rec c, got;
	fill_conv(&c);
	MDB_txn *txn = begin(fx, false);
	assert_int_equal(store_conv_put(&fx->st, txn, "ghost", &c), 0);
	mdb_txn_abort(txn);
	fx_close(fx);
	fx_open(fx);
	txn = begin(fx, true);
	assert_int_equal(store_conv_get(&fx->st, txn, "ghost", &got), MDB_NOTFOUND);
	mdb_txn_abort(txn);
}

static void test_open_bad_dir(void **state)
{
	(void)state;
	struct store st;
	/* parent does not exist: kv_open cannot create the directory */
	assert_int_equal(store_open(&st, "/nonexistent-baton-dir/sub/state", 16, false), -1);
	assert_null(st.env);
}

/* One conversation with history (sent SIDs), pending turns, timeline,
 * index entries, modes entry and a seen SID. */
static void fill_erasable(struct fixture *fx, MDB_txn *txn, const char *key, const char *tag)
{
	struct conv_rec c;
	struct hist_rec h;
	char sid[64], ch[64], wt[64];
	memset(&c, 0, sizeof(c));
	c.mode = MODE_HUMAN;
	make_hist(&h, ROLE_CUSTOMER, "my card is 4111", 1);
	assert_int_equal(store_hist_append(&fx->st, txn, key, &c, &h), 0);
	make_hist(&h, ROLE_AI, "ok", 2);
	snprintf(sid, sizeof(sid), "SMa%s,SMb%s", tag, tag);
	h.msid = sid;
	assert_int_equal(store_hist_append(&fx->st, txn, key, &c, &h), 0);
	make_hist(&h, ROLE_CUSTOMER, "waiting", 3);
	assert_int_equal(store_pend_push(&fx->st, txn, key, &c, &h), 0);
	assert_int_equal(store_tl_add(&fx->st, txn, key, &c, "escalated", "rule: x"), 0);
	assert_int_equal(store_tl_add(&fx->st, txn, key, &c, "task_created", "WT"), 0);
	snprintf(sid, sizeof(sid), "SMa%s", tag);
	assert_int_equal(store_idx_put(&fx->st, txn, "sm", sid, key), 0);
	snprintf(sid, sizeof(sid), "SMb%s", tag);
	assert_int_equal(store_idx_put(&fx->st, txn, "sm", sid, key), 0);
	snprintf(ch, sizeof(ch), "CH%s", tag);
	snprintf(wt, sizeof(wt), "WT%s", tag);
	assert_int_equal(store_idx_put(&fx->st, txn, "ch", ch, key), 0);
	assert_int_equal(store_idx_put(&fx->st, txn, "wt", wt, key), 0);
	snprintf(ch, sizeof(ch), "CHold%s", tag);
	assert_int_equal(store_idx_put(&fx->st, txn, "ch", ch, key), 0);
	snprintf(sid, sizeof(sid), "SMin%s", tag);
	assert_int_equal(store_seen_put(&fx->st, txn, sid, 5), 0);
	assert_int_equal(store_modes_sync(&fx->st, txn, key, &c), 0);
	assert_int_equal(store_conv_put(&fx->st, txn, key, &c), 0);
}

static void test_conv_erase(void **state)
{
	struct fixture *fx = *state;
	struct store_erased er;
	struct conv_rec c;
	struct hist_rec h;
	struct tl_rec t;
	char *k = NULL;
	/* "A|B" must not take "A|BC"'s records, nor the other way round. */
	const char *gone = "whatsapp:+1555|whatsapp:+1", *kept = "whatsapp:+1555|whatsapp:+12";
	MDB_txn *txn = begin(fx, false);
	fill_erasable(fx, txn, gone, "1");
	fill_erasable(fx, txn, kept, "2");
	commit(txn);

	txn = begin(fx, false);
	assert_int_equal(store_conv_erase(&fx->st, txn, gone, &er), 0);
	assert_true(er.hist == 2 && er.pend == 1 && er.tl == 2 && er.idx == 5);
	assert_true(er.modes == 1 && er.conv == 1);
	commit(txn);

	txn = begin(fx, true);
	assert_int_equal(store_conv_get(&fx->st, txn, gone, &c), MDB_NOTFOUND);
	assert_int_equal(store_hist_get(&fx->st, txn, gone, 1, &h), MDB_NOTFOUND);
	assert_int_equal(store_pend_get(&fx->st, txn, gone, 1, &h), MDB_NOTFOUND);
	assert_int_equal(store_tl_get(&fx->st, txn, gone, 1, &t), MDB_NOTFOUND);
	assert_int_equal(store_idx_get(&fx->st, txn, "sm", "SMa1", &k), MDB_NOTFOUND);
	assert_int_equal(store_idx_get(&fx->st, txn, "ch", "CHold1", &k), MDB_NOTFOUND);
	assert_int_equal(store_idx_get(&fx->st, txn, "wt", "WT1", &k), MDB_NOTFOUND);
	/* The dedupe entry stays: a Twilio id and a time. */
	assert_int_equal(store_seen_get(&fx->st, txn, "SMin1"), 0);
	/* The other conversation is whole. */
	assert_int_equal(store_conv_get(&fx->st, txn, kept, &c), 0);
	assert_true(c.seq == 2 && c.tl_seq == 2);
	conv_rec_release(&c);
	assert_int_equal(store_hist_get(&fx->st, txn, kept, 2, &h), 0);
	hist_rec_release(&h);
	assert_int_equal(store_pend_get(&fx->st, txn, kept, 1, &h), 0);
	hist_rec_release(&h);
	assert_int_equal(store_tl_get(&fx->st, txn, kept, 2, &t), 0);
	tl_rec_release(&t);
	const char *idx[][2] = { { "sm", "SMa2" }, { "sm", "SMb2" }, { "ch", "CH2" }, { "ch", "CHold2" },
				 { "wt", "WT2" } };
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(store_idx_get(&fx->st, txn, idx[i][0], idx[i][1], &k), 0);
		assert_string_equal(k, kept);
		free(k);
	}
	mdb_txn_abort(txn);

	/* Erasing what is not there: nothing, MDB_NOTFOUND for the record. */
	txn = begin(fx, false);
	assert_int_equal(store_conv_erase(&fx->st, txn, gone, &er), MDB_NOTFOUND);
	assert_true(er.hist == 0 && er.idx == 0 && er.conv == 0);
	mdb_txn_abort(txn);
}

static void test_audit(void **state)
{
	struct fixture *fx = *state;
	struct audit_rec a = { .ts = 1000, .conv = "whatsapp:+*******0100|whatsapp:+1", .mode = "human",
			       .reason = "ticket 7", .hist = 12, .tl = 3, .idx = 4, .jobs = 1,
			       .flex_closed = true }, got;
	MDB_txn *txn = begin(fx, false);
	assert_int_equal(store_audit_add(&fx->st, txn, &a), 0);
	a.hist = 13;
	assert_int_equal(store_audit_add(&fx->st, txn, &a), 0); /* same ms: the next one */
	commit(txn);
	txn = begin(fx, true);
	MDB_cursor *cur;
	MDB_val k, v;
	assert_int_equal(mdb_cursor_open(txn, fx->st.audit, &cur), 0);
	assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
	assert_int_equal(store_audit_decode(&v, &got), 0);
	assert_true(got.ts == 1000 && got.hist == 12 && got.tl == 3 && got.idx == 4 && got.jobs == 1);
	assert_string_equal(got.conv, a.conv);
	assert_string_equal(got.mode, "human");
	assert_string_equal(got.reason, "ticket 7");
	assert_true(got.flex_closed);
	audit_rec_release(&got);
	assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_NEXT), 0);
	assert_int_equal(store_audit_decode(&v, &got), 0);
	assert_true(got.hist == 13);
	audit_rec_release(&got);
	assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_NEXT), MDB_NOTFOUND);
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
}

/* --- the recent index --- */

static void put_conv(struct fixture *fx, MDB_txn *txn, const char *key, enum conv_mode mode,
		     uint64_t at)
{
	struct conv_rec c;
	if (store_conv_get(&fx->st, txn, key, &c) != 0)
		memset(&c, 0, sizeof(c));
	c.mode = mode;
	c.created = c.created ? c.created : 1;
	c.updated = at;
	assert_int_equal(store_conv_put(&fx->st, txn, key, &c), 0);
	conv_rec_release(&c);
}

/* The keys of one mode, newest first, from before (at, key) (key NULL: the newest). */
static void walk(struct fixture *fx, MDB_txn *txn, enum conv_mode mode, uint64_t at,
		 const char *key, char *out, size_t len)
{
	struct store_recent it;
	uint64_t t;
	const char *k;
	size_t kl;
	out[0] = '\0';
	assert_int_equal(store_recent_open(&fx->st, txn, mode, at, key, &it), 0);
	while (store_recent_next(&it, &t, &k, &kl) == 0) {
		size_t n = strlen(out);
		snprintf(out + n, len - n, "%s%.*s@%llu", n ? " " : "", (int)kl, k,
			 (unsigned long long)t);
	}
	store_recent_close(&it);
}

static void test_recent_index(void **state)
{
	struct fixture *fx = *state;
	MDB_txn *txn;
	char got[512];
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, 0, &txn), 0);
	put_conv(fx, txn, "a|b", MODE_AI, 100);
	put_conv(fx, txn, "c|b", MODE_AI, 300);
	put_conv(fx, txn, "d|b", MODE_AI, 200);
	put_conv(fx, txn, "e|b", MODE_HUMAN, 250);
	put_conv(fx, txn, "f|b", MODE_AI, 200);
	walk(fx, txn, MODE_AI, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "c|b@300 f|b@200 d|b@200 a|b@100");
	/* A page goes on strictly after the last entry of the one before. */
	walk(fx, txn, MODE_AI, 200, "f|b", got, sizeof(got));
	assert_string_equal(got, "d|b@200 a|b@100");
	walk(fx, txn, MODE_AI, 200, "d|b", got, sizeof(got));
	assert_string_equal(got, "a|b@100");
	walk(fx, txn, MODE_HUMAN, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "e|b@250");
	walk(fx, txn, MODE_ESCALATING, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "");
	/* A write moves the entry: new time, new mode; nothing stays behind. */
	put_conv(fx, txn, "a|b", MODE_AI, 400);
	put_conv(fx, txn, "c|b", MODE_ESCALATING, 500);
	walk(fx, txn, MODE_AI, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "a|b@400 f|b@200 d|b@200");
	walk(fx, txn, MODE_ESCALATING, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "c|b@500");
	/* A record written without being read first still moves its entry. */
	struct conv_rec fresh;
	memset(&fresh, 0, sizeof(fresh));
	fresh.mode = MODE_HUMAN;
	fresh.updated = 600;
	assert_int_equal(store_conv_put(&fx->st, txn, "d|b", &fresh), 0);
	walk(fx, txn, MODE_AI, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "a|b@400 f|b@200");
	walk(fx, txn, MODE_HUMAN, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "d|b@600 e|b@250");
	/* Erasing a conversation takes its entry. */
	struct store_erased er;
	assert_int_equal(store_conv_erase(&fx->st, txn, "e|b", &er), 0);
	walk(fx, txn, MODE_HUMAN, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "d|b@600");
	assert_int_equal(mdb_txn_commit(txn), 0);
	MDB_stat ms;
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, MDB_RDONLY, &txn), 0);
	assert_int_equal(mdb_stat(txn, fx->st.recent, &ms), 0);
	assert_int_equal(ms.ms_entries, 4); /* one per conversation left */
	uint64_t counts[3];
	assert_int_equal(store_mode_counts(&fx->st, txn, counts), 0);
	assert_int_equal(counts[MODE_AI], 2);
	assert_int_equal(counts[MODE_ESCALATING], 1);
	assert_int_equal(counts[MODE_HUMAN], 1);
	mdb_txn_abort(txn);
}

/* A state written by a router without the index gets it on the next open. */
static void test_recent_built_for_old_state(void **state)
{
	struct fixture *fx = *state;
	MDB_txn *txn;
	char got[512];
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, 0, &txn), 0);
	put_conv(fx, txn, "a|b", MODE_AI, 100);
	put_conv(fx, txn, "c|b", MODE_HUMAN, 300);
	put_conv(fx, txn, "d|b", MODE_AI, 200);
	/* What an old router leaves: no index, records that do not know of one. */
	assert_int_equal(mdb_drop(txn, fx->st.recent, 0), 0);
	MDB_val mk = { .mv_size = strlen("recent_index"), .mv_data = "recent_index" };
	assert_int_equal(mdb_del(txn, fx->st.meta, &mk, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	fx_close(fx);
	fx_open(fx);
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, MDB_RDONLY, &txn), 0);
	walk(fx, txn, MODE_AI, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "d|b@200 a|b@100");
	walk(fx, txn, MODE_HUMAN, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "c|b@300");
	uint64_t counts[3];
	assert_int_equal(store_mode_counts(&fx->st, txn, counts), 0);
	assert_int_equal(counts[MODE_AI], 2);
	assert_int_equal(counts[MODE_HUMAN], 1);
	mdb_txn_abort(txn);
	/* And keeps it from then on: a later write moves the rebuilt entry. */
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, 0, &txn), 0);
	put_conv(fx, txn, "a|b", MODE_AI, 250);
	walk(fx, txn, MODE_AI, 0, NULL, got, sizeof(got));
	assert_string_equal(got, "a|b@250 d|b@200");
	assert_int_equal(mdb_txn_commit(txn), 0);
}

/* With a journal attached, every write is recorded: compacted, the last write
 * of each key, deletes included; nothing without one. */
static void test_journal_records_every_write(void **state)
{
	struct fixture *fx = *state;
	struct journal j = { 0 };
	MDB_txn *txn;
	struct conv_rec c;
	memset(&c, 0, sizeof(c));
	c.updated = 5;
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, 0, &txn), 0);
	assert_int_equal(store_seen_put(&fx->st, txn, "SMbefore", 1), 0);
	fx->st.journal = &j;
	assert_int_equal(store_conv_put(&fx->st, txn, "a|b", &c), 0);
	c.updated = 6;
	assert_int_equal(store_conv_put(&fx->st, txn, "a|b", &c), 0);
	assert_int_equal(store_seen_put(&fx->st, txn, "SM1", 1), 0);
	size_t prunedn = 0;
	char *cursor = NULL;
	assert_int_equal(store_seen_prune(&fx->st, txn, &cursor, 10, 2, &prunedn), 0);
	assert_int_equal(prunedn, 2);
	free(cursor);
	fx->st.journal = NULL;
	assert_int_equal(store_seen_put(&fx->st, txn, "SMafter", 1), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	size_t raw = j.n;
	journal_compact(&j);
	assert_true(raw > j.n);
	/* conv a|b (the last value), recent entry moved (a delete and a put),
	 * the count, the two seen deletes: and no SMafter. */
	int conv = 0, seen_del = 0, recent_put = 0, recent_del = 0;
	for (size_t i = 0; i < j.n; i++) {
		struct journal_entry *e = &j.e[i];
		if (i)
			assert_true(j.e[i - 1].db <= e->db);
		if (e->db == STORE_DB_CONV) {
			conv++;
			MDB_val v = { .mv_size = e->vlen, .mv_data = e->val };
			struct conv_rec got;
			assert_int_equal(store_conv_decode(&v, &got), 0);
			assert_int_equal(got.updated, 6);
			conv_rec_release(&got);
		} else if (e->db == STORE_DB_SEEN) {
			assert_true(e->del);
			assert_false(e->klen == 7 && !memcmp(e->key, "SMafter", 7));
			seen_del++;
		} else if (e->db == STORE_DB_RECENT) {
			if (e->del)
				recent_del++;
			else
				recent_put++;
		}
	}
	assert_int_equal(conv, 1);
	assert_int_equal(seen_del, 2);
	assert_int_equal(recent_put, 1);
	assert_int_equal(recent_del, 1);
	journal_release(&j);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_conv_key),
		T(test_conv_roundtrip),
		T(test_conv_absent_strings_and_overwrite),
		T(test_conv_missing),
		T(test_conv_find_and_parties),
		T(test_hist_append_and_get),
		T(test_hist_keys_do_not_collide),
		T(test_pend_fifo),
		T(test_pend_pop_deletes),
		T(test_seen),
		T(test_seen_prune),
		T(test_seen_aborted_txn),
		T(test_jobs),
		T(test_job_flex),
		T(test_persistence),
		T(test_uncommitted_not_persisted),
		T(test_conv_erase),
		T(test_audit),
		T(test_recent_index),
		T(test_recent_built_for_old_state),
		T(test_journal_records_every_write),
		cmocka_unit_test(test_open_bad_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
