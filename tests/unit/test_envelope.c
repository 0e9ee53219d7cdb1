/*
 * test_envelope — common/envelope: msgpack encode/decode of every envelope
 * type, and rejection of hostile frames (truncated, trailing bytes, wrong
 * version/type, missing or mistyped fields, too many turns, bad roles).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

/* --- helpers --- */

static const char UTF8_TEXT[] = "Ol\xc3\xa1, caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
#define NAME_UTF8 "Ana Mar\xc3\xad" "a"

static void pk_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static void pk_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
	pk_str(pk, k);
	pk_str(pk, v);
}

static void pk_kv_uint(msgpack_packer *pk, const char *k, uint64_t v)
{
	pk_str(pk, k);
	msgpack_pack_uint64(pk, v);
}

/* Frame header shared by hand-built frames: v, t, id, ts (4 entries). */
static void pk_header(msgpack_packer *pk, uint64_t v, uint64_t t)
{
	pk_kv_uint(pk, "v", v);
	pk_kv_uint(pk, "t", t);
	pk_kv_uint(pk, "id", 7);
	pk_kv_uint(pk, "ts", 1000);
}

/* Decodes sb's bytes from an exactly sized heap copy (so ASan sees over-reads). */
static int decode_exact(const void *data, size_t len, struct envelope *env)
{
	char *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	if (len)
		memcpy(copy, data, len);
	int rc = env_decode(copy, len, env);
	free(copy);
	return rc;
}

static void assert_env_zero(const struct envelope *env)
{
	struct envelope zero;
	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(env, &zero, sizeof(zero));
}

/* Envelope of type t with every field of every type set. */
static void fill_all(struct envelope *e, enum env_type t)
{
	memset(e, 0, sizeof(*e));
	e->version = ENV_VERSION;
	e->type = t;
	e->id = 42;
	e->ts = 1700000000123ull;
	e->conv = strdup("whatsapp:+14155550100|whatsapp:+14155238886");
	e->sid = strdup("SM0123");
	e->from = strdup("whatsapp:+14155550100");
	e->to = strdup("whatsapp:+14155238886");
	e->body = strdup(UTF8_TEXT);
	e->name = strdup(NAME_UTF8);
	e->idem = strdup("idem-1");
	e->kind = strdup("ai");
	e->prompt = strdup("You are helpful.");
	e->text = strdup("Reply \xe2\x9c\x93");
	e->reason = strdup("wants a human");
	e->summary = strdup("customer asked for an agent");
	e->err = strdup("boom");
	e->op = strdup("handoff");
	e->trigger = strdup("rule");
	e->ch = strdup("CH0001");
	e->mb = strdup("MB0001");
	e->kd = strdup("KD0001");
	e->uo = strdup("UO0001");
	e->wt = strdup("WT0001");
	e->seq = 31;
	e->status = ST_RETRY;
	e->credit = 64;
	e->attempt = 0x2a00000007LL;
	e->reconcile = true;
	e->since = 1700000000000LL;
	e->exclude = strdup("SM01,SM02");
	e->claims = calloc(2, sizeof(*e->claims));
	e->claims[0] = (struct env_claim){ 7, 0x2a00000001ull };
	e->claims[1] = (struct env_claim){ UINT64_MAX, 3 };
	e->nclaims = 2;
	e->nmedia = 2;
	e->code = -21211;
	e->escalate = true;
	env_add_turn(e, ROLE_CUSTOMER, UTF8_TEXT, 1);
	env_add_turn_seq(e, ROLE_AI, "hello", 2, 42, "{\"type\":\"image\"}")->transcript = true;
	env_add_turn(e, ROLE_AGENT, "agent here", 3);
	env_add_turn(e, ROLE_SYSTEM, "note", UINT64_MAX);
}

/* Encodes e and decodes it into out; asserts both succeed. */
static void roundtrip(const struct envelope *e, struct envelope *out)
{
	char *buf = NULL;
	size_t len = 0;
	assert_int_equal(env_encode(e, &buf, &len), ENV_EOK);
	assert_non_null(buf);
	assert_true(len > 0);
	assert_int_equal(decode_exact(buf, len, out), ENV_EOK);
	free(buf);
	assert_int_equal(out->version, ENV_VERSION);
	assert_int_equal(out->type, e->type);
	assert_true(out->id == e->id);
	assert_true(out->ts == e->ts);
}

static void assert_str_eq(const char *got, const char *want)
{
	assert_non_null(got);
	assert_string_equal(got, want);
}

/* Re-packs the map in buf, leaving out key `drop` (if non-NULL) and
 * replacing the value of key `repl` with the object packed by `val`. */
typedef void (*pack_fn)(msgpack_packer *pk);

