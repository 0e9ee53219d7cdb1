/*
 * store — LMDB schema of the router; see store.h.
 *
 * Records are msgpack maps described by small field tables (rec_field),
 * so that each record type is declared once and encode/decode cannot
 * drift apart.
 */
#include "store.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "convkey.h"
#include "journal.h"
#include "kv.h"
#include "log.h"
#include "xalloc.h"

enum rec_kind { RK_STR, RK_U64, RK_I64, RK_BOOL, RK_ENUM };

struct rec_field {
	const char *key;
	enum rec_kind kind;
	size_t offset;
};

#define RF(k, kind, type, field) { k, kind, offsetof(type, field) }

static const struct rec_field conv_fields[] = {
	RF("mode", RK_ENUM, struct conv_rec, mode),
	RF("seq", RK_U64, struct conv_rec, seq),
	RF("pin", RK_U64, struct conv_rec, pend_in),
	RF("pout", RK_U64, struct conv_rec, pend_out),
	RF("aijob", RK_U64, struct conv_rec, ai_job),
	RF("created", RK_U64, struct conv_rec, created),
	RF("updated", RK_U64, struct conv_rec, updated),
	RF("lastin", RK_U64, struct conv_rec, last_in),
	RF("turns", RK_U64, struct conv_rec, turns),
	RF("errcode", RK_I64, struct conv_rec, err_code),
	RF("cust", RK_STR, struct conv_rec, customer),
	RF("biz", RK_STR, struct conv_rec, business),
	RF("name", RK_STR, struct conv_rec, name),
	RF("err", RK_STR, struct conv_rec, err),
	RF("hjob", RK_U64, struct conv_rec, handoff_job),
	RF("escs", RK_U64, struct conv_rec, escalations),
	RF("hfail", RK_U64, struct conv_rec, handoff_failures),
	RF("escat", RK_U64, struct conv_rec, esc_at),
	RF("esctrig", RK_STR, struct conv_rec, esc_trigger),
	RF("escwhy", RK_STR, struct conv_rec, esc_reason),
	RF("ch", RK_STR, struct conv_rec, flex_ch),
	RF("mb", RK_STR, struct conv_rec, flex_mb),
	RF("kd", RK_STR, struct conv_rec, flex_kd),
	RF("uo", RK_STR, struct conv_rec, flex_uo),
	RF("wt", RK_STR, struct conv_rec, flex_wt),
	RF("accat", RK_U64, struct conv_rec, accepted_at),
	RF("agat", RK_U64, struct conv_rec, first_agent_at),
	RF("lastact", RK_U64, struct conv_rec, last_activity),
	RF("noagent", RK_U64, struct conv_rec, no_agent_done),
	RF("winclosed", RK_U64, struct conv_rec, window_closed),
	RF("tlseq", RK_U64, struct conv_rec, tl_seq),
	RF("agent", RK_STR, struct conv_rec, agent),
	RF("qu", RK_U64, struct conv_rec, queued_until),
	RF("ixon", RK_BOOL, struct conv_rec, ix_on),
	RF("ixm", RK_ENUM, struct conv_rec, ix_mode),
	RF("ixat", RK_U64, struct conv_rec, ix_at),
};

static const struct rec_field tl_fields[] = {
	RF("ts", RK_U64, struct tl_rec, ts),
	RF("ev", RK_STR, struct tl_rec, event),
	RF("d", RK_STR, struct tl_rec, detail),
};

static const struct rec_field hist_fields[] = {
	RF("r", RK_ENUM, struct hist_rec, role),
	RF("x", RK_STR, struct hist_rec, text),
	RF("ts", RK_U64, struct hist_rec, ts),
	RF("sid", RK_STR, struct hist_rec, sid),
	RF("msid", RK_STR, struct hist_rec, msid),
	RF("nmedia", RK_I64, struct hist_rec, nmedia),
	RF("esc", RK_BOOL, struct hist_rec, escalate),
	RF("who", RK_STR, struct hist_rec, who),
	RF("m", RK_STR, struct hist_rec, media),
	RF("tr", RK_BOOL, struct hist_rec, transcript),
};

static const struct rec_field job_fields[] = {
	RF("k", RK_ENUM, struct job_rec, kind),
	RF("conv", RK_STR, struct job_rec, conv),
	RF("created", RK_U64, struct job_rec, created),
	RF("upto", RK_U64, struct job_rec, upto),
	RF("hseq", RK_U64, struct job_rec, hseq),
	RF("to", RK_STR, struct job_rec, to),
	RF("from", RK_STR, struct job_rec, from),
	RF("body", RK_STR, struct job_rec, body),
	RF("att", RK_I64, struct job_rec, attempts),
	RF("hfrom", RK_U64, struct job_rec, hfrom),
	RF("op", RK_STR, struct job_rec, op),
	RF("trig", RK_STR, struct job_rec, trigger),
	RF("why", RK_STR, struct job_rec, reason),
	RF("sum", RK_STR, struct job_rec, summary),
	RF("tmpl", RK_STR, struct job_rec, tmpl),
	RF("vars", RK_STR, struct job_rec, vars),
	RF("ch", RK_STR, struct job_rec, ch),
	RF("kd", RK_STR, struct job_rec, kd),
	RF("uo", RK_STR, struct job_rec, uo),
	RF("nb", RK_U64, struct job_rec, not_before),
	RF("excl", RK_STR, struct job_rec, exclude),
};

