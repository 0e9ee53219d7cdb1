/*
 * convlist — pages of conversations for people: newest activity first from
 * the recent index (store.h), so a page costs its own rows whatever the
 * store holds; the escalation queue; search by name or number; counts by
 * mode. batonctl and the console list through here.
 *
 * A page ends with a token ("next") that the following page starts after;
 * pages stay consistent while the router writes (a conversation that moves
 * to the front shows on the first page again, never twice on one page).
 */
#ifndef BATON_CONVLIST_H
#define BATON_CONVLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

enum convlist_filter {
	CONVLIST_ALL,
	CONVLIST_AI,
	CONVLIST_ESCALATING,
	CONVLIST_HUMAN,
	/* escalating and human, longest waiting first (one page: it is short) */
	CONVLIST_QUEUE,
};

/* Longest search text. */
#define CONVLIST_QUERY_MAX 100

struct convlist_query {
	enum convlist_filter filter;
	size_t limit;       /* rows wanted, at least 1 */
	const char *after;  /* a page's next token; NULL = from the newest */
	uint64_t since;     /* only conversations active at or after (wall ms); 0 = all */
	/* Search: conversations whose WhatsApp name contains q (case and
	 * accents ignored) or, when q is a number ("+55 11 9888-1111"), whose
	 * customer's number contains its digits. NULL or "" = no search. */
	const char *q;
	size_t max_reads;   /* a search stops after this many records (partial); 0 = no limit */
};

struct convlist_row {
	char *key;
	struct conv_rec c;
};

struct convlist {
	struct convlist_row *rows;
	size_t n;
	char *next;         /* token of the following page; NULL at the end */
	bool partial;       /* the search stopped at max_reads; next goes on */
	uint64_t counts[3]; /* the whole store's conversations by mode */
	uint64_t reads;     /* records looked at */
};

/** "all", "ai", "escalating", "human" or "queue"; -1 otherwise. */
int convlist_filter_parse(const char *s, enum convlist_filter *out);

/**
 * One page in txn. 0; EINVAL for a bad token or a q over CONVLIST_QUERY_MAX;
 * ENOTSUP when the state has no recent index (written by an older router:
 * the new router builds it when it starts); or an LMDB error. out is
 * released with convlist_release in every case.
 */
int convlist_page(struct store *st, MDB_txn *txn, const struct convlist_query *q,
		  struct convlist *out);
void convlist_release(struct convlist *l);

/** text with case and accents folded (NFD, marks dropped, lowercase); caller
 *  frees; NULL when text is not UTF-8. */
char *convlist_fold(const char *text);

#endif