static void rewrite_frame(const char *buf, size_t len, const char *drop, const char *repl,
			  pack_fn val, msgpack_sbuffer *out)
{
	msgpack_unpacked up;
	size_t off = 0;
	msgpack_packer pk;

	msgpack_unpacked_init(&up);
	assert_int_equal(msgpack_unpack_next(&up, buf, len, &off), MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(up.data.type, MSGPACK_OBJECT_MAP);
	const msgpack_object_map *m = &up.data.via.map;
	uint32_t n = 0;
	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;
		if (drop && k->via.str.size == strlen(drop) &&
		    memcmp(k->via.str.ptr, drop, k->via.str.size) == 0)
			continue;
		n++;
	}
	msgpack_sbuffer_init(out);
	msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, n);
	for (uint32_t i = 0; i < m->size; i++) {
		const msgpack_object *k = &m->ptr[i].key;
		if (drop && k->via.str.size == strlen(drop) &&
		    memcmp(k->via.str.ptr, drop, k->via.str.size) == 0)
			continue;
		msgpack_pack_object(&pk, *k);
		if (repl && k->via.str.size == strlen(repl) &&
		    memcmp(k->via.str.ptr, repl, k->via.str.size) == 0)
			val(&pk);
		else
			msgpack_pack_object(&pk, m->ptr[i].val);
	}
	msgpack_unpacked_destroy(&up);
}

/* Encoded frame of a full envelope of type t (caller frees). */
static char *full_frame(enum env_type t, size_t *len)
{
	struct envelope e;
	char *buf = NULL;
	fill_all(&e, t);
	assert_int_equal(env_encode(&e, &buf, len), ENV_EOK);
	env_release(&e);
	return buf;
}

/* Decode of buf with `key` removed must give `want`, and leave env zeroed. */
static void expect_without(enum env_type t, const char *key, int want)
{
	size_t len;
	char *buf = full_frame(t, &len);
	msgpack_sbuffer sb;
	struct envelope env;

	rewrite_frame(buf, len, key, NULL, NULL, &sb);
	int rc = decode_exact(sb.data, sb.size, &env);
	if (rc != want)
		fail_msg("type %d without '%s': got %d (%s), want %d", t, key, rc,
			 env_strerror(rc), want);
	if (rc)
		assert_env_zero(&env);
	env_release(&env);
	msgpack_sbuffer_destroy(&sb);
	free(buf);
}

static void expect_replaced(enum env_type t, const char *key, pack_fn val, int want)
{
	size_t len;
	char *buf = full_frame(t, &len);
	msgpack_sbuffer sb;
	struct envelope env;

	rewrite_frame(buf, len, NULL, key, val, &sb);
	int rc = decode_exact(sb.data, sb.size, &env);
	if (rc != want)
		fail_msg("type %d with bad '%s': got %d (%s), want %d", t, key, rc,
			 env_strerror(rc), want);
	if (rc)
		assert_env_zero(&env);
	env_release(&env);
	msgpack_sbuffer_destroy(&sb);
	free(buf);
}

static void pack_int_5(msgpack_packer *pk) { msgpack_pack_int(pk, 5); }
static void pack_neg_1(msgpack_packer *pk) { msgpack_pack_int(pk, -1); }
static void pack_str_x(msgpack_packer *pk) { pk_str(pk, "x"); }
static void pack_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void pack_true(msgpack_packer *pk) { msgpack_pack_true(pk); }
static void pack_double(msgpack_packer *pk) { msgpack_pack_double(pk, 1.5); }
static void pack_bin(msgpack_packer *pk)
{
	msgpack_pack_bin(pk, 2);
	msgpack_pack_bin_body(pk, "ab", 2);
}
static void pack_map1(msgpack_packer *pk)
{
	msgpack_pack_map(pk, 1);
	pk_kv_str(pk, "a", "b");
}
static void pack_u64_huge(msgpack_packer *pk) { msgpack_pack_uint64(pk, UINT64_MAX); }
/* A turns array whose one element is not a map. */
static void pack_turns_not_map(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	pk_str(pk, "customer");
}
static void pack_turn_bad_role(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 2);
	msgpack_pack_map(pk, 3);
	pk_kv_str(pk, "r", "customer");
	pk_kv_str(pk, "x", "ok");
	pk_kv_uint(pk, "ts", 1);
	msgpack_pack_map(pk, 3);
	pk_kv_str(pk, "r", "robot");
	pk_kv_str(pk, "x", "hi");
	pk_kv_uint(pk, "ts", 1);
}
static void pack_turn_no_text(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 2);
	pk_kv_str(pk, "r", "ai");
	pk_kv_uint(pk, "ts", 1);
}
static void pack_turn_text_int(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 2);
	pk_kv_str(pk, "r", "ai");
	pk_str(pk, "x");
	msgpack_pack_int(pk, 3);
}
static void pack_turn_neg_ts(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 3);
	pk_kv_str(pk, "r", "ai");
	pk_kv_str(pk, "x", "t");
	pk_str(pk, "ts");
	msgpack_pack_int(pk, -5);
}
/* A turn with an extra unknown key and no ts: accepted, ts = 0. */
static void pack_turn_extra_key(msgpack_packer *pk)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, 3);
	pk_kv_str(pk, "r", "agent");
	pk_kv_str(pk, "x", "t");
	pk_kv_str(pk, "zz", "ignored");
}

/* --- round trips --- */