static const struct rec_field audit_fields[] = {
	RF("ts", RK_U64, struct audit_rec, ts),
	RF("conv", RK_STR, struct audit_rec, conv),
	RF("mode", RK_STR, struct audit_rec, mode),
	RF("why", RK_STR, struct audit_rec, reason),
	RF("hist", RK_U64, struct audit_rec, hist),
	RF("pend", RK_U64, struct audit_rec, pend),
	RF("tl", RK_U64, struct audit_rec, tl),
	RF("idx", RK_U64, struct audit_rec, idx),
	RF("jobs", RK_U64, struct audit_rec, jobs),
	RF("closed", RK_BOOL, struct audit_rec, flex_closed),
};

#define NF(a) (sizeof(a) / sizeof((a)[0]))

/* Whether field f of rec holds its zero value (NULL, 0, false, the enum's 0). */
static bool rec_field_zero(const struct rec_field *f, const void *rec)
{
	const void *p = (const char *)rec + f->offset;
	switch (f->kind) {
	case RK_STR: return *(char *const *)p == NULL;
	case RK_U64: return *(const uint64_t *)p == 0;
	case RK_I64: return *(const int64_t *)p == 0;
	case RK_BOOL: return !*(const bool *)p;
	case RK_ENUM: return *(const int *)p == 0;
	}
	return false;
}

/*
 * Encodes rec into a malloc'd buffer (caller frees). Fields at their zero
 * value are not written: every decoder (this one and those of older
 * routers) starts from a zeroed record, so an absent field reads as zero,
 * and most fields of a conversation are zero most of its life (a million
 * records of an ai conversation carried some 110 bytes of zeros each).
 */
static char *rec_encode(const struct rec_field *fs, size_t n, const void *rec, size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t count = 1;

	for (size_t i = 0; i < n; i++)
		if (!rec_field_zero(&fs[i], rec))
			count++;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, count);
	msgpack_pack_str(&pk, 1);
	msgpack_pack_str_body(&pk, "v", 1);
	msgpack_pack_unsigned_int(&pk, STORE_VERSION);
	for (size_t i = 0; i < n; i++) {
		const void *p = (const char *)rec + fs[i].offset;
		const char *s = fs[i].kind == RK_STR ? *(char *const *)p : NULL;
		if (rec_field_zero(&fs[i], rec))
			continue;
		size_t kl = strlen(fs[i].key);
		msgpack_pack_str(&pk, kl);
		msgpack_pack_str_body(&pk, fs[i].key, kl);
		switch (fs[i].kind) {
		case RK_STR:
			msgpack_pack_str(&pk, strlen(s));
			msgpack_pack_str_body(&pk, s, strlen(s));
			break;
		case RK_U64: msgpack_pack_uint64(&pk, *(const uint64_t *)p); break;
		case RK_I64: msgpack_pack_int64(&pk, *(const int64_t *)p); break;
		case RK_BOOL:
			if (*(const bool *)p)
				msgpack_pack_true(&pk);
			else
				msgpack_pack_false(&pk);
			break;
		case RK_ENUM: msgpack_pack_int(&pk, *(const int *)p); break;
		}
	}
	*len = sb.size;
	return sb.data;
}

static void rec_release(const struct rec_field *fs, size_t n, void *rec)
{
	for (size_t i = 0; i < n; i++)
		if (fs[i].kind == RK_STR) {
			char **s = (char **)((char *)rec + fs[i].offset);
			free(*s);
			*s = NULL;
		}
}

/* Decodes into a zeroed rec. Returns 0 or MDB_CORRUPTED (logged by the caller). */
static int rec_decode(const struct rec_field *fs, size_t n, const MDB_val *val, void *rec,
		      size_t recsize)
{
	msgpack_unpacked up;
	size_t off = 0;
	int rc = 0;

	memset(rec, 0, recsize);
	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, val->mv_data, val->mv_size, &off) != MSGPACK_UNPACK_SUCCESS ||
	    up.data.type != MSGPACK_OBJECT_MAP) {
		msgpack_unpacked_destroy(&up);
		return MDB_CORRUPTED;
	}
	const msgpack_object_map *m = &up.data.via.map;
	for (uint32_t i = 0; i < m->size && rc == 0; i++) {
		const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
		if (k->type != MSGPACK_OBJECT_STR)
			continue;
		for (size_t f = 0; f < n; f++) {
			if (strlen(fs[f].key) != k->via.str.size ||
			    memcmp(fs[f].key, k->via.str.ptr, k->via.str.size) != 0)
				continue;
			void *p = (char *)rec + fs[f].offset;
			switch (fs[f].kind) {
			case RK_STR:
				if (v->type != MSGPACK_OBJECT_STR) {
					rc = MDB_CORRUPTED;
					break;
				}
				free(*(char **)p);
				*(char **)p = xstrndup(v->via.str.ptr, v->via.str.size);
				break;
			case RK_U64:
				if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
					rc = MDB_CORRUPTED;
				else
					*(uint64_t *)p = v->via.u64;
				break;
			case RK_I64:
			case RK_ENUM: {
				int64_t x;
				if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
					x = (int64_t)v->via.u64;
				else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
					x = v->via.i64;
				else {
					rc = MDB_CORRUPTED;
					break;
				}
				if (fs[f].kind == RK_ENUM)
					*(int *)p = (int)x;
				else
					*(int64_t *)p = x;
				break;
			}
			case RK_BOOL:
				if (v->type != MSGPACK_OBJECT_BOOLEAN)
					rc = MDB_CORRUPTED;
				else
					*(bool *)p = v->via.boolean;
				break;
			}
			break;
		}
	}
	msgpack_unpacked_destroy(&up);
	if (rc)
		rec_release(fs, n, rec);
	return rc;
}

/* --- writes: every one goes through here, so an attached journal sees it --- */

