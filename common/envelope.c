/*
 * envelope — msgpack encode/decode of the pipeline's messages.
 *
 * Two tables drive everything: env_fields (key, msgpack kind, where it
 * lives in struct envelope) and env_types (which fields each type needs
 * and may carry). Encoding writes only a type's allowed fields; decoding
 * ignores unknown keys (forward compatible) but rejects a known key of
 * the wrong kind.
 */
#include "envelope.h"
#include "mpscan.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

enum env_kind { FK_STR, FK_INT, FK_BOOL, FK_TURNS, FK_CLAIMS };

struct env_field {
	const char *key;
	enum env_kind kind;
	size_t offset;
};

#define EF(k, kind, field) { k, kind, offsetof(struct envelope, field) }

/* Bit i of a mask stands for env_fields[i]. */
static const struct env_field env_fields[] = {
	EF("conv", FK_STR, conv),       /* 0 */
	EF("sid", FK_STR, sid),         /* 1 */
	EF("from", FK_STR, from),       /* 2 */
	EF("to", FK_STR, to),           /* 3 */
	EF("body", FK_STR, body),       /* 4 */
	EF("name", FK_STR, name),       /* 5 */
	EF("idem", FK_STR, idem),       /* 6 */
	EF("kind", FK_STR, kind),       /* 7 */
	EF("prompt", FK_STR, prompt),   /* 8 */
	EF("text", FK_STR, text),       /* 9 */
	EF("reason", FK_STR, reason),   /* 10 */
	EF("summary", FK_STR, summary), /* 11 */
	EF("err", FK_STR, err),         /* 12 */
	EF("status", FK_INT, status),   /* 13 */
	EF("credit", FK_INT, credit),   /* 14 */
	EF("nmedia", FK_INT, nmedia),   /* 15 */
	EF("code", FK_INT, code),       /* 16 */
	EF("esc", FK_BOOL, escalate),   /* 17 */
	EF("turns", FK_TURNS, turns),   /* 18 */
	EF("op", FK_STR, op),           /* 19 */
	EF("trigger", FK_STR, trigger), /* 20 */
	EF("ch", FK_STR, ch),           /* 21 */
	EF("mb", FK_STR, mb),           /* 22 */
	EF("kd", FK_STR, kd),           /* 23 */
	EF("uo", FK_STR, uo),           /* 24 */
	EF("wt", FK_STR, wt),           /* 25 */
	EF("seq", FK_INT, seq),         /* 26 */
	EF("tmpl", FK_STR, tmpl),       /* 27 */
	EF("vars", FK_STR, vars),       /* 28 */
	EF("att", FK_INT, attempt),     /* 29 */
	EF("rec", FK_BOOL, reconcile),  /* 30 */
	EF("since", FK_INT, since),     /* 31 */
	EF("excl", FK_STR, exclude),    /* 32 */
	EF("claims", FK_CLAIMS, claims), /* 33 */
	EF("media", FK_STR, media),     /* 34 */
	EF("trs", FK_STR, transcripts), /* 35 */
};

#define NFIELDS (sizeof(env_fields) / sizeof(env_fields[0]))
#define B(i) ((uint64_t)1 << (i))
#define F_CONV B(0)
#define F_SID B(1)
#define F_FROM B(2)
#define F_TO B(3)
#define F_BODY B(4)
#define F_NAME B(5)
#define F_IDEM B(6)
#define F_KIND B(7)
#define F_PROMPT B(8)
#define F_TEXT B(9)
#define F_REASON B(10)
#define F_SUMMARY B(11)
#define F_ERR B(12)
#define F_STATUS B(13)
#define F_CREDIT B(14)
#define F_NMEDIA B(15)
#define F_CODE B(16)
#define F_ESC B(17)
#define F_TURNS B(18)
#define F_OP B(19)
#define F_TRIGGER B(20)
#define F_CH B(21)
#define F_MB B(22)
#define F_KD B(23)
#define F_UO B(24)
#define F_WT B(25)
#define F_SEQ B(26)
#define F_TMPL B(27)
#define F_VARS B(28)
#define F_ATT B(29)
#define F_REC B(30)
#define F_SINCE B(31)
#define F_EXCL B(32)
#define F_CLAIMS B(33)
#define F_MEDIA B(34)
#define F_TRS B(35)
#define F_FLEX_SIDS (F_CH | F_MB | F_KD | F_UO | F_WT)