static void test_roundtrip_inbound(void **state)
{
	(void)state;
	struct envelope e, d;
	fill_all(&e, ENV_INBOUND);
	roundtrip(&e, &d);
	assert_str_eq(d.sid, "SM0123");
	assert_str_eq(d.from, "whatsapp:+14155550100");
	assert_str_eq(d.to, "whatsapp:+14155238886");
	assert_str_eq(d.body, UTF8_TEXT);
	assert_str_eq(d.name, NAME_UTF8);
	assert_str_eq(d.idem, "idem-1");
	assert_int_equal(d.nmedia, 2);
	/* fields the type does not carry are not encoded */
	assert_null(d.conv);
	assert_null(d.prompt);
	assert_null(d.text);
	assert_int_equal(d.nturns, 0);
	assert_null(d.turns);
	assert_int_equal(d.code, 0);
	assert_false(d.escalate);
	env_release(&d);
	env_release(&e);
	assert_env_zero(&e);
}

static void test_roundtrip_inbound_optional_absent(void **state)
{
	(void)state;
	struct envelope e, d;
	memset(&e, 0, sizeof(e));
	e.type = ENV_INBOUND;
	e.sid = "SM1";
	e.from = "a";
	e.to = "b";
	e.body = "";
	roundtrip(&e, &d);
	assert_str_eq(d.body, "");
	assert_null(d.name);
	assert_null(d.idem);
	assert_int_equal(d.nmedia, 0);
	env_release(&d);
}

static void test_roundtrip_ack(void **state)
{
	(void)state;
	struct envelope e, d;
	fill_all(&e, ENV_ACK);
	e.status = ST_BUSY;
	roundtrip(&e, &d);
	assert_int_equal(d.status, ST_BUSY);
	assert_str_eq(d.err, "boom");
	assert_null(d.sid);
	assert_null(d.body);
	env_release(&d);
	env_release(&e);
}

static void test_roundtrip_hello(void **state)
{
	(void)state;
	struct envelope e, d;
	fill_all(&e, ENV_HELLO);
	e.id = UINT64_MAX;
	roundtrip(&e, &d);
	assert_str_eq(d.kind, "ai");
	assert_int_equal(d.credit, 64);
	assert_str_eq(d.name, NAME_UTF8);
	assert_null(d.conv);
	/* The jobs the worker holds, with their attempts. */
	assert_int_equal(d.nclaims, 2);
	assert_true(d.claims[0].id == 7 && d.claims[0].attempt == 0x2a00000001ull);
	assert_true(d.claims[1].id == UINT64_MAX && d.claims[1].attempt == 3);
	assert_true(d.attempt == 0);
	env_release(&d);
	env_release(&e);
}

/* claims: flat id/attempt pairs; an odd count, a non-integer or too many is refused. */
static void test_claims_bad(void **state)
{
	(void)state;
	static const struct { unsigned n; bool str; int want; } cases[] = {
		{ 3, false, ENV_EFIELD },
		{ 4, true, ENV_EFIELD },
		{ (ENV_CLAIMS_MAX + 1) * 2, false, ENV_ETOOBIG },
		{ 0, false, ENV_EOK },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		msgpack_sbuffer sb;
		msgpack_packer pk;
		struct envelope env;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 7);
		pk_header(&pk, ENV_VERSION, ENV_HELLO);
		pk_kv_str(&pk, "kind", "ai");
		pk_kv_uint(&pk, "credit", 1);
		pk_str(&pk, "claims");
		msgpack_pack_array(&pk, cases[c].n);
		for (unsigned i = 0; i < cases[c].n; i++) {
			if (cases[c].str && i == 1) {
				pk_str(&pk, "x");
			} else {
				msgpack_pack_uint64(&pk, i);
			}
		}
		assert_int_equal(decode_exact(sb.data, sb.size, &env), cases[c].want);
		if (cases[c].want == ENV_EOK) {
			assert_int_equal(env.nclaims, 0);
			env_release(&env);
		} else {
			assert_env_zero(&env);
		}
		msgpack_sbuffer_destroy(&sb);
	}
}

static void test_roundtrip_job_ai_turns(void **state)
{
	(void)state;
	struct envelope e, d;
	fill_all(&e, ENV_JOB_AI);
	roundtrip(&e, &d);
	assert_str_eq(d.conv, "whatsapp:+14155550100|whatsapp:+14155238886");
	assert_str_eq(d.prompt, "You are helpful.");
	assert_int_equal(d.nturns, 4);
	assert_non_null(d.turns);
	assert_int_equal(d.turns[0].role, ROLE_CUSTOMER);
	assert_str_eq(d.turns[0].text, UTF8_TEXT);
	assert_true(d.turns[0].ts == 1);
	assert_int_equal(d.turns[1].role, ROLE_AI);
	assert_str_eq(d.turns[1].text, "hello");
	assert_true(d.turns[1].ts == 2);
	assert_int_equal(d.turns[2].role, ROLE_AGENT);
	assert_str_eq(d.turns[2].text, "agent here");
	assert_true(d.turns[2].ts == 3);
	/* seq, media and transcript travel only when set. */
	assert_true(d.turns[0].seq == 0 && !d.turns[0].media && !d.turns[0].transcript);
	assert_true(d.turns[1].seq == 42 && d.turns[1].transcript);
	assert_str_eq(d.turns[1].media, "{\"type\":\"image\"}");
	assert_int_equal(d.turns[3].role, ROLE_SYSTEM);
	assert_str_eq(d.turns[3].text, "note");
	assert_true(d.turns[3].ts == UINT64_MAX);
	assert_null(d.sid);
	assert_null(d.body);
	env_release(&d);
	env_release(&e);
}