static uint8_t store_db_of(const struct store *st, MDB_dbi dbi)
{
	for (int id = STORE_DB_CONV; id < STORE_DB_COUNT; id++)
		if (store_dbi(st, (enum store_db)id) == dbi)
			return (uint8_t)id;
	return 0;
}

MDB_dbi store_dbi(const struct store *st, enum store_db id)
{
	switch (id) {
	case STORE_DB_CONV: return st->conv;
	case STORE_DB_HIST: return st->hist;
	case STORE_DB_PEND: return st->pend;
	case STORE_DB_SEEN: return st->seen;
	case STORE_DB_JOBS: return st->jobs;
	case STORE_DB_META: return st->meta;
	case STORE_DB_IDX: return st->idx;
	case STORE_DB_TL: return st->tl;
	case STORE_DB_MODES: return st->modes;
	case STORE_DB_AUDIT: return st->audit;
	case STORE_DB_RECENT: return st->recent;
	default: return 0;
	}
}

static int store_put(const struct store *st, MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v,
		     unsigned flags)
{
	int rc = mdb_put(txn, dbi, k, v, flags);
	if (rc == 0 && st->journal)
		journal_put(st->journal, store_db_of(st, dbi), k->mv_data, k->mv_size, v->mv_data,
			    v->mv_size);
	return rc;
}

static int store_del(const struct store *st, MDB_txn *txn, MDB_dbi dbi, MDB_val *k)
{
	int rc = mdb_del(txn, dbi, k, NULL);
	if (rc == 0 && st->journal)
		journal_del(st->journal, store_db_of(st, dbi), k->mv_data, k->mv_size);
	return rc;
}

/* Deletes the entry the cursor is on (of database dbi). */
static int store_cursor_del(const struct store *st, MDB_cursor *cur, MDB_dbi dbi)
{
	MDB_val k, v;
	int rc = st->journal ? mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT) : 0;
	if (rc)
		return rc;
	if (st->journal)
		journal_del(st->journal, store_db_of(st, dbi), k.mv_data, k.mv_size);
	return mdb_cursor_del(cur, 0);
}

static int rec_put(const struct store *st, MDB_txn *txn, MDB_dbi dbi, MDB_val *key,
		   const struct rec_field *fs, size_t n, const void *rec)
{
	size_t len = 0;
	char *buf = rec_encode(fs, n, rec, &len);
	MDB_val v = { .mv_size = len, .mv_data = buf };
	int rc = store_put(st, txn, dbi, key, &v, 0);
	free(buf);
	return rc;
}

static int rec_get(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, const struct rec_field *fs,
		   size_t n, void *rec, size_t recsize)
{
	MDB_val v;
	memset(rec, 0, recsize);
	int rc = mdb_get(txn, dbi, key, &v);
	if (rc)
		return rc;
	rc = rec_decode(fs, n, &v, rec, recsize);
	if (rc)
		log_err("corrupted record in LMDB (%zu bytes)", v.mv_size);
	return rc;
}

/* --- public --- */

const char *job_kind_name(enum job_kind k)
{
	switch (k) {
	case JOB_AI: return "ai";
	case JOB_SEND: return "send";
	case JOB_FLEX: return "flex";
	default: return "unknown";
	}
}

const char *conv_mode_name(enum conv_mode m)
{
	switch (m) {
	case MODE_AI: return "ai";
	case MODE_ESCALATING: return "escalating";
	case MODE_HUMAN: return "human";
	}
	return "unknown";
}

uint64_t conv_last_activity(const struct conv_rec *c)
{
	uint64_t t = c->created;
	if (c->updated > t)
		t = c->updated;
	if (c->last_in > t)
		t = c->last_in;
	if (c->last_activity > t)
		t = c->last_activity;
	return t;
}

void conv_rec_release(struct conv_rec *c) { rec_release(conv_fields, NF(conv_fields), c); }
void hist_rec_release(struct hist_rec *h) { rec_release(hist_fields, NF(hist_fields), h); }
void job_rec_release(struct job_rec *j) { rec_release(job_fields, NF(job_fields), j); }
void tl_rec_release(struct tl_rec *t) { rec_release(tl_fields, NF(tl_fields), t); }
void audit_rec_release(struct audit_rec *a) { rec_release(audit_fields, NF(audit_fields), a); }

int store_conv_decode(const MDB_val *val, struct conv_rec *out)
{
	int rc = rec_decode(conv_fields, NF(conv_fields), val, out, sizeof(*out));
	out->ix_known = rc == 0;
	return rc;
}

int store_job_decode(const MDB_val *val, struct job_rec *out)
{
	return rec_decode(job_fields, NF(job_fields), val, out, sizeof(*out));
}

int store_tl_decode(const MDB_val *val, struct tl_rec *out)
{
	return rec_decode(tl_fields, NF(tl_fields), val, out, sizeof(*out));
}

int store_audit_decode(const MDB_val *val, struct audit_rec *out)
{
	return rec_decode(audit_fields, NF(audit_fields), val, out, sizeof(*out));
}

void store_conv_parties(const char *key, const struct conv_rec *c, char **customer,
			char **business)
{
	const char *biz = convkey_business(key);
	*customer = c->customer ? xstrdup(c->customer) : xstrndup(key, convkey_customer_len(key));
	*business = c->business ? xstrdup(c->business) : xstrdup(biz ? biz : "");
}

/* --- the recent index --- */

#define RECENT_KEY_MAX (1 + 8 + STORE_KEY_MAX)
#define RECENT_BUILT "recent_index"

