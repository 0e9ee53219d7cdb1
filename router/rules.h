/*
 * rules — deterministic escalation before the AI: configured phrases that
 * hand the conversation to a person at once.
 *
 * Matching is on whole words, case- and accent-insensitive ("HUMANO",
 * "humano" and "húmano" match "humano"; "humanity" does not match
 * "human"); a phrase of several words matches the same words in a row.
 * Folding uses libunistring: NFD, combining marks dropped, lowercase.
 */
#ifndef BATON_RULES_H
#define BATON_RULES_H

#include <stdbool.h>

struct rules;

/** Compile a comma-separated phrase list ("" = no rules). Caller owns the result. */
struct rules *rules_new(const char *phrases);
void rules_destroy(struct rules **r);
/** True when text contains a phrase; *matched (may be NULL) borrows the phrase as configured. */
bool rules_match(const struct rules *r, const char *text, const char **matched);
/** Fold text to lowercase words without accents, separated by one space. Caller frees. */
char *rules_fold(const char *text);

#endif