static void test_roundtrip_job_ai_no_turns(void **state)
{
	(void)state;
	struct envelope e, d;
	memset(&e, 0, sizeof(e));
	e.type = ENV_JOB_AI;
	e.conv = "c";
	e.prompt = "p";
	roundtrip(&e, &d);
	assert_int_equal(d.nturns, 0);
	assert_str_eq(d.conv, "c");
	env_release(&d);
}

static void test_roundtrip_result_ai(void **state)
{
	(void)state;
	struct envelope e, d;
	fill_all(&e, ENV_RESULT_AI);
	roundtrip(&e, &d);
	assert_str_eq(d.conv, "whatsapp:+14155550100|whatsapp:+14155238886");
	assert_int_equal(d.status, ST_RETRY);
	assert_str_eq(d.text, "Reply \xe2\x9c\x93");
	assert_true(d.escalate);
	assert_str_eq(d.reason, "wants a human");
	assert_str_eq(d.summary, "customer asked for an agent");
	assert_str_eq(d.err, "boom");
	assert_true(d.code == -21211);
	assert_int_equal(d.nturns, 0);
	env_release(&d);

	/* bool false and extreme int64 values survive too */
	e.escalate = false;
	e.code = INT64_MIN;
	e.status = INT64_MAX;
	roundtrip(&e, &d);
	assert_false(d.escalate);
	assert_true(d.code == INT64_MIN);
	assert_true(d.status == INT64_MAX);
	env_release(&d);
	env_release(&e);
}

static void test_roundtrip_job_send(void **state)
{
	(void)state;
	struct envelope e, d;
	fill_all(&e, ENV_JOB_SEND);
	roundtrip(&e, &d);
	assert_str_eq(d.conv, "whatsapp:+14155550100|whatsapp:+14155238886");
	assert_str_eq(d.to, "whatsapp:+14155238886");
	assert_str_eq(d.from, "whatsapp:+14155550100");
	assert_str_eq(d.body, UTF8_TEXT);
	assert_null(d.sid);
	assert_null(d.name);
	/* Exactly once: the attempt, and what a reconciling egress needs. */
	assert_true(d.attempt == 0x2a00000007LL);
	assert_true(d.reconcile);
	assert_true(d.since == 1700000000000LL);
	assert_str_eq(d.exclude, "SM01,SM02");
	assert_int_equal(d.nclaims, 0);
	env_release(&d);
	env_release(&e);
}

static void test_roundtrip_result_send(void **state)
{
	(void)state;
	struct envelope e, d;
	fill_all(&e, ENV_RESULT_SEND);
	e.status = ST_FAILED;
	e.code = -1;
	roundtrip(&e, &d);
	assert_str_eq(d.conv, "whatsapp:+14155550100|whatsapp:+14155238886");
	assert_int_equal(d.status, ST_FAILED);
	assert_str_eq(d.sid, "SM0123");
	assert_true(d.code == -1);
	assert_str_eq(d.err, "boom");
	assert_null(d.text);
	assert_true(d.attempt == 0x2a00000007LL);
	assert_true(d.reconcile);
	assert_null(d.exclude);
	env_release(&d);
	env_release(&e);
}

static void test_roundtrip_job_flex(void **state)
{
	(void)state;
	struct envelope e, d;
	fill_all(&e, ENV_JOB_FLEX);
	roundtrip(&e, &d);
	assert_str_eq(d.conv, "whatsapp:+14155550100|whatsapp:+14155238886");
	assert_str_eq(d.op, "handoff");
	assert_str_eq(d.from, "whatsapp:+14155550100");
	assert_str_eq(d.to, "whatsapp:+14155238886");
	assert_str_eq(d.name, NAME_UTF8);
	assert_str_eq(d.trigger, "rule");
	assert_str_eq(d.reason, "wants a human");
	assert_str_eq(d.summary, "customer asked for an agent");
	assert_str_eq(d.body, UTF8_TEXT);
	assert_str_eq(d.ch, "CH0001");
	assert_true(d.seq == 31);
	assert_int_equal(d.nturns, 4);
	assert_int_equal(d.turns[2].role, ROLE_AGENT);
	assert_str_eq(d.turns[0].text, UTF8_TEXT);
	/* not carried by a flex job */
	assert_null(d.mb);
	assert_null(d.wt);
	assert_null(d.sid);
	assert_null(d.prompt);
	env_release(&d);
	env_release(&e);
}

static void test_roundtrip_result_flex(void **state)
{
	(void)state;
	struct envelope e, d;
	fill_all(&e, ENV_RESULT_FLEX);
	e.status = ST_OK;
	e.code = -404;
	roundtrip(&e, &d);
	assert_str_eq(d.conv, "whatsapp:+14155550100|whatsapp:+14155238886");
	assert_str_eq(d.op, "handoff");
	assert_int_equal(d.status, ST_OK);
	assert_str_eq(d.ch, "CH0001");
	assert_str_eq(d.mb, "MB0001");
	assert_str_eq(d.kd, "KD0001");
	assert_str_eq(d.uo, "UO0001");
	assert_str_eq(d.wt, "WT0001");
	assert_true(d.code == -404);
	assert_str_eq(d.err, "boom");
	assert_int_equal(d.nturns, 0);
	assert_null(d.trigger);
	assert_true(d.seq == 0);
	env_release(&d);
	env_release(&e);
}