/* mode, be64(at), key into buf (RECENT_KEY_MAX bytes). */
static MDB_val store_recent_key(unsigned char *buf, enum conv_mode mode, uint64_t at,
				const char *key, size_t keylen)
{
	if (keylen > STORE_KEY_MAX)
		keylen = STORE_KEY_MAX; /* callers reject longer keys; never overflow buf */
	buf[0] = (unsigned char)mode;
	kv_be64(buf + 1, at);
	memcpy(buf + 9, key, keylen);
	MDB_val k = { .mv_size = 9 + keylen, .mv_data = buf };
	return k;
}

static const char *const store_count_keys[] = { "count_ai", "count_escalating", "count_human" };

/* Adds by (+1 or -1) to the number of conversations in mode (meta). */
static int store_count_add(struct store *st, MDB_txn *txn, enum conv_mode mode, int by)
{
	if ((unsigned)mode > MODE_HUMAN)
		return 0;
	const char *name = store_count_keys[mode];
	MDB_val k = { .mv_size = strlen(name), .mv_data = (void *)name }, v;
	uint64_t n = 0;
	int rc = mdb_get(txn, st->meta, &k, &v);
	if (rc == 0 && v.mv_size == 8)
		n = kv_from_be64(v.mv_data);
	else if (rc && rc != MDB_NOTFOUND)
		return rc;
	n = by < 0 ? (n ? n - 1 : 0) : n + 1;
	unsigned char b[8];
	kv_be64(b, n);
	v.mv_size = 8;
	v.mv_data = b;
	return store_put(st, txn, st->meta, &k, &v, 0);
}

int store_mode_counts(struct store *st, MDB_txn *txn, uint64_t out[3])
{
	for (int m = 0; m < 3; m++) {
		MDB_val k = { .mv_size = strlen(store_count_keys[m]),
			      .mv_data = (void *)store_count_keys[m] }, v;
		int rc = mdb_get(txn, st->meta, &k, &v);
		out[m] = rc == 0 && v.mv_size == 8 ? kv_from_be64(v.mv_data) : 0;
		if (rc && rc != MDB_NOTFOUND)
			return rc;
	}
	return 0;
}

/* Moves key's recent entry to where c belongs now (c->ix_* follow). */
static int store_recent_move(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c)
{
	unsigned char buf[RECENT_KEY_MAX];
	MDB_val empty = { .mv_size = 0, .mv_data = (void *)"" }, k, v;
	size_t kl = strlen(key);
	int rc;

	if (!c->ix_known) {
		/* A record written without being read: the stored one says where it is. */
		k.mv_size = kl;
		k.mv_data = (void *)key;
		if ((rc = mdb_get(txn, st->conv, &k, &v)) == 0) {
			struct conv_rec old;
			if (store_conv_decode(&v, &old) == 0) {
				c->ix_on = old.ix_on;
				c->ix_mode = old.ix_mode;
				c->ix_at = old.ix_at;
				conv_rec_release(&old);
			}
		} else if (rc != MDB_NOTFOUND) {
			return rc;
		}
		c->ix_known = true;
	}
	uint64_t at = conv_last_activity(c);
	if (c->ix_on && c->ix_mode == c->mode && c->ix_at == at)
		return 0;
	if (c->ix_on) {
		k = store_recent_key(buf, c->ix_mode, c->ix_at, key, kl);
		if ((rc = store_del(st, txn, st->recent, &k)) && rc != MDB_NOTFOUND)
			return rc;
	}
	if (!c->ix_on || c->ix_mode != c->mode) {
		if ((c->ix_on && (rc = store_count_add(st, txn, c->ix_mode, -1))) ||
		    (rc = store_count_add(st, txn, c->mode, +1)))
			return rc;
	}
	k = store_recent_key(buf, c->mode, at, key, kl);
	if ((rc = store_put(st, txn, st->recent, &k, &empty, 0)))
		return rc;
	c->ix_on = true;
	c->ix_mode = c->mode;
	c->ix_at = at;
	return 0;
}

/* A state from a router without the recent index: index every conversation
 * once (the record learns its entry), then remember it is done. */
static int store_recent_build(struct store *st, MDB_txn *txn)
{
	MDB_val mk = { .mv_size = strlen(RECENT_BUILT), .mv_data = (void *)RECENT_BUILT }, mv, k, v;
	MDB_cursor *cur = NULL;
	size_t n = 0;
	int rc = mdb_get(txn, st->meta, &mk, &mv);
	if (rc != MDB_NOTFOUND)
		return rc;
	for (int m = 0; m < 3; m++) {
		MDB_val ck = { .mv_size = strlen(store_count_keys[m]),
			       .mv_data = (void *)store_count_keys[m] };
		if ((rc = store_del(st, txn, st->meta, &ck)) && rc != MDB_NOTFOUND)
			return rc;
	}
	if ((rc = mdb_cursor_open(txn, st->conv, &cur)))
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct conv_rec c;
		if (k.mv_size > STORE_KEY_MAX || store_conv_decode(&v, &c))
			continue;
		char *key = xstrndup(k.mv_data, k.mv_size);
		c.ix_on = false; /* whatever an old record says, it is not indexed yet */
		size_t len = 0;
		rc = store_recent_move(st, txn, key, &c);
		if (rc == 0) {
			char *buf = rec_encode(conv_fields, NF(conv_fields), &c, &len);
			MDB_val nv = { .mv_size = len, .mv_data = buf };
			/* Overwrites the record the cursor is on: the walk goes on after it. */
			rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
			free(buf);
		}
		free(key);
		conv_rec_release(&c);
		if (rc)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return rc;
	mv.mv_size = 1;
	mv.mv_data = (void *)"1";
	if ((rc = store_put(st, txn, st->meta, &mk, &mv, 0)))
		return rc;
	if (n)
		log_notice("indexed %zu conversations by last activity (state of an older router)", n);
	return 0;
}

