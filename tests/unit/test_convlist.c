/*
 * test_convlist — state/convkey, convview and convlist: keys split and
 * join; a record renders to the documented schema (masked unless clear,
 * state from the stretch's times, nulls for what never happened); pages
 * walk every conversation once, newest first, across modes, with tokens
 * that survive writes between pages; since cuts the walk; search by name
 * (case and accents folded) and by digits; the queue is longest waiting
 * first; a search stops at max_reads and says so; bad tokens are refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convkey.h"
#include "convlist.h"
#include "convview.h"
#include "store.h"

struct fixture {
	char dir[64];
	struct store st;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	strcpy(fx->dir, "/tmp/baton-test-convlist-XXXXXX");
	if (!mkdtemp(fx->dir) || store_open(&fx->st, fx->dir, 16, false) < 0) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	store_close(&fx->st);
	DIR *d = opendir(fx->dir);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		char p[512];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", fx->dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static void test_convkey(void **state)
{
	(void)state;
	struct convkey k;
	assert_int_equal(convkey_split("whatsapp:+5511|whatsapp:+1415", &k), 0);
	assert_string_equal(k.customer, "whatsapp:+5511");
	assert_string_equal(k.business, "whatsapp:+1415");
	convkey_release(&k);
	assert_int_equal(convkey_split("whatsapp:+5511", &k), 0);
	assert_null(k.business);
	convkey_release(&k);
	assert_int_equal(convkey_split("|whatsapp:+1415", &k), -1);
	assert_int_equal(convkey_split("whatsapp:+5511|", &k), -1);
	assert_int_equal(convkey_split("", &k), -1);
	char *j = convkey_join("a", "b");
	assert_string_equal(j, "a|b");
	assert_string_equal(convkey_business(j), "b");
	assert_int_equal(convkey_customer_len(j), 1);
	free(j);
	assert_null(convkey_business("lonely"));
	assert_int_equal(convkey_customer_len("lonely"), 6);
}

static void test_convview_record(void **state)
{
	(void)state;
	struct conv_rec c;
	memset(&c, 0, sizeof(c));
	c.mode = MODE_HUMAN;
	c.created = 1000;
	c.esc_at = 2000;
	c.escalations = 1;
	c.esc_trigger = "tool";
	c.first_agent_at = 5000;
	c.accepted_at = 4000;
	c.agent = "marta";
	c.flex_ch = "CH1";
	c.name = "Ana";
	json_t *o = convview_record("whatsapp:+5511988881111|whatsapp:+14155238886", &c, 0);
	assert_string_equal(json_string_value(json_object_get(o, "customer")),
			    "whatsapp:+*********1111");
	assert_string_equal(json_string_value(json_object_get(o, "state")), "with_agent");
	assert_string_equal(json_string_value(json_object_get(o, "business")),
			    "whatsapp:+14155238886");
	json_t *e = json_object_get(o, "escalation");
	assert_int_equal(json_integer_value(json_object_get(e, "agent_since_ms")), 4000);
	assert_int_equal(json_integer_value(json_object_get(e, "waited_ms")), 2000);
	assert_string_equal(json_string_value(json_object_get(json_object_get(o, "flex"),
							      "conversation")), "CH1");
	assert_true(json_is_null(json_object_get(o, "window_closed_ms")));
	assert_true(json_is_null(json_object_get(o, "last_error")));
	json_decref(o);
	/* Clear for exports; an AI conversation never escalated has no escalation nor flex. */
	memset(&c, 0, sizeof(c));
	c.window_closed = 7;
	o = convview_record("whatsapp:+5511988881111|b", &c, CONVVIEW_CLEAR);
	assert_string_equal(json_string_value(json_object_get(o, "customer")),
			    "whatsapp:+5511988881111");
	assert_string_equal(json_string_value(json_object_get(o, "state")), "ai");
	assert_true(json_is_null(json_object_get(o, "escalation")));
	assert_true(json_is_null(json_object_get(o, "flex")));
	assert_int_equal(json_integer_value(json_object_get(o, "window_closed_ms")), 7);
	json_decref(o);
	/* Waiting: escalated, nobody yet. */
	memset(&c, 0, sizeof(c));
	c.mode = MODE_ESCALATING;
	c.esc_at = 10;
	o = convview_record("x|y", &c, 0);
	assert_string_equal(json_string_value(json_object_get(o, "state")), "waiting");
	json_decref(o);
}

/* n conversations "whatsapp:+55119000000NN|biz", activity 1000 + 10 * i. */
static void fill(struct fixture *fx, int n)
{
	MDB_txn *txn;
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, 0, &txn), 0);
	for (int i = 0; i < n; i++) {
		char key[64], name[32];
		struct conv_rec c;
		memset(&c, 0, sizeof(c));
		snprintf(key, sizeof(key), "whatsapp:+55119000000%02d|biz", i);
		snprintf(name, sizeof(name), i == 7 ? "José Núñez" : "Cliente %d", i);
		c.mode = i % 5 == 0 ? MODE_HUMAN : i % 7 == 0 ? MODE_ESCALATING : MODE_AI;
		c.created = 1;
		c.updated = 1000 + 10 * (uint64_t)i;
		c.esc_at = c.mode != MODE_AI ? 5000 - (uint64_t)i : 0;
		c.name = name;
		assert_int_equal(store_conv_put(&fx->st, txn, key, &c), 0);
		if (c.mode != MODE_AI)
			assert_int_equal(store_modes_sync(&fx->st, txn, key, &c), 0);
		c.name = NULL;
		conv_rec_release(&c);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
}

static int key_index(const char *key)
{
	return atoi(key + strlen("whatsapp:+55119000000"));
}

