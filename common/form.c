/* form — urlencoded parsing; see form.h (building is in form_encode.c). */
#include "form.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static int form_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes s[0..n) into a new string, or NULL when the encoding is bad. */
static char *form_decode(const char *s, size_t n)
{
	char *out = xmalloc(n + 1);
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%') {
			int hi, lo;
			if (i + 2 >= n)
				goto bad;
			hi = form_hex((unsigned char)s[i + 1]);
			lo = form_hex((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				goto bad;
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (s[i] == '\0') {
			goto bad;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

int form_parse(const char *body, size_t len, size_t max_params, struct form *out)
{
	size_t cap = 0;
	const char *p = body, *end = body + len;

	memset(out, 0, sizeof(*out));
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		if (stop == p) { /* empty segment ("a=1&&b=2"): tolerated, like browsers */
			p = stop + 1;
			continue;
		}
		if (out->n == max_params) {
			form_release(out);
			return FORM_ETOOMANY;
		}
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		const char *nend = eq ? eq : stop;
		char *name = form_decode(p, (size_t)(nend - p));
		char *value = eq ? form_decode(eq + 1, (size_t)(stop - eq - 1)) : xstrdup("");
		if (!name || !value || name[0] == '\0') {
			free(name);
			free(value);
			form_release(out);
			return FORM_EENCODING;
		}
		if (out->n == cap) {
			cap = cap ? cap * 2 : 16;
			out->params = xrealloc(out->params, cap * sizeof(*out->params));
		}
		out->params[out->n].name = name;
		out->params[out->n].value = value;
		out->n++;
		p = stop + 1;
	}
	return FORM_EOK;
}

void form_release(struct form *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->params[i].name);
		free(f->params[i].value);
	}
	free(f->params);
	memset(f, 0, sizeof(*f));
}

const char *form_get(const struct form *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->params[i].name, name) == 0)
			return f->params[i].value;
	return NULL;
}