int store_recent_open(struct store *st, MDB_txn *txn, enum conv_mode mode, uint64_t at,
		      const char *key, struct store_recent *it)
{
	unsigned char buf[RECENT_KEY_MAX];
	MDB_val k, v;
	memset(it, 0, sizeof(*it));
	it->mode = mode;
	if (!st->recent)
		return EINVAL;
	int rc = mdb_cursor_open(txn, st->recent, &it->cur);
	if (rc)
		return rc;
	/* The first entry at or after the position, then one step back: the
	 * newest entry strictly before it. */
	if (key)
		k = store_recent_key(buf, mode, at, key, strlen(key));
	else
		k = store_recent_key(buf, mode, UINT64_MAX, "\xff", 1);
	rc = mdb_cursor_get(it->cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0)
		rc = mdb_cursor_get(it->cur, &k, &v, MDB_PREV);
	else if (rc == MDB_NOTFOUND)
		rc = mdb_cursor_get(it->cur, &k, &v, MDB_LAST);
	if (rc == 0 && k.mv_size >= 9 && ((unsigned char *)k.mv_data)[0] == (unsigned char)mode)
		it->pending = k;
	else if (rc && rc != MDB_NOTFOUND)
		return rc;
	return 0;
}

int store_recent_next(struct store_recent *it, uint64_t *at, const char **key, size_t *keylen)
{
	MDB_val k = it->pending, v;
	if (!k.mv_data)
		return MDB_NOTFOUND;
	*at = kv_from_be64((unsigned char *)k.mv_data + 1);
	*key = (const char *)k.mv_data + 9;
	*keylen = k.mv_size - 9;
	int rc = mdb_cursor_get(it->cur, &k, &v, MDB_PREV);
	if (rc == 0 && k.mv_size >= 9 && ((unsigned char *)k.mv_data)[0] == (unsigned char)it->mode)
		it->pending = k;
	else if (rc == 0 || rc == MDB_NOTFOUND)
		it->pending.mv_data = NULL;
	else
		return rc;
	return 0;
}

void store_recent_close(struct store_recent *it)
{
	if (it->cur)
		mdb_cursor_close(it->cur);
	it->cur = NULL;
}

int store_open(struct store *st, const char *dir, long map_mb, bool sync)
{
	MDB_txn *txn = NULL;
	int rc;

	memset(st, 0, sizeof(*st));
	if (kv_open(&st->env, dir, (size_t)map_mb, sync, 16) < 0)
		return -1;
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)))
		goto fail;
	if ((rc = kv_dbi(txn, "conv", &st->conv)) || (rc = kv_dbi(txn, "hist", &st->hist)) ||
	    (rc = kv_dbi(txn, "pend", &st->pend)) || (rc = kv_dbi(txn, "seen", &st->seen)) ||
	    (rc = kv_dbi(txn, "jobs", &st->jobs)) || (rc = kv_dbi(txn, "meta", &st->meta)) ||
	    (rc = kv_dbi(txn, "idx", &st->idx)) || (rc = kv_dbi(txn, "tl", &st->tl)) ||
	    (rc = kv_dbi(txn, "modes", &st->modes)) || (rc = kv_dbi(txn, "audit", &st->audit)) ||
	    (rc = kv_dbi(txn, "recent", &st->recent)) || (rc = kv_dbi(txn, "local", &st->local)))
		goto fail;
	if ((rc = store_recent_build(st, txn)))
		goto fail;
	if ((rc = mdb_txn_commit(txn))) {
		txn = NULL;
		goto fail;
	}
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	kv_close(&st->env);
	return log_err("cannot open databases in '%s': %s", dir, mdb_strerror(rc));
}

int store_open_readonly(struct store *st, const char *dir)
{
	MDB_txn *txn = NULL;
	int rc;

	memset(st, 0, sizeof(*st));
	if ((rc = mdb_env_create(&st->env)) || (rc = mdb_env_set_maxdbs(st->env, 16)) ||
	    (rc = mdb_env_open(st->env, dir, MDB_RDONLY | MDB_NOTLS, 0600)))
		goto fail;
	if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn)))
		goto fail;
	if ((rc = mdb_dbi_open(txn, "conv", 0, &st->conv)) ||
	    (rc = mdb_dbi_open(txn, "hist", 0, &st->hist)) ||
	    (rc = mdb_dbi_open(txn, "pend", 0, &st->pend)) ||
	    (rc = mdb_dbi_open(txn, "seen", 0, &st->seen)) ||
	    (rc = mdb_dbi_open(txn, "jobs", 0, &st->jobs)) ||
	    (rc = mdb_dbi_open(txn, "meta", 0, &st->meta)) ||
	    (rc = mdb_dbi_open(txn, "idx", 0, &st->idx)) ||
	    (rc = mdb_dbi_open(txn, "tl", 0, &st->tl)) ||
	    (rc = mdb_dbi_open(txn, "modes", 0, &st->modes)))
		goto fail;
	/* Absent until a router that knows it has opened the state: no purges yet. */
	if ((rc = mdb_dbi_open(txn, "audit", 0, &st->audit)) == MDB_NOTFOUND)
		st->audit = 0;
	else if (rc)
		goto fail;
	if ((rc = mdb_dbi_open(txn, "recent", 0, &st->recent)) == MDB_NOTFOUND)
		st->recent = 0;
	else if (rc)
		goto fail;
	if ((rc = mdb_dbi_open(txn, "local", 0, &st->local)) == MDB_NOTFOUND)
		st->local = 0;
	else if (rc)
		goto fail;
	/* Committing (not aborting) makes the handles usable in later transactions. */
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc)
		goto fail;
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	kv_close(&st->env);
	return log_err("cannot open state in '%s' read-only: %s", dir, mdb_strerror(rc));
}