static void test_pages_walk_everything_once(void **state)
{
	struct fixture *fx = *state;
	MDB_txn *txn;
	fill(fx, 40);
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, MDB_RDONLY, &txn), 0);
	struct convlist_query q = { .filter = CONVLIST_ALL, .limit = 7 };
	char *after = NULL;
	int expect = 39, pages = 0;
	for (;;) {
		struct convlist l;
		q.after = after;
		assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
		assert_int_equal(l.counts[MODE_AI] + l.counts[MODE_ESCALATING] + l.counts[MODE_HUMAN], 40);
		for (size_t i = 0; i < l.n; i++)
			assert_int_equal(key_index(l.rows[i].key), expect--);
		pages++;
		free(after);
		after = l.next ? strdup(l.next) : NULL;
		assert_true(l.n == 7 || !l.next);
		convlist_release(&l);
		if (!after)
			break;
	}
	assert_int_equal(expect, -1);
	assert_int_equal(pages, 6); /* 5 full pages and 5 rows */
	/* One mode; since stops the walk. */
	struct convlist l;
	q = (struct convlist_query){ .filter = CONVLIST_HUMAN, .limit = 100 };
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
	assert_int_equal(l.n, 8);
	assert_int_equal(key_index(l.rows[0].key), 35);
	assert_null(l.next);
	convlist_release(&l);
	q = (struct convlist_query){ .filter = CONVLIST_ALL, .limit = 100, .since = 1000 + 10 * 30 };
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
	assert_int_equal(l.n, 10);
	assert_int_equal(l.reads, 10);
	convlist_release(&l);
	/* A bad token. */
	q = (struct convlist_query){ .filter = CONVLIST_ALL, .limit = 5, .after = "12-zz" };
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), EINVAL);
	convlist_release(&l);
	q.after = "nonsense";
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), EINVAL);
	convlist_release(&l);
	mdb_txn_abort(txn);
}

static void test_pages_survive_writes(void **state)
{
	struct fixture *fx = *state;
	MDB_txn *txn;
	fill(fx, 10);
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, MDB_RDONLY, &txn), 0);
	struct convlist_query q = { .filter = CONVLIST_ALL, .limit = 4 };
	struct convlist l;
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
	char *after = strdup(l.next);
	convlist_release(&l);
	mdb_txn_abort(txn);
	/* Conversation 2 (on a later page) becomes the newest; 8 (seen) too. */
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, 0, &txn), 0);
	const char *move[] = { "whatsapp:+5511900000002|biz", "whatsapp:+5511900000008|biz" };
	for (int i = 0; i < 2; i++) {
		struct conv_rec c;
		assert_int_equal(store_conv_get(&fx->st, txn, move[i], &c), 0);
		c.updated = 99999;
		assert_int_equal(store_conv_put(&fx->st, txn, move[i], &c), 0);
		conv_rec_release(&c);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, MDB_RDONLY, &txn), 0);
	q.after = after;
	q.limit = 100;
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
	/* The rest after the first page: 5, 4, 3, 1, 0 (2 moved to the front). */
	assert_int_equal(l.n, 5);
	int want[] = { 5, 4, 3, 1, 0 };
	for (size_t i = 0; i < l.n; i++)
		assert_int_equal(key_index(l.rows[i].key), want[i]);
	convlist_release(&l);
	free(after);
	mdb_txn_abort(txn);
}

static void test_search_and_queue(void **state)
{
	struct fixture *fx = *state;
	MDB_txn *txn;
	struct convlist l;
	fill(fx, 40);
	assert_int_equal(mdb_txn_begin(fx->st.env, NULL, MDB_RDONLY, &txn), 0);
	struct convlist_query q = { .filter = CONVLIST_ALL, .limit = 50, .q = "  jose nunez " };
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(key_index(l.rows[0].key), 7);
	convlist_release(&l);
	q.q = "(11) 9000-00012";
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(key_index(l.rows[0].key), 12);
	convlist_release(&l);
	/* A search that may look at 10 records: partial, and the token goes on. */
	q.q = "cliente";
	q.max_reads = 10;
	q.limit = 50;
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
	assert_true(l.partial);
	assert_non_null(l.next);
	assert_int_equal(l.reads, 10);
	assert_int_equal(l.n, 10); /* 39..30: none is José */
	char *after = strdup(l.next);
	convlist_release(&l);
	q.after = after;
	q.max_reads = 0;
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
	assert_false(l.partial);
	assert_null(l.next);
	assert_int_equal(l.n, 29); /* 29..0 without 7 */
	convlist_release(&l);
	free(after);
	char big[CONVLIST_QUERY_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	q = (struct convlist_query){ .filter = CONVLIST_ALL, .limit = 5, .q = big };
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), EINVAL);
	convlist_release(&l);
	/* The queue: escalating and human, longest waiting (smallest esc_at) first. */
	q = (struct convlist_query){ .filter = CONVLIST_QUEUE, .limit = 100 };
	assert_int_equal(convlist_page(&fx->st, txn, &q, &l), 0);
	assert_int_equal(l.n, 8 + 4); /* human: multiples of 5; escalating: 7, 14, 21, 28 */
	assert_int_equal(key_index(l.rows[0].key), 35);
	assert_int_equal(key_index(l.rows[l.n - 1].key), 0);
	assert_int_equal(l.counts[MODE_ESCALATING], 4);
	assert_int_equal(l.counts[MODE_HUMAN], 8);
	assert_int_equal(l.counts[MODE_AI], 28);
	convlist_release(&l);
	mdb_txn_abort(txn);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_convkey),
		cmocka_unit_test(test_convview_record),
		T(test_pages_walk_everything_once),
		T(test_pages_survive_writes),
		T(test_search_and_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