struct env_type_def {
	const char *name;
	uint64_t required;
	uint64_t allowed; /* includes required */
};

static const struct env_type_def env_types[ENV_TYPE_MAX] = {
	[ENV_INBOUND] = { "inbound", F_SID | F_FROM | F_TO | F_BODY,
			  F_SID | F_FROM | F_TO | F_BODY | F_NAME | F_IDEM | F_NMEDIA | F_MEDIA },
	[ENV_ACK] = { "ack", F_STATUS, F_STATUS | F_ERR },
	[ENV_HELLO] = { "hello", F_KIND | F_CREDIT, F_KIND | F_CREDIT | F_NAME | F_CLAIMS },
	[ENV_JOB_AI] = { "job_ai", F_CONV | F_PROMPT | F_TURNS,
			 F_CONV | F_PROMPT | F_TURNS | F_ATT },
	[ENV_RESULT_AI] = { "result_ai", F_CONV | F_STATUS,
			    F_CONV | F_STATUS | F_TEXT | F_ESC | F_REASON | F_SUMMARY | F_ERR | F_CODE |
				    F_TRIGGER | F_ATT | F_TRS },
	[ENV_JOB_SEND] = { "job_send", F_CONV | F_TO | F_FROM | F_BODY,
			   F_CONV | F_TO | F_FROM | F_BODY | F_TMPL | F_VARS | F_ATT | F_REC |
				   F_SINCE | F_EXCL },
	[ENV_RESULT_SEND] = { "result_send", F_CONV | F_STATUS,
			      F_CONV | F_STATUS | F_SID | F_CODE | F_ERR | F_ATT | F_REC },
	[ENV_JOB_FLEX] = { "job_flex", F_CONV | F_OP | F_FROM | F_TO,
			   F_CONV | F_OP | F_FROM | F_TO | F_NAME | F_TRIGGER | F_REASON | F_SUMMARY |
				   F_TURNS | F_BODY | F_SEQ | F_CH | F_KD | F_UO | F_ATT | F_MEDIA },
	[ENV_RESULT_FLEX] = { "result_flex", F_CONV | F_OP | F_STATUS,
			      F_CONV | F_OP | F_STATUS | F_FLEX_SIDS | F_CODE | F_ERR | F_ATT | F_TRS },
	[ENV_EVENT] = { "event", F_OP,
			F_OP | F_CONV | F_CH | F_WT | F_SID | F_FROM | F_TO | F_BODY | F_NAME |
				F_REASON | F_CODE },
};

static const char *const env_role_names[] = { "customer", "ai", "agent", "system" };

const char *env_strerror(int err)
{
	switch (err) {
	case ENV_EOK: return "ok";
	case ENV_ETRUNCATED: return "truncated or trailing bytes";
	case ENV_ENOTMAP: return "not a map";
	case ENV_EVERSION: return "unknown envelope version";
	case ENV_ETYPE: return "unknown envelope type";
	case ENV_EFIELD: return "field of wrong type";
	case ENV_EMISSING: return "required field missing";
	case ENV_ETOOBIG: return "too big";
	}
	return "unknown error";
}

const char *env_type_name(enum env_type t)
{
	if ((int)t <= 0 || t >= ENV_TYPE_MAX || !env_types[t].name)
		return "unknown";
	return env_types[t].name;
}

const char *env_role_name(enum env_role r)
{
	if ((unsigned)r > ROLE_SYSTEM)
		return "unknown";
	return env_role_names[r];
}

int env_role_parse(const char *s)
{
	for (int i = 0; i <= ROLE_SYSTEM; i++)
		if (strcmp(s, env_role_names[i]) == 0)
			return i;
	return -1;
}

void env_add_turn(struct envelope *env, enum env_role role, const char *text, uint64_t ts)
{
	env->turns = xrealloc(env->turns, (env->nturns + 1) * sizeof(*env->turns));
	env->turns[env->nturns].role = role;
	env->turns[env->nturns].text = xstrdup(text);
	env->turns[env->nturns].ts = ts;
	env->turns[env->nturns].seq = 0;
	env->turns[env->nturns].media = NULL;
	env->turns[env->nturns].transcript = false;
	env->nturns++;
}

