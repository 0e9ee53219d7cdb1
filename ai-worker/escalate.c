/* escalate — tag detection and stripping; see escalate.h. */
#include "escalate.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static bool esc_space(char c)
{
	return c == ' ' || c == '\t';
}

bool esc_strip(char *text, const char *tag)
{
	size_t tl = strlen(tag);
	bool found = false;
	char *p;

	if (tl == 0)
		return false;
	while ((p = strcasestr(text, tag)) != NULL) {
		found = true;
		char *after = p + tl;
		/* "a [TAG] b" becomes "a b", not "a  b"; "a [TAG]." becomes "a." */
		if (p > text && esc_space(p[-1]) && (esc_space(*after) || *after == '\0' ||
						      ispunct((unsigned char)*after) || *after == '\n'))
			p--;
		memmove(p, after, strlen(after) + 1);
		/* Punctuation the tag leaves orphaned: "Sure, [TAG], yes" -> "Sure, yes",
		 * "[TAG]. Hi" -> "Hi", and a line that held only the tag goes away. */
		bool at_start = p == text || p[-1] == '\n' || (p[-1] == ' ' && (p - 1 == text ||
								      ispunct((unsigned char)p[-2])));
		if (strchr(".,;:!?", *p) && *p && (at_start || (p > text && *p == p[-1])))
			memmove(p, p + 1, strlen(p + 1) + 1);
		if (p > text && p[-1] == '\n' && *p == '\n')
			memmove(p, p + 1, strlen(p + 1) + 1);
		if ((p == text || p[-1] == ' ' || p[-1] == '\n') && *p == ' ')
			memmove(p, p + 1, strlen(p + 1) + 1);
	}
	if (!found)
		return false;
	size_t n = strlen(text);
	while (n > 0 && isspace((unsigned char)text[n - 1]))
		text[--n] = '\0';
	size_t lead = 0;
	while (isspace((unsigned char)text[lead]))
		lead++;
	if (lead)
		memmove(text, text + lead, n - lead + 1);
	return true;
}