/* --- malformed frames --- */

static void test_truncated_every_prefix(void **state)
{
	(void)state;
	for (int t = ENV_INBOUND; t < ENV_TYPE_MAX; t++) {
		size_t len;
		char *buf = full_frame((enum env_type)t, &len);
		struct envelope env;
		assert_int_equal(decode_exact(buf, len, &env), ENV_EOK);
		env_release(&env);
		for (size_t n = 0; n < len; n++) {
			int rc = decode_exact(buf, n, &env);
			if (rc != ENV_ETRUNCATED)
				fail_msg("type %d prefix %zu/%zu: got %d", t, n, len, rc);
			assert_env_zero(&env);
		}
		free(buf);
	}
}

static void test_trailing_garbage(void **state)
{
	(void)state;
	size_t len;
	char *buf = full_frame(ENV_INBOUND, &len);
	char *longer = malloc(len + 3);
	struct envelope env;
	assert_non_null(longer);
	memcpy(longer, buf, len);
	memcpy(longer + len, "\x01\x02\x03", 3);
	assert_int_equal(decode_exact(longer, len + 1, &env), ENV_ETRUNCATED);
	assert_env_zero(&env);
	assert_int_equal(decode_exact(longer, len + 3, &env), ENV_ETRUNCATED);
	/* two complete frames back to back are not one frame either */
	char *twice = malloc(2 * len);
	assert_non_null(twice);
	memcpy(twice, buf, len);
	memcpy(twice + len, buf, len);
	assert_int_equal(decode_exact(twice, 2 * len, &env), ENV_ETRUNCATED);
	free(twice);
	free(longer);
	free(buf);
}

static void test_not_a_map(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct envelope env;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_int(&pk, 1);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_ENOTMAP);
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_int(&pk, 1);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_ENOTMAP);
	msgpack_sbuffer_clear(&sb);
	pk_str(&pk, "v");
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_ENOTMAP);
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_nil(&pk);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_ENOTMAP);
	assert_env_zero(&env);
	msgpack_sbuffer_destroy(&sb);
}

static void test_too_big_frame(void **state)
{
	(void)state;
	struct envelope env;
	/* the length check comes before any byte is read */
	static const char one = 0;
	assert_int_equal(env_decode(&one, ENV_FRAME_MAX + 1, &env), ENV_ETOOBIG);
	assert_env_zero(&env);
}

static void test_wrong_version(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct envelope env;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 5);
	pk_header(&pk, 2, ENV_ACK);
	pk_kv_uint(&pk, "status", 0);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_EVERSION);
	assert_env_zero(&env);
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_map(&pk, 5);
	pk_header(&pk, 0, ENV_ACK);
	pk_kv_uint(&pk, "status", 0);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_EVERSION);
	msgpack_sbuffer_destroy(&sb);

	expect_without(ENV_ACK, "v", ENV_EMISSING);
	expect_replaced(ENV_ACK, "v", pack_str_x, ENV_EFIELD);
	expect_replaced(ENV_ACK, "v", pack_neg_1, ENV_EFIELD);
}

static void test_unknown_type(void **state)
{
	(void)state;
	static const uint64_t bad[] = { 0, ENV_TYPE_MAX, 99, UINT64_MAX };
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct envelope env;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		msgpack_sbuffer_clear(&sb);
		msgpack_pack_map(&pk, 5);
		pk_header(&pk, ENV_VERSION, bad[i]);
		pk_kv_uint(&pk, "status", 0);
		assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_ETYPE);
		assert_env_zero(&env);
	}
	msgpack_sbuffer_destroy(&sb);
	expect_without(ENV_ACK, "t", ENV_EMISSING);
	expect_replaced(ENV_ACK, "t", pack_str_x, ENV_EFIELD);
}

static void test_missing_required_per_type(void **state)
{
	(void)state;
	static const struct {
		enum env_type t;
		const char *keys[5];
	} req[] = {
		{ ENV_INBOUND, { "sid", "from", "to", "body", NULL } },
		{ ENV_ACK, { "status", NULL } },
		{ ENV_HELLO, { "kind", "credit", NULL } },
		{ ENV_JOB_AI, { "conv", "prompt", "turns", NULL } },
		{ ENV_RESULT_AI, { "conv", "status", NULL } },
		{ ENV_JOB_SEND, { "conv", "to", "from", "body", NULL } },
		{ ENV_RESULT_SEND, { "conv", "status", NULL } },
		{ ENV_JOB_FLEX, { "conv", "op", "from", "to", NULL } },
		{ ENV_RESULT_FLEX, { "conv", "op", "status", NULL } },
	};
	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
		for (size_t k = 0; req[i].keys[k]; k++)
			expect_without(req[i].t, req[i].keys[k], ENV_EMISSING);
	/* optional fields may be left out; id and ts too */
	expect_without(ENV_INBOUND, "name", ENV_EOK);
	expect_without(ENV_INBOUND, "nmedia", ENV_EOK);
	expect_without(ENV_RESULT_AI, "esc", ENV_EOK);
	expect_without(ENV_RESULT_SEND, "sid", ENV_EOK);
	expect_without(ENV_HELLO, "id", ENV_EOK);
	expect_without(ENV_HELLO, "ts", ENV_EOK);
	expect_without(ENV_JOB_FLEX, "turns", ENV_EOK);
	expect_without(ENV_JOB_FLEX, "seq", ENV_EOK);
}