void store_close(struct store *st)
{
	kv_close(&st->env);
}

static MDB_val store_strkey(const char *s)
{
	MDB_val k = { .mv_size = strlen(s), .mv_data = (void *)s };
	return k;
}

int store_conv_get(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *out)
{
	MDB_val k = store_strkey(key);
	int rc = rec_get(txn, st->conv, &k, conv_fields, NF(conv_fields), out, sizeof(*out));
	out->ix_known = rc == 0;
	return rc;
}

int store_conv_put(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c)
{
	MDB_val k = store_strkey(key);
	int rc = store_recent_move(st, txn, key, c);
	return rc ? rc : rec_put(st, txn, st->conv, &k, conv_fields, NF(conv_fields), c);
}

/* key \0 be64(seq) into buf (STORE_KEY_MAX + 9 bytes). */
static MDB_val store_seqkey(char *buf, const char *key, uint64_t seq)
{
	size_t n = strlen(key);
	if (n > STORE_KEY_MAX)
		n = STORE_KEY_MAX; /* callers reject longer keys; never overflow buf */
	memcpy(buf, key, n);
	buf[n] = '\0';
	kv_be64((unsigned char *)buf + n + 1, seq);
	MDB_val k = { .mv_size = n + 9, .mv_data = buf };
	return k;
}

int store_hist_get(struct store *st, MDB_txn *txn, const char *key, uint64_t seq,
		   struct hist_rec *out)
{
	char buf[STORE_KEY_MAX + 9];
	MDB_val k = store_seqkey(buf, key, seq);
	return rec_get(txn, st->hist, &k, hist_fields, NF(hist_fields), out, sizeof(*out));
}

int store_hist_put(struct store *st, MDB_txn *txn, const char *key, uint64_t seq,
		   const struct hist_rec *h)
{
	char buf[STORE_KEY_MAX + 9];
	MDB_val k = store_seqkey(buf, key, seq);
	return rec_put(st, txn, st->hist, &k, hist_fields, NF(hist_fields), h);
}

int store_hist_append(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c,
		      const struct hist_rec *h)
{
	int rc = store_hist_put(st, txn, key, c->seq + 1, h);
	if (rc == 0)
		c->seq++;
	return rc;
}

int store_pend_push(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c,
		    const struct hist_rec *h)
{
	char buf[STORE_KEY_MAX + 9];
	MDB_val k = store_seqkey(buf, key, c->pend_in + 1);
	int rc = rec_put(st, txn, st->pend, &k, hist_fields, NF(hist_fields), h);
	if (rc == 0)
		c->pend_in++;
	return rc;
}

int store_pend_pop(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c,
		   struct hist_rec *out)
{
	char buf[STORE_KEY_MAX + 9];
	memset(out, 0, sizeof(*out));
	if (c->pend_out >= c->pend_in)
		return MDB_NOTFOUND;
	MDB_val k = store_seqkey(buf, key, c->pend_out + 1);
	int rc = rec_get(txn, st->pend, &k, hist_fields, NF(hist_fields), out, sizeof(*out));
	if (rc)
		return rc;
	if ((rc = store_del(st, txn, st->pend, &k))) {
		hist_rec_release(out);
		return rc;
	}
	c->pend_out++;
	return 0;
}

int store_pend_get(struct store *st, MDB_txn *txn, const char *key, uint64_t n,
		   struct hist_rec *out)
{
	char buf[STORE_KEY_MAX + 9];
	MDB_val k = store_seqkey(buf, key, n);
	return rec_get(txn, st->pend, &k, hist_fields, NF(hist_fields), out, sizeof(*out));
}

int store_seen_get(struct store *st, MDB_txn *txn, const char *sid)
{
	MDB_val k = store_strkey(sid), v;
	return mdb_get(txn, st->seen, &k, &v);
}

int store_seen_put(struct store *st, MDB_txn *txn, const char *sid, uint64_t ts)
{
	unsigned char b[8];
	kv_be64(b, ts);
	MDB_val k = store_strkey(sid), v = { .mv_size = 8, .mv_data = b };
	return store_put(st, txn, st->seen, &k, &v, 0);
}