struct env_turn *env_add_turn_seq(struct envelope *env, enum env_role role, const char *text,
				  uint64_t ts, uint64_t seq, const char *media)
{
	env_add_turn(env, role, text, ts);
	struct env_turn *t = &env->turns[env->nturns - 1];
	t->seq = seq;
	t->media = media && *media ? xstrdup(media) : NULL;
	return t;
}

void env_release(struct envelope *env)
{
	for (size_t i = 0; i < NFIELDS; i++)
		if (env_fields[i].kind == FK_STR) {
			char **s = (char **)((char *)env + env_fields[i].offset);
			free(*s);
		}
	for (size_t i = 0; i < env->nturns; i++) {
		free(env->turns[i].text);
		free(env->turns[i].media);
	}
	free(env->turns);
	free(env->claims);
	memset(env, 0, sizeof(*env));
}

/* --- encoding --- */

static void env_pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static void env_pack_key(msgpack_packer *pk, const char *k)
{
	env_pack_str(pk, k);
}

/* A field is written when the type allows it and it holds a value. */
static bool env_field_present(const struct envelope *env, size_t i)
{
	const void *p = (const char *)env + env_fields[i].offset;
	switch (env_fields[i].kind) {
	case FK_STR: return *(char *const *)p != NULL;
	case FK_INT: return true;
	case FK_BOOL: return true;
	case FK_TURNS: return true;
	case FK_CLAIMS: return env->nclaims > 0;
	}
	return false;
}

int env_encode(const struct envelope *env, char **out, size_t *outlen)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	*out = NULL;
	*outlen = 0;
	if ((int)env->type <= 0 || env->type >= ENV_TYPE_MAX || !env_types[env->type].name)
		return ENV_ETYPE;
	const struct env_type_def *td = &env_types[env->type];
	for (size_t i = 0; i < NFIELDS; i++)
		if ((td->required & B(i)) && !env_field_present(env, i))
			return ENV_EMISSING;
	if (env->nturns > ENV_TURNS_MAX || env->nclaims > ENV_CLAIMS_MAX)
		return ENV_ETOOBIG;

	size_t count = 4;
	for (size_t i = 0; i < NFIELDS; i++)
		if ((td->allowed & B(i)) && env_field_present(env, i))
			count++;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, count);
	env_pack_key(&pk, "v");
	msgpack_pack_unsigned_int(&pk, ENV_VERSION);
	env_pack_key(&pk, "t");
	msgpack_pack_unsigned_int(&pk, (unsigned)env->type);
	env_pack_key(&pk, "id");
	msgpack_pack_uint64(&pk, env->id);
	env_pack_key(&pk, "ts");
	msgpack_pack_uint64(&pk, env->ts);
	for (size_t i = 0; i < NFIELDS; i++) {
		if (!(td->allowed & B(i)) || !env_field_present(env, i))
			continue;
		const void *p = (const char *)env + env_fields[i].offset;
		env_pack_key(&pk, env_fields[i].key);
		switch (env_fields[i].kind) {
		case FK_STR:
			env_pack_str(&pk, *(char *const *)p);
			break;
		case FK_INT:
			msgpack_pack_int64(&pk, *(const int64_t *)p);
			break;
		case FK_BOOL:
			if (*(const bool *)p)
				msgpack_pack_true(&pk);
			else
				msgpack_pack_false(&pk);
			break;
		case FK_TURNS:
			msgpack_pack_array(&pk, env->nturns);
			for (size_t t = 0; t < env->nturns; t++) {
				const struct env_turn *tu = &env->turns[t];
				/* seq, media and tr only when set: old peers ignore them. */
				msgpack_pack_map(&pk, 3 + (tu->seq != 0) + (tu->media != NULL) +
							      tu->transcript);
				env_pack_key(&pk, "r");
				env_pack_str(&pk, env_role_name(tu->role));
				env_pack_key(&pk, "x");
				env_pack_str(&pk, tu->text ? tu->text : "");
				env_pack_key(&pk, "ts");
				msgpack_pack_uint64(&pk, tu->ts);
				if (tu->seq) {
					env_pack_key(&pk, "seq");
					msgpack_pack_uint64(&pk, tu->seq);
				}
				if (tu->media) {
					env_pack_key(&pk, "m");
					env_pack_str(&pk, tu->media);
				}
				if (tu->transcript) {
					env_pack_key(&pk, "tr");
					msgpack_pack_true(&pk);
				}
			}
			break;
		case FK_CLAIMS:
			/* Flat pairs: job id, attempt, job id, attempt... */
			msgpack_pack_array(&pk, env->nclaims * 2);
			for (size_t c = 0; c < env->nclaims; c++) {
				msgpack_pack_uint64(&pk, env->claims[c].id);
				msgpack_pack_uint64(&pk, env->claims[c].attempt);
			}
			break;
		}
	}
	if (sb.size > ENV_FRAME_MAX) {
		msgpack_sbuffer_destroy(&sb);
		return ENV_ETOOBIG;
	}
	*out = sb.data; /* sbuffer memory is malloc'd: the caller frees it */
	*outlen = sb.size;
	return ENV_EOK;
}