static void test_field_wrong_type(void **state)
{
	(void)state;
	expect_replaced(ENV_INBOUND, "sid", pack_int_5, ENV_EFIELD);
	expect_replaced(ENV_INBOUND, "body", pack_nil, ENV_EFIELD);
	expect_replaced(ENV_INBOUND, "from", pack_bin, ENV_EFIELD);
	expect_replaced(ENV_INBOUND, "nmedia", pack_str_x, ENV_EFIELD);
	expect_replaced(ENV_INBOUND, "nmedia", pack_double, ENV_EFIELD);
	expect_replaced(ENV_INBOUND, "id", pack_str_x, ENV_EFIELD);
	expect_replaced(ENV_INBOUND, "id", pack_neg_1, ENV_EFIELD);
	expect_replaced(ENV_INBOUND, "ts", pack_true, ENV_EFIELD);
	expect_replaced(ENV_ACK, "status", pack_str_x, ENV_EFIELD);
	expect_replaced(ENV_ACK, "status", pack_u64_huge, ENV_EFIELD); /* > INT64_MAX */
	expect_replaced(ENV_HELLO, "credit", pack_map1, ENV_EFIELD);
	expect_replaced(ENV_RESULT_AI, "esc", pack_int_5, ENV_EFIELD);
	expect_replaced(ENV_RESULT_AI, "text", pack_true, ENV_EFIELD);
	expect_replaced(ENV_JOB_AI, "turns", pack_map1, ENV_EFIELD);
	expect_replaced(ENV_JOB_AI, "turns", pack_str_x, ENV_EFIELD);
	expect_replaced(ENV_JOB_AI, "turns", pack_turns_not_map, ENV_EFIELD);
	expect_replaced(ENV_JOB_AI, "turns", pack_turn_text_int, ENV_EFIELD);
	expect_replaced(ENV_JOB_AI, "turns", pack_turn_neg_ts, ENV_EFIELD);
	expect_replaced(ENV_JOB_AI, "turns", pack_turn_no_text, ENV_EMISSING);
	/* negative ints are fine for int64 fields */
	expect_replaced(ENV_RESULT_SEND, "code", pack_neg_1, ENV_EOK);
	expect_replaced(ENV_JOB_FLEX, "op", pack_int_5, ENV_EFIELD);
	expect_replaced(ENV_JOB_FLEX, "seq", pack_str_x, ENV_EFIELD);
	expect_replaced(ENV_JOB_FLEX, "turns", pack_turn_bad_role, ENV_EFIELD);
	expect_replaced(ENV_RESULT_FLEX, "wt", pack_nil, ENV_EFIELD);
}

static void test_turn_unknown_role(void **state)
{
	(void)state;
	/* the first, valid turn has already been decoded: no leak, env zeroed */
	expect_replaced(ENV_JOB_AI, "turns", pack_turn_bad_role, ENV_EFIELD);
}

static void test_turn_extra_key_ignored(void **state)
{
	(void)state;
	size_t len;
	char *buf = full_frame(ENV_JOB_AI, &len);
	msgpack_sbuffer sb;
	struct envelope env;
	rewrite_frame(buf, len, NULL, "turns", pack_turn_extra_key, &sb);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_EOK);
	assert_int_equal(env.nturns, 1);
	assert_int_equal(env.turns[0].role, ROLE_AGENT);
	assert_str_eq(env.turns[0].text, "t");
	assert_true(env.turns[0].ts == 0);
	env_release(&env);
	msgpack_sbuffer_destroy(&sb);
	free(buf);
}

/* JOB_AI frame with n turns. */
static void pack_job_ai_turns(msgpack_sbuffer *sb, size_t n)
{
	msgpack_packer pk;
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 7);
	pk_header(&pk, ENV_VERSION, ENV_JOB_AI);
	pk_kv_str(&pk, "conv", "c");
	pk_kv_str(&pk, "prompt", "p");
	pk_str(&pk, "turns");
	msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < n; i++) {
		msgpack_pack_map(&pk, 3);
		pk_kv_str(&pk, "r", (i % 2) ? "ai" : "customer");
		pk_kv_str(&pk, "x", "t");
		pk_kv_uint(&pk, "ts", i);
	}
}

static void test_too_many_turns(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	struct envelope env;

	pack_job_ai_turns(&sb, ENV_TURNS_MAX);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_EOK);
	assert_int_equal(env.nturns, ENV_TURNS_MAX);
	assert_true(env.turns[ENV_TURNS_MAX - 1].ts == ENV_TURNS_MAX - 1);
	env_release(&env);
	msgpack_sbuffer_destroy(&sb);

	pack_job_ai_turns(&sb, ENV_TURNS_MAX + 1);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_ETOOBIG);
	assert_env_zero(&env);
	msgpack_sbuffer_destroy(&sb);

	/* the encoder refuses the same */
	struct envelope e;
	memset(&e, 0, sizeof(e));
	e.type = ENV_JOB_AI;
	e.conv = "c";
	e.prompt = "p";
	for (int i = 0; i < ENV_TURNS_MAX + 1; i++)
		env_add_turn(&e, ROLE_CUSTOMER, "x", 0);
	char *out = (char *)1;
	size_t outlen = 1;
	assert_int_equal(env_encode(&e, &out, &outlen), ENV_ETOOBIG);
	assert_null(out);
	assert_int_equal(outlen, 0);
	e.conv = NULL;
	e.prompt = NULL;
	env_release(&e);
}

