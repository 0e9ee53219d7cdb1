/* journal — a transaction's writes, for a second store; see journal.h. */
#include "journal.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static struct journal_entry *journal_add(struct journal *j, uint8_t db, const void *key,
					 size_t klen)
{
	if (j->n == j->cap) {
		j->cap = j->cap ? j->cap * 2 : 256;
		j->e = xrealloc(j->e, j->cap * sizeof(*j->e));
	}
	struct journal_entry *e = &j->e[j->n];
	memset(e, 0, sizeof(*e));
	e->db = db;
	e->seq = j->n++;
	e->key = xmalloc(klen ? klen : 1);
	memcpy(e->key, key, klen);
	e->klen = klen;
	return e;
}

void journal_put(struct journal *j, uint8_t db, const void *key, size_t klen, const void *val,
		 size_t vlen)
{
	struct journal_entry *e = journal_add(j, db, key, klen);
	e->val = xmalloc(vlen ? vlen : 1);
	memcpy(e->val, val, vlen);
	e->vlen = vlen;
}

void journal_del(struct journal *j, uint8_t db, const void *key, size_t klen)
{
	journal_add(j, db, key, klen)->del = true;
}

static int journal_cmp(const void *a, const void *b)
{
	const struct journal_entry *x = a, *y = b;
	if (x->db != y->db)
		return x->db < y->db ? -1 : 1;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, n);
	if (c)
		return c;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void journal_free_entry(struct journal_entry *e)
{
	free(e->key);
	free(e->val);
	e->key = e->val = NULL;
}

void journal_compact(struct journal *j)
{
	if (j->n < 2)
		return;
	qsort(j->e, j->n, sizeof(*j->e), journal_cmp);
	size_t out = 0;
	for (size_t i = 0; i < j->n; i++) {
		bool last = i + 1 == j->n || j->e[i + 1].db != j->e[i].db ||
			    j->e[i + 1].klen != j->e[i].klen ||
			    memcmp(j->e[i + 1].key, j->e[i].key, j->e[i].klen) != 0;
		if (!last) {
			journal_free_entry(&j->e[i]);
			continue;
		}
		j->e[out++] = j->e[i];
	}
	j->n = out;
}

void journal_clear(struct journal *j)
{
	for (size_t i = 0; i < j->n; i++)
		journal_free_entry(&j->e[i]);
	j->n = 0;
}

void journal_release(struct journal *j)
{
	journal_clear(j);
	free(j->e);
	j->e = NULL;
	j->cap = 0;
}