/* --- decoding --- */

static bool env_key_is(const msgpack_object *k, const char *name)
{
	size_t n = strlen(name);
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
	       memcmp(k->via.str.ptr, name, n) == 0;
}

static int env_get_u64(const msgpack_object *o, uint64_t *out)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return ENV_EFIELD;
	*out = o->via.u64;
	return 0;
}

static int env_get_i64(const msgpack_object *o, int64_t *out)
{
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > INT64_MAX)
			return ENV_EFIELD;
		*out = (int64_t)o->via.u64;
		return 0;
	}
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*out = o->via.i64;
		return 0;
	}
	return ENV_EFIELD;
}

static int env_get_str(const msgpack_object *o, char **out)
{
	if (o->type != MSGPACK_OBJECT_STR)
		return ENV_EFIELD;
	if (o->via.str.size > ENV_STR_MAX)
		return ENV_ETOOBIG;
	free(*out); /* a repeated key keeps the last value */
	*out = xstrndup(o->via.str.ptr, o->via.str.size);
	return 0;
}

static int env_get_turns(const msgpack_object *o, struct envelope *env)
{
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return ENV_EFIELD;
	if (o->via.array.size > ENV_TURNS_MAX)
		return ENV_ETOOBIG;
	if (env->nturns)
		return ENV_EFIELD; /* two "turns" keys: refuse rather than guess */
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		const msgpack_object *t = &o->via.array.ptr[i];
		char *role = NULL, *text = NULL, *media = NULL;
		uint64_t ts = 0, seq = 0;
		bool transcript = false;
		int rc = 0, r;
		if (t->type != MSGPACK_OBJECT_MAP)
			return ENV_EFIELD;
		for (uint32_t j = 0; j < t->via.map.size && rc == 0; j++) {
			const msgpack_object *k = &t->via.map.ptr[j].key, *v = &t->via.map.ptr[j].val;
			if (env_key_is(k, "r"))
				rc = env_get_str(v, &role);
			else if (env_key_is(k, "x"))
				rc = env_get_str(v, &text);
			else if (env_key_is(k, "ts"))
				rc = env_get_u64(v, &ts);
			else if (env_key_is(k, "seq"))
				rc = env_get_u64(v, &seq);
			else if (env_key_is(k, "m"))
				rc = env_get_str(v, &media);
			else if (env_key_is(k, "tr")) {
				if (v->type != MSGPACK_OBJECT_BOOLEAN)
					rc = ENV_EFIELD;
				else
					transcript = v->via.boolean;
			}
		}
		if (rc == 0 && (!role || !text))
			rc = ENV_EMISSING;
		if (rc == 0 && (r = env_role_parse(role)) < 0)
			rc = ENV_EFIELD;
		if (rc == 0) {
			env->turns = xrealloc(env->turns, (env->nturns + 1) * sizeof(*env->turns));
			env->turns[env->nturns].role = (enum env_role)r;
			env->turns[env->nturns].text = text;
			env->turns[env->nturns].ts = ts;
			env->turns[env->nturns].seq = seq;
			env->turns[env->nturns].media = media;
			env->turns[env->nturns].transcript = transcript;
			env->nturns++;
			text = NULL;
			media = NULL;
		}
		free(role);
		free(text);
		free(media);
		if (rc)
			return rc;
	}
	return 0;
}

