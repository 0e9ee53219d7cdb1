/*
 * escalate — finds and removes the escalation tag in a model's reply.
 *
 * The model is told to append a tag such as "[ESCALAR]" when a person is
 * needed. Models drift: the tag can appear mid-text, repeated, or in
 * another case. esc_strip() removes every occurrence (ASCII
 * case-insensitive) and tidies the spaces it leaves, so the customer
 * never sees the tag.
 */
#ifndef BATON_ESCALATE_H
#define BATON_ESCALATE_H

#include <stdbool.h>

/** Strip every occurrence of tag from text, in place. True when one was found. */
bool esc_strip(char *text, const char *tag);

#endif
