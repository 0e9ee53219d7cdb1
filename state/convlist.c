/*
 * convlist — pages of conversations from the recent index; see convlist.h.
 *
 * The walk merges the index's three mode ranges (each newest first) into
 * one order: later activity first, then the larger key, the order each
 * range already has. A token is the (time, key) of the last row looked at,
 * the key in hex so that any byte survives a URL.
 */
#include "convlist.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "convkey.h"
#include "xalloc.h"

int convlist_filter_parse(const char *s, enum convlist_filter *out)
{
	static const char *const names[] = { "all", "ai", "escalating", "human", "queue" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (s && !strcmp(s, names[i])) {
			*out = (enum convlist_filter)i;
			return 0;
		}
	}
	return -1;
}

char *convlist_fold(const char *text)
{
	size_t len = 0;
	uint8_t *nfd = u8_normalize(UNINORM_NFD, (const uint8_t *)text, strlen(text), NULL, &len);
	if (!nfd)
		return NULL;
	/* A lowercased character takes at most 4 bytes; NFD never shrinks below one per byte. */
	char *out = xmalloc(len * 4 + 1);
	size_t o = 0;
	const uint8_t *p = nfd, *end = nfd + len;
	while (p < end) {
		ucs4_t uc;
		int n = u8_mbtoucr(&uc, p, (size_t)(end - p));
		if (n < 0)
			goto fail;
		p += n;
		if (uc_is_general_category(uc, UC_CATEGORY_M))
			continue; /* the accents NFD split off */
		int w = u8_uctomb((uint8_t *)out + o, uc_tolower(uc), 4);
		if (w > 0)
			o += (size_t)w;
	}
	out[o] = '\0';
	free(nfd);
	return out;
fail:
	free(nfd);
	free(out);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* search                                                              */

struct convlist_search {
	char *name;                           /* folded; NULL = no search */
	char digits[CONVLIST_QUERY_MAX + 1];  /* "" = q is not a number */
};

/* 0, or -1 when q is too long. An empty q searches nothing. */
static int convlist_search_parse(const char *q, struct convlist_search *out)
{
	memset(out, 0, sizeof(*out));
	if (!q)
		return 0;
	while (*q == ' ')
		q++;
	size_t n = strlen(q);
	while (n > 0 && q[n - 1] == ' ')
		n--;
	if (n > CONVLIST_QUERY_MAX)
		return -1;
	if (n == 0)
		return 0;
	char *trimmed = xstrndup(q, n);
	out->name = convlist_fold(trimmed);
	if (!out->name)
		out->name = xstrdup(""); /* not UTF-8: matches no name */
	/* "+55 11 9888", "(11) 98888-1111": a number as people type it. */
	size_t d = 0;
	bool number = true;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)trimmed[i];
		if (isdigit(ch))
			out->digits[d++] = (char)ch;
		else if (!strchr("+-(). ", ch))
			number = false;
	}
	out->digits[number ? d : 0] = '\0';
	free(trimmed);
	return 0;
}

static bool convlist_search_match(const struct convlist_search *s, const char *key,
				  const struct conv_rec *c)
{
	if (!s->name)
		return true;
	if (*s->name && c->name && *c->name) {
		char *name = convlist_fold(c->name);
		bool hit = name && strstr(name, s->name);
		free(name);
		if (hit)
			return true;
	}
	if (!s->digits[0])
		return false;
	/* The customer's digits, in order. */
	char digits[STORE_KEY_MAX + 1];
	size_t d = 0, n = convkey_customer_len(key);
	for (size_t i = 0; i < n && d < sizeof(digits) - 1; i++)
		if (isdigit((unsigned char)key[i]))
			digits[d++] = key[i];
	digits[d] = '\0';
	return strstr(digits, s->digits) != NULL;
}

/* ------------------------------------------------------------------ */
/* tokens                                                              */

static char *convlist_token(uint64_t at, const char *key, size_t keylen)
{
	char *t = xmalloc(24 + keylen * 2 + 1);
	int o = snprintf(t, 24, "%" PRIu64 "-", at);
	for (size_t i = 0; i < keylen; i++)
		o += snprintf(t + o, 3, "%02x", (unsigned char)key[i]);
	return t;
}

/* 0, or -1 for text that is not a token. *key is malloc'd. */
static int convlist_token_parse(const char *t, uint64_t *at, char **key)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(t, &end, 10);
	if (errno || end == t || *end != '-' || !isdigit((unsigned char)*t))
		return -1;
	const char *hex = end + 1;
	size_t n = strlen(hex);
	if (n == 0 || n % 2 || n / 2 > STORE_KEY_MAX)
		return -1;
	char *k = xmalloc(n / 2 + 1);
	for (size_t i = 0; i < n / 2; i++) {
		unsigned x;
		if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]) ||
		    sscanf(hex + 2 * i, "%2x", &x) != 1 || x == 0) {
			free(k);
			return -1;
		}
		k[i] = (char)x;
	}
	k[n / 2] = '\0';
	*at = v;
	*key = k;
	return 0;
}

/* ------------------------------------------------------------------ */
/* pages                                                               */

struct convlist_head {
	struct store_recent it;
	bool live;
	uint64_t at;
	const char *key;
	size_t keylen;
};