static int env_get_claims(const msgpack_object *o, struct envelope *env)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size % 2)
		return ENV_EFIELD;
	if (o->via.array.size / 2 > ENV_CLAIMS_MAX)
		return ENV_ETOOBIG;
	if (env->nclaims)
		return ENV_EFIELD; /* two "claims" keys */
	size_t n = o->via.array.size / 2;
	if (!n)
		return 0;
	env->claims = xcalloc(n, sizeof(*env->claims));
	env->nclaims = n;
	for (size_t i = 0; i < n; i++) {
		int rc = env_get_u64(&o->via.array.ptr[2 * i], &env->claims[i].id);
		if (rc == 0)
			rc = env_get_u64(&o->via.array.ptr[2 * i + 1], &env->claims[i].attempt);
		if (rc)
			return rc;
	}
	return 0;
}

static int env_decode_map(const msgpack_object *root, struct envelope *env)
{
	uint64_t seen = 0;
	uint64_t v = 0, t = 0;
	bool have_v = false, have_t = false;
	const msgpack_object_kv *kv = root->via.map.ptr;
	uint32_t n = root->via.map.size;

	/* Version and type first: they decide how to read the rest. */
	for (uint32_t i = 0; i < n; i++) {
		if (env_key_is(&kv[i].key, "v")) {
			if (env_get_u64(&kv[i].val, &v))
				return ENV_EFIELD;
			have_v = true;
		} else if (env_key_is(&kv[i].key, "t")) {
			if (env_get_u64(&kv[i].val, &t))
				return ENV_EFIELD;
			have_t = true;
		}
	}
	if (!have_v || !have_t)
		return ENV_EMISSING;
	if (v != ENV_VERSION)
		return ENV_EVERSION;
	if (t == 0 || t >= ENV_TYPE_MAX || !env_types[t].name)
		return ENV_ETYPE;
	env->version = (unsigned)v;
	env->type = (enum env_type)t;
	const struct env_type_def *td = &env_types[t];

	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object *k = &kv[i].key, *val = &kv[i].val;
		int rc = 0;
		if (env_key_is(k, "id")) {
			rc = env_get_u64(val, &env->id);
		} else if (env_key_is(k, "ts")) {
			rc = env_get_u64(val, &env->ts);
		} else {
			for (size_t f = 0; f < NFIELDS; f++) {
				if (!env_key_is(k, env_fields[f].key))
					continue;
				if (!(td->allowed & B(f)))
					break; /* known key, not ours: ignore like unknown */
				void *p = (char *)env + env_fields[f].offset;
				switch (env_fields[f].kind) {
				case FK_STR: rc = env_get_str(val, (char **)p); break;
				case FK_INT: rc = env_get_i64(val, (int64_t *)p); break;
				case FK_BOOL:
					if (val->type != MSGPACK_OBJECT_BOOLEAN)
						rc = ENV_EFIELD;
					else
						*(bool *)p = val->via.boolean;
					break;
				case FK_TURNS: rc = env_get_turns(val, env); break;
				case FK_CLAIMS: rc = env_get_claims(val, env); break;
				}
				seen |= B(f);
				break;
			}
		}
		if (rc)
			return rc;
	}
	if ((seen & td->required) != td->required)
		return ENV_EMISSING;
	return ENV_EOK;
}

/* Deepest nesting a valid envelope has: map > turns array > turn map. */
#define ENV_DEPTH_MAX 4

int env_decode(const void *buf, size_t len, struct envelope *env)
{
	msgpack_unpacked up;
	size_t off = 0;
	int rc;

	memset(env, 0, sizeof(*env));
	if (len > ENV_FRAME_MAX)
		return ENV_ETOOBIG;
	/* Before msgpack-c allocates from a hostile count (mpscan.h). */
	if (mpscan_size(buf, len, ENV_DEPTH_MAX) != len)
		return ENV_ETRUNCATED;
	msgpack_unpacked_init(&up);
	msgpack_unpack_return ur = msgpack_unpack_next(&up, buf, len, &off);
	if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
		rc = ENV_ETRUNCATED;
	else if (up.data.type != MSGPACK_OBJECT_MAP)
		rc = ENV_ENOTMAP;
	else
		rc = env_decode_map(&up.data, env);
	msgpack_unpacked_destroy(&up);
	if (rc)
		env_release(env);
	return rc;
}