static void test_string_too_big(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct envelope env;
	size_t n = ENV_STR_MAX + 1;
	char *big = malloc(n);
	assert_non_null(big);
	memset(big, 'a', n);

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 8);
	pk_header(&pk, ENV_VERSION, ENV_INBOUND);
	pk_kv_str(&pk, "sid", "s");
	pk_kv_str(&pk, "from", "f");
	pk_kv_str(&pk, "to", "t");
	pk_str(&pk, "body");
	msgpack_pack_str(&pk, n);
	msgpack_pack_str_body(&pk, big, n);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_ETOOBIG);
	assert_env_zero(&env);
	msgpack_sbuffer_destroy(&sb);
	free(big);
}

static void test_unknown_keys_ignored(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct envelope env;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 12);
	pk_kv_str(&pk, "future", "x");     /* unknown key, before v and t */
	pk_header(&pk, ENV_VERSION, ENV_INBOUND);
	pk_kv_str(&pk, "sid", "SM1");
	pk_kv_str(&pk, "from", "f");
	pk_kv_str(&pk, "to", "t");
	pk_kv_str(&pk, "body", "b");
	msgpack_pack_int(&pk, 17);          /* non-string key */
	msgpack_pack_nil(&pk);
	pk_str(&pk, "nested");              /* unknown key with a nested value */
	pack_map1(&pk);
	pk_str(&pk, "prompt");              /* known key, not an INBOUND field: ignored */
	msgpack_pack_int(&pk, 5);
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_EOK);
	assert_int_equal(env.type, ENV_INBOUND);
	assert_str_eq(env.sid, "SM1");
	assert_str_eq(env.body, "b");
	assert_null(env.prompt);
	assert_true(env.id == 7);
	assert_true(env.ts == 1000);
	env_release(&env);
	msgpack_sbuffer_destroy(&sb);
}

static void test_repeated_string_key_last_wins(void **state)
{
	(void)state;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	struct envelope env;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 9);
	pk_header(&pk, ENV_VERSION, ENV_INBOUND);
	pk_kv_str(&pk, "sid", "first");
	pk_kv_str(&pk, "from", "f");
	pk_kv_str(&pk, "to", "t");
	pk_kv_str(&pk, "body", "b");
	pk_kv_str(&pk, "sid", "second");
	assert_int_equal(decode_exact(sb.data, sb.size, &env), ENV_EOK);
	assert_str_eq(env.sid, "second");
	env_release(&env);
	msgpack_sbuffer_destroy(&sb);
}

static void test_encode_missing_required(void **state)
{
	(void)state;
	static const struct {
		enum env_type t;
		size_t off;
	} req[] = {
		{ ENV_INBOUND, offsetof(struct envelope, sid) },
		{ ENV_INBOUND, offsetof(struct envelope, from) },
		{ ENV_INBOUND, offsetof(struct envelope, to) },
		{ ENV_INBOUND, offsetof(struct envelope, body) },
		{ ENV_HELLO, offsetof(struct envelope, kind) },
		{ ENV_JOB_AI, offsetof(struct envelope, conv) },
		{ ENV_JOB_AI, offsetof(struct envelope, prompt) },
		{ ENV_RESULT_AI, offsetof(struct envelope, conv) },
		{ ENV_JOB_SEND, offsetof(struct envelope, conv) },
		{ ENV_JOB_SEND, offsetof(struct envelope, to) },
		{ ENV_JOB_SEND, offsetof(struct envelope, from) },
		{ ENV_JOB_SEND, offsetof(struct envelope, body) },
		{ ENV_RESULT_SEND, offsetof(struct envelope, conv) },
		{ ENV_JOB_FLEX, offsetof(struct envelope, conv) },
		{ ENV_JOB_FLEX, offsetof(struct envelope, op) },
		{ ENV_JOB_FLEX, offsetof(struct envelope, from) },
		{ ENV_JOB_FLEX, offsetof(struct envelope, to) },
		{ ENV_RESULT_FLEX, offsetof(struct envelope, conv) },
		{ ENV_RESULT_FLEX, offsetof(struct envelope, op) },
	};
	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++) {
		struct envelope e;
		fill_all(&e, req[i].t);
		char **field = (char **)((char *)&e + req[i].off);
		free(*field);
		*field = NULL;
		char *out = (char *)1;
		size_t len = 1;
		int rc = env_encode(&e, &out, &len);
		if (rc != ENV_EMISSING)
			fail_msg("type %d field at %zu: got %d", req[i].t, req[i].off, rc);
		assert_null(out);
		assert_int_equal(len, 0);
		env_release(&e);
	}
	/* a field of another type being absent does not matter */
	struct envelope e;
	memset(&e, 0, sizeof(e));
	e.type = ENV_ACK;
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(env_encode(&e, &out, &len), ENV_EOK);
	free(out);
}