static int convlist_advance(struct convlist_head *h)
{
	int rc = store_recent_next(&h->it, &h->at, &h->key, &h->keylen);
	h->live = rc == 0;
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Whether a comes before b: later activity, then the larger key. */
static bool convlist_before(const struct convlist_head *a, const struct convlist_head *b)
{
	if (a->at != b->at)
		return a->at > b->at;
	size_t n = a->keylen < b->keylen ? a->keylen : b->keylen;
	int c = memcmp(a->key, b->key, n);
	return c ? c > 0 : a->keylen > b->keylen;
}

static void convlist_push(struct convlist *out, size_t *cap, char *key, struct conv_rec *c)
{
	if (out->n == *cap) {
		*cap = *cap ? *cap * 2 : 32;
		out->rows = xrealloc(out->rows, *cap * sizeof(*out->rows));
	}
	out->rows[out->n].key = key;
	out->rows[out->n].c = *c;
	out->n++;
}

static int convlist_recent(struct store *st, MDB_txn *txn, const struct convlist_query *q,
			   const struct convlist_search *s, struct convlist *out)
{
	struct convlist_head heads[3];
	enum conv_mode modes[3];
	size_t nh = 0, cap = 0;
	uint64_t from_at = 0;
	char *from_key = NULL;
	int rc = 0;

	if (q->after && convlist_token_parse(q->after, &from_at, &from_key) < 0)
		return EINVAL;
	switch (q->filter) {
	case CONVLIST_AI: modes[nh++] = MODE_AI; break;
	case CONVLIST_ESCALATING: modes[nh++] = MODE_ESCALATING; break;
	case CONVLIST_HUMAN: modes[nh++] = MODE_HUMAN; break;
	default:
		modes[nh++] = MODE_AI;
		modes[nh++] = MODE_ESCALATING;
		modes[nh++] = MODE_HUMAN;
		break;
	}
	memset(heads, 0, sizeof(heads));
	for (size_t i = 0; i < nh && rc == 0; i++) {
		rc = store_recent_open(st, txn, modes[i], from_at, from_key, &heads[i].it);
		if (rc == 0)
			rc = convlist_advance(&heads[i]);
	}
	free(from_key);
	if (rc == EINVAL)
		rc = ENOTSUP;
	bool more = false;
	while (rc == 0) {
		struct convlist_head *h = NULL;
		for (size_t i = 0; i < nh; i++)
			if (heads[i].live && (!h || convlist_before(&heads[i], h)))
				h = &heads[i];
		if (!h || (q->since && h->at < q->since))
			break; /* the end, or the rest is older still */
		if (out->n == q->limit || (s->name && q->max_reads && out->reads >= q->max_reads)) {
			/* More follows, after the last row looked at. */
			more = true;
			out->partial = out->n < q->limit;
			break;
		}
		char *key = xstrndup(h->key, h->keylen);
		struct conv_rec c;
		free(out->next);
		out->next = convlist_token(h->at, h->key, h->keylen);
		out->reads++;
		if ((rc = convlist_advance(h)) == 0 && (rc = store_conv_get(st, txn, key, &c)) == 0) {
			if (convlist_search_match(s, key, &c)) {
				convlist_push(out, &cap, key, &c);
				key = NULL;
			} else {
				conv_rec_release(&c);
			}
		} else if (rc == MDB_NOTFOUND) {
			rc = 0; /* an entry without its record: not ours to fix here */
		}
		free(key);
	}
	if (!more) {
		free(out->next);
		out->next = NULL;
	}
	for (size_t i = 0; i < nh; i++)
		store_recent_close(&heads[i].it);
	return rc;
}

/* The queue: longest waiting first (never escalated records last). */
static int convlist_by_wait(const void *a, const void *b)
{
	const struct convlist_row *x = a, *y = b;
	uint64_t ex = x->c.esc_at ? x->c.esc_at : UINT64_MAX, ey = y->c.esc_at ? y->c.esc_at : UINT64_MAX;
	if (ex != ey)
		return ex < ey ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* The modes index holds the conversations not in ai mode: small even when
 * conv is huge, so the queue is read whole and sorted. */
static int convlist_queue(struct store *st, MDB_txn *txn, const struct convlist_query *q,
			  const struct convlist_search *s, struct convlist *out)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	size_t cap = 0;
	int rc = mdb_cursor_open(txn, st->modes, &cur);
	for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct conv_rec c;
		char *key = xstrndup(k.mv_data, k.mv_size);
		out->reads++;
		if (store_conv_get(st, txn, key, &c) == 0) {
			if (c.mode != MODE_AI && (!q->since || conv_last_activity(&c) >= q->since) &&
			    convlist_search_match(s, key, &c)) {
				convlist_push(out, &cap, key, &c);
				key = NULL;
			} else {
				conv_rec_release(&c);
			}
		}
		free(key);
	}
	if (cur)
		mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return rc;
	if (out->n)
		qsort(out->rows, out->n, sizeof(*out->rows), convlist_by_wait);
	while (out->n > q->limit) {
		out->n--;
		free(out->rows[out->n].key);
		conv_rec_release(&out->rows[out->n].c);
	}
	return 0;
}

int convlist_page(struct store *st, MDB_txn *txn, const struct convlist_query *q,
		  struct convlist *out)
{
	struct convlist_search s;
	memset(out, 0, sizeof(*out));
	if (q->limit < 1 || convlist_search_parse(q->q, &s) < 0)
		return EINVAL;
	int rc = store_mode_counts(st, txn, out->counts);
	if (rc == 0)
		rc = q->filter == CONVLIST_QUEUE ? convlist_queue(st, txn, q, &s, out)
						 : convlist_recent(st, txn, q, &s, out);
	free(s.name);
	return rc;
}

void convlist_release(struct convlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->rows[i].key);
		conv_rec_release(&l->rows[i].c);
	}
	free(l->rows);
	free(l->next);
	memset(l, 0, sizeof(*l));
}