int store_seen_prune(struct store *st, MDB_txn *txn, char **cursor_key, size_t max,
		     uint64_t before, size_t *deleted)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	size_t n = 0;
	int rc = mdb_cursor_open(txn, st->seen, &cur);

	*deleted = 0;
	if (rc)
		return rc;
	if (*cursor_key) {
		k = store_strkey(*cursor_key);
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	for (; rc == 0 && n < max; n++) {
		if (v.mv_size == 8 && kv_from_be64(v.mv_data) < before) {
			if ((rc = store_cursor_del(st, cur, st->seen)))
				break;
			(*deleted)++;
			/* After a delete the cursor already sits on the next entry. */
			rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
			if (rc == MDB_NOTFOUND || rc == EINVAL)
				break;
			continue;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	free(*cursor_key);
	*cursor_key = NULL;
	if (rc == 0 && n >= max)
		*cursor_key = xstrndup(k.mv_data, k.mv_size); /* where to go on */
	else if (rc == MDB_NOTFOUND || rc == EINVAL)
		rc = 0; /* the end: start over next time */
	mdb_cursor_close(cur);
	return rc;
}

static MDB_val store_idkey(unsigned char b[8], uint64_t id)
{
	kv_be64(b, id);
	MDB_val k = { .mv_size = 8, .mv_data = b };
	return k;
}

int store_job_add(struct store *st, MDB_txn *txn, const struct job_rec *j, uint64_t *id)
{
	MDB_val mk = store_strkey("next_job"), mv;
	unsigned char b[8];
	uint64_t next = 1;
	int rc = mdb_get(txn, st->meta, &mk, &mv);
	if (rc == 0 && mv.mv_size == 8)
		next = kv_from_be64(mv.mv_data);
	else if (rc != MDB_NOTFOUND && rc != 0)
		return rc;
	*id = next;
	kv_be64(b, next + 1);
	mv.mv_size = 8;
	mv.mv_data = b;
	if ((rc = store_put(st, txn, st->meta, &mk, &mv, 0)))
		return rc;
	return store_job_put(st, txn, next, j);
}

int store_job_put(struct store *st, MDB_txn *txn, uint64_t id, const struct job_rec *j)
{
	unsigned char b[8];
	MDB_val k = store_idkey(b, id);
	return rec_put(st, txn, st->jobs, &k, job_fields, NF(job_fields), j);
}

int store_job_get(struct store *st, MDB_txn *txn, uint64_t id, struct job_rec *out)
{
	unsigned char b[8];
	MDB_val k = store_idkey(b, id);
	return rec_get(txn, st->jobs, &k, job_fields, NF(job_fields), out, sizeof(*out));
}

int store_job_del(struct store *st, MDB_txn *txn, uint64_t id)
{
	unsigned char b[8];
	MDB_val k = store_idkey(b, id);
	return store_del(st, txn, st->jobs, &k);
}

int store_idx_put(struct store *st, MDB_txn *txn, const char *kind, const char *id,
		  const char *key)
{
	char *k = xasprintf("%s:%s", kind, id);
	MDB_val kk = store_strkey(k), v = store_strkey(key);
	int rc = kk.mv_size > STORE_KEY_MAX ? MDB_BAD_VALSIZE : store_put(st, txn, st->idx, &kk, &v, 0);
	free(k);
	return rc;
}

int store_idx_get(struct store *st, MDB_txn *txn, const char *kind, const char *id, char **key)
{
	char *k = xasprintf("%s:%s", kind, id);
	MDB_val kk = store_strkey(k), v;
	*key = NULL;
	int rc = kk.mv_size > STORE_KEY_MAX ? MDB_NOTFOUND : mdb_get(txn, st->idx, &kk, &v);
	if (rc == 0)
		*key = xstrndup(v.mv_data, v.mv_size);
	free(k);
	return rc;
}

int store_tl_add(struct store *st, MDB_txn *txn, const char *key, struct conv_rec *c,
		 const char *event, const char *detail)
{
	char buf[STORE_KEY_MAX + 9];
	struct tl_rec t = { .ts = clock_wall_ms(), .event = (char *)event,
			    .detail = (char *)(detail ? detail : "") };
	MDB_val k = store_seqkey(buf, key, c->tl_seq + 1);
	int rc = rec_put(st, txn, st->tl, &k, tl_fields, NF(tl_fields), &t);
	if (rc == 0)
		c->tl_seq++;
	return rc;
}

int store_tl_get(struct store *st, MDB_txn *txn, const char *key, uint64_t n, struct tl_rec *out)
{
	char buf[STORE_KEY_MAX + 9];
	MDB_val k = store_seqkey(buf, key, n);
	return rec_get(txn, st->tl, &k, tl_fields, NF(tl_fields), out, sizeof(*out));
}

int store_modes_sync(struct store *st, MDB_txn *txn, const char *key, const struct conv_rec *c)
{
	MDB_val k = store_strkey(key), v = { .mv_size = 0, .mv_data = (void *)"" };
	if (c->mode != MODE_AI)
		return store_put(st, txn, st->modes, &k, &v, 0);
	int rc = store_del(st, txn, st->modes, &k);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_conv_find(struct store *st, MDB_txn *txn, const char *address, const char *business,
		    char **key)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	*key = NULL;
	/* Longer than any key the router stores: not one of ours (and LMDB
	 * would refuse the lookup). */
	if (strlen(address) + 1 + (business ? strlen(business) : 0) > STORE_KEY_MAX)
		return MDB_NOTFOUND;
	if (business) {
		char *full = convkey_join(address, business);
		k = store_strkey(full);
		int rc = mdb_get(txn, st->conv, &k, &v);
		if (rc == 0)
			*key = full;
		else
			free(full);
		return rc;
	}
	char *prefix = convkey_join(address, "");
	size_t pl = strlen(prefix);
	int rc = mdb_cursor_open(txn, st->conv, &cur);
	if (rc == 0) {
		k = store_strkey(prefix);
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && (k.mv_size < pl || memcmp(k.mv_data, prefix, pl) != 0))
			rc = MDB_NOTFOUND;
		if (rc == 0)
			*key = xstrndup(k.mv_data, k.mv_size);
		mdb_cursor_close(cur);
	}
	free(prefix);
	return rc;
}

/* key \0, the prefix of a conversation's entries in hist, pend and tl. */
static MDB_val store_prefix(char *buf, const char *key)
{
	size_t n = strlen(key);
	if (n > STORE_KEY_MAX)
		n = STORE_KEY_MAX;
	memcpy(buf, key, n);
	buf[n] = '\0';
	MDB_val k = { .mv_size = n + 1, .mv_data = buf };
	return k;
}

/* Deletes idx kind:id when it points to key (an SID is never reused, but an
 * entry of another conversation must stay whatever happens). */
static int store_idx_del_if(struct store *st, MDB_txn *txn, const char *kind, const char *id,
			    size_t idlen, const char *key, uint64_t *n)
{
	char *k = xasprintf("%s:%.*s", kind, (int)idlen, id);
	MDB_val kk = store_strkey(k), v;
	int rc = kk.mv_size > STORE_KEY_MAX ? MDB_NOTFOUND : mdb_get(txn, st->idx, &kk, &v);
	if (rc == 0 && v.mv_size == strlen(key) && memcmp(v.mv_data, key, v.mv_size) == 0 &&
	    (rc = store_del(st, txn, st->idx, &kk)) == 0)
		(*n)++;
	free(k);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The sent-message index entries of one history turn (msid is "SM..,SM.."). */
static int store_erase_sent(struct store *st, MDB_txn *txn, const MDB_val *val, const char *key,
			    uint64_t *n)
{
	struct hist_rec h;
	int rc = rec_decode(hist_fields, NF(hist_fields), val, &h, sizeof(h));
	if (rc)
		return 0; /* unreadable: it goes anyway, its index entries (if any) stay */
	for (const char *p = h.msid; p && *p && rc == 0;) {
		size_t len = strcspn(p, ",");
		if (len)
			rc = store_idx_del_if(st, txn, "sm", p, len, key, n);
		p += len;
		if (*p == ',')
			p++;
	}
	hist_rec_release(&h);
	return rc;
}

/* Deletes every entry "key \0 ..." of dbi; hist entries first drop their sm index. */
static int store_erase_seq(struct store *st, MDB_txn *txn, MDB_dbi dbi, const char *key,
			   uint64_t *n, uint64_t *idx)
{
	char buf[STORE_KEY_MAX + 1];
	MDB_val prefix = store_prefix(buf, key), k, v;
	MDB_cursor *cur = NULL;
	int rc = mdb_cursor_open(txn, dbi, &cur);
	/* Re-seek after each delete: plain and obviously right, log n per entry. */
	while (rc == 0) {
		k = prefix;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc || k.mv_size < prefix.mv_size || memcmp(k.mv_data, buf, prefix.mv_size) != 0)
			break;
		if (idx && (rc = store_erase_sent(st, txn, &v, key, idx)))
			break;
		if ((rc = store_cursor_del(st, cur, dbi)) == 0)
			(*n)++;
	}
	if (cur)
		mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes the index entries kind:* that point to key (a scan of that prefix). */
static int store_erase_idx_kind(struct store *st, MDB_txn *txn, const char *kind, const char *key,
				uint64_t *n)
{
	char pre[8];
	size_t pl = (size_t)snprintf(pre, sizeof(pre), "%s:", kind), kl = strlen(key);
	MDB_val k = { .mv_size = pl, .mv_data = pre }, v;
	MDB_cursor *cur = NULL;
	char **del = NULL;
	size_t ndel = 0;
	int rc = mdb_cursor_open(txn, st->idx, &cur);
	if (rc)
		return rc;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     rc == 0 && k.mv_size >= pl && memcmp(k.mv_data, pre, pl) == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (v.mv_size == kl && memcmp(v.mv_data, key, kl) == 0) {
			del = xrealloc(del, (ndel + 1) * sizeof(*del));
			del[ndel++] = xstrndup(k.mv_data, k.mv_size);
		}
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	for (size_t i = 0; i < ndel; i++) {
		MDB_val dk = store_strkey(del[i]);
		if (rc == 0 && (rc = store_del(st, txn, st->idx, &dk)) == 0)
			(*n)++;
		free(del[i]);
	}
	free(del);
	return rc;
}

int store_conv_erase(struct store *st, MDB_txn *txn, const char *key, struct store_erased *out)
{
	MDB_val k = store_strkey(key);
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = store_erase_seq(st, txn, st->hist, key, &out->hist, &out->idx)) ||
	    (rc = store_erase_seq(st, txn, st->pend, key, &out->pend, NULL)) ||
	    (rc = store_erase_seq(st, txn, st->tl, key, &out->tl, NULL)) ||
	    (rc = store_erase_idx_kind(st, txn, "ch", key, &out->idx)) ||
	    (rc = store_erase_idx_kind(st, txn, "wt", key, &out->idx)))
		return rc;
	if ((rc = store_del(st, txn, st->modes, &k)) == 0)
		out->modes = 1;
	else if (rc != MDB_NOTFOUND)
		return rc;
	struct conv_rec c;
	if ((rc = store_conv_get(st, txn, key, &c)) == 0) {
		unsigned char buf[RECENT_KEY_MAX];
		MDB_val rk = store_recent_key(buf, c.ix_mode, c.ix_at, key, strlen(key));
		if (c.ix_on && (rc = store_del(st, txn, st->recent, &rk)) == MDB_NOTFOUND)
			rc = 0;
		if (rc == 0 && c.ix_on)
			rc = store_count_add(st, txn, c.ix_mode, -1);
		conv_rec_release(&c);
		if (rc)
			return rc;
	} else if (rc != MDB_NOTFOUND) {
		return rc;
	}
	if ((rc = store_del(st, txn, st->conv, &k)) == 0)
		out->conv = 1;
	return rc;
}

int store_audit_add(struct store *st, MDB_txn *txn, const struct audit_rec *a)
{
	size_t len = 0;
	char *buf = rec_encode(audit_fields, NF(audit_fields), a, &len);
	unsigned char b[8];
	int rc = MDB_KEYEXIST;
	/* Two purges in one millisecond: the second takes the next free one. */
	for (uint64_t ts = a->ts; rc == MDB_KEYEXIST; ts++) {
		/* v anew each time: MDB_KEYEXIST points it at the existing value. */
		MDB_val k = store_idkey(b, ts), v = { .mv_size = len, .mv_data = buf };
		rc = store_put(st, txn, st->audit, &k, &v, MDB_NOOVERWRITE);
	}
	free(buf);
	return rc;
}