static void test_encode_bad_type(void **state)
{
	(void)state;
	struct envelope e;
	char *out = (char *)1;
	size_t len = 1;
	memset(&e, 0, sizeof(e));
	e.type = (enum env_type)0;
	assert_int_equal(env_encode(&e, &out, &len), ENV_ETYPE);
	assert_null(out);
	e.type = ENV_TYPE_MAX;
	assert_int_equal(env_encode(&e, &out, &len), ENV_ETYPE);
	e.type = (enum env_type)99;
	assert_int_equal(env_encode(&e, &out, &len), ENV_ETYPE);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(env_type_name(ENV_INBOUND), "inbound");
	assert_string_equal(env_type_name(ENV_RESULT_SEND), "result_send");
	assert_string_equal(env_type_name(ENV_JOB_FLEX), "job_flex");
	assert_string_equal(env_type_name(ENV_RESULT_FLEX), "result_flex");
	assert_string_equal(env_type_name((enum env_type)0), "unknown");
	assert_string_equal(env_type_name(ENV_TYPE_MAX), "unknown");
	assert_string_equal(env_role_name(ROLE_AGENT), "agent");
	assert_string_equal(env_role_name((enum env_role)7), "unknown");
	assert_int_equal(env_role_parse("customer"), ROLE_CUSTOMER);
	assert_int_equal(env_role_parse("ai"), ROLE_AI);
	assert_int_equal(env_role_parse("agent"), ROLE_AGENT);
	assert_int_equal(env_role_parse("system"), ROLE_SYSTEM);
	assert_int_equal(env_role_parse("Customer"), -1);
	assert_int_equal(env_role_parse(""), -1);
	assert_string_equal(env_strerror(ENV_EOK), "ok");
	assert_string_equal(env_strerror(ENV_EMISSING), "required field missing");
	assert_string_equal(env_strerror(12345), "unknown error");
}

static void test_release_zeroed_is_safe(void **state)
{
	(void)state;
	struct envelope e;
	memset(&e, 0, sizeof(e));
	env_release(&e);
	env_release(&e);
	assert_env_zero(&e);
}

/* Headers that claim more elements than the frame can hold are refused
 * before msgpack-c would allocate for them; so is absurd nesting. */
static void test_hostile_counts_and_depth(void **state)
{
	(void)state;
	struct envelope env;
	const unsigned char huge_array[] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
	const unsigned char huge_map[] = { 0xdf, 0x7f, 0xff, 0xff, 0xff, 0x00 };
	const unsigned char huge_str[] = { 0xdb, 0xff, 0xff, 0xff, 0xff, 'a' };
	const unsigned char bad_byte[] = { 0xc1 };
	assert_int_equal(env_decode(huge_array, sizeof(huge_array), &env), ENV_ETRUNCATED);
	assert_int_equal(env_decode(huge_map, sizeof(huge_map), &env), ENV_ETRUNCATED);
	assert_int_equal(env_decode(huge_str, sizeof(huge_str), &env), ENV_ETRUNCATED);
	assert_int_equal(env_decode(bad_byte, sizeof(bad_byte), &env), ENV_ETRUNCATED);
	unsigned char deep[64];
	for (size_t i = 0; i < sizeof(deep) - 1; i++)
		deep[i] = 0x91; /* array of one element, nested */
	deep[sizeof(deep) - 1] = 0x01;
	assert_int_equal(env_decode(deep, sizeof(deep), &env), ENV_ETRUNCATED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_inbound),
		cmocka_unit_test(test_roundtrip_inbound_optional_absent),
		cmocka_unit_test(test_roundtrip_ack),
		cmocka_unit_test(test_roundtrip_hello),
		cmocka_unit_test(test_claims_bad),
		cmocka_unit_test(test_roundtrip_job_ai_turns),
		cmocka_unit_test(test_roundtrip_job_ai_no_turns),
		cmocka_unit_test(test_roundtrip_result_ai),
		cmocka_unit_test(test_roundtrip_job_send),
		cmocka_unit_test(test_roundtrip_result_send),
		cmocka_unit_test(test_roundtrip_job_flex),
		cmocka_unit_test(test_roundtrip_result_flex),
		cmocka_unit_test(test_truncated_every_prefix),
		cmocka_unit_test(test_trailing_garbage),
		cmocka_unit_test(test_not_a_map),
		cmocka_unit_test(test_too_big_frame),
		cmocka_unit_test(test_wrong_version),
		cmocka_unit_test(test_unknown_type),
		cmocka_unit_test(test_missing_required_per_type),
		cmocka_unit_test(test_field_wrong_type),
		cmocka_unit_test(test_turn_unknown_role),
		cmocka_unit_test(test_turn_extra_key_ignored),
		cmocka_unit_test(test_too_many_turns),
		cmocka_unit_test(test_string_too_big),
		cmocka_unit_test(test_unknown_keys_ignored),
		cmocka_unit_test(test_repeated_string_key_last_wins),
		cmocka_unit_test(test_encode_missing_required),
		cmocka_unit_test(test_encode_bad_type),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_release_zeroed_is_safe),
		cmocka_unit_test(test_hostile_counts_and_depth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
