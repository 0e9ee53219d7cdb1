/*
 * convkey — a conversation's key, "<customer address>|<business address>",
 * and the text operators type for one ("customer" or "customer|business").
 *
 * The key names a conversation everywhere in the state (LMDB keys, jobs,
 * indexes, logs). Addresses never contain '|' (config and ingress refuse
 * them), so the first '|' splits the two sides. Everything that builds or
 * splits a key goes through here.
 */
#ifndef BATON_CONVKEY_H
#define BATON_CONVKEY_H

#include <stddef.h>

#define CONVKEY_SEP '|'

struct convkey {
	char *customer; /* owned, never NULL after a successful split */
	char *business; /* owned; NULL when the text named only the customer */
};

/**
 * Split text ("customer" or "customer|business"). 0, or -1 when the
 * customer side is empty or a side given is empty (out is then empty).
 * Release with convkey_release.
 */
int convkey_split(const char *text, struct convkey *out);
void convkey_release(struct convkey *k);

/** The key of customer at business; caller frees. */
char *convkey_join(const char *customer, const char *business);

/** The business side of key (a pointer into key), or NULL when it has none. */
const char *convkey_business(const char *key);
/** The length of key's customer side (all of key when it has no business). */
size_t convkey_customer_len(const char *key);

#endif
