/* rules — phrase matching on folded words; see rules.h. */
#include "rules.h"

#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "xalloc.h"

/* Phrases are few and short; more than this is a configuration mistake. */
#define RULES_MAX 64

struct rules {
	char *original[RULES_MAX];
	char *folded[RULES_MAX]; /* " word word " with a space at each end */
	size_t n;
};

char *rules_fold(const char *text)
{
	size_t len = 0;
	uint8_t *nfd = u8_normalize(UNINORM_NFD, (const uint8_t *)text, strlen(text), NULL, &len);
	if (!nfd)
		return xstrdup("");
	/* Lowercasing can grow a character to at most 4 bytes; one space per char at most. */
	char *out = xmalloc(len * 4 + 2);
	size_t o = 0;
	bool space = true;
	const uint8_t *p = nfd, *end = nfd + len;
	while (p < end) {
		ucs4_t uc;
		int n = u8_mbtoucr(&uc, p, (size_t)(end - p));
		if (n < 0) {
			p++;
			continue;
		}
		p += n;
		if (uc_is_general_category(uc, UC_CATEGORY_M))
			continue; /* accents after NFD */
		if (uc_is_alnum(uc)) {
			uint8_t buf[6];
			int w = u8_uctomb(buf, uc_tolower(uc), sizeof(buf));
			if (w > 0) {
				memcpy(out + o, buf, (size_t)w);
				o += (size_t)w;
			}
			space = false;
		} else if (!space) {
			out[o++] = ' ';
			space = true;
		}
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	free(nfd);
	return out;
}

struct rules *rules_new(const char *phrases)
{
	struct rules *r = xcalloc(1, sizeof(*r));
	const char *p = phrases;
	while (p && *p && r->n < RULES_MAX) {
		size_t n = strcspn(p, ",");
		size_t lead = strspn(p, " \t"), len = n > lead ? n - lead : 0;
		while (len > 0 && (p[lead + len - 1] == ' ' || p[lead + len - 1] == '\t'))
			len--;
		char *one = xstrndup(p + lead, len);
		char *f = rules_fold(one);
		if (*f) {
			r->original[r->n] = one;
			r->folded[r->n] = xasprintf(" %s ", f);
			r->n++;
		} else {
			free(one);
		}
		free(f);
		p += n + (p[n] == ',');
	}
	return r;
}

void rules_destroy(struct rules **rp)
{
	if (!rp || !*rp)
		return;
	for (size_t i = 0; i < (*rp)->n; i++) {
		free((*rp)->original[i]);
		free((*rp)->folded[i]);
	}
	free(*rp);
	*rp = NULL;
}

bool rules_match(const struct rules *r, const char *text, const char **matched)
{
	if (!r || r->n == 0)
		return false;
	char *f = rules_fold(text);
	char *padded = xasprintf(" %s ", f);
	bool hit = false;
	for (size_t i = 0; i < r->n && !hit; i++) {
		if (strstr(padded, r->folded[i])) {
			hit = true;
			if (matched)
				*matched = r->original[i];
		}
	}
	free(padded);
	free(f);
	return hit;
}
