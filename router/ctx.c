/* ctx — the router's read-mostly context; see ctx.h. */
#include "ctx.h"

#include <stdlib.h>

#include "convkey.h"
#include "xalloc.h"

int rctx_hours_parse(struct rctx *x, const char **why, long *which)
{
	const struct config *cfg = x->cfg;
	*which = -1;
	if (hours_parse(cfg->business_hours, &x->hours, why) < 0)
		return -1;
	x->number_hours = xcalloc(cfg->nnumbers + 1, sizeof(*x->number_hours));
	for (size_t i = 0; i < cfg->nnumbers; i++) {
		if (hours_parse(cfg->numbers[i].cfg.business_hours, &x->number_hours[i], why) < 0) {
			*which = (long)i;
			return -1;
		}
	}
	return 0;
}

void rctx_release(struct rctx *x)
{
	free(x->number_hours);
	x->number_hours = NULL;
}

const struct config *rctx_cfg(const struct rctx *x, const char *key)
{
	return config_for(x->cfg, convkey_business(key));
}

const struct hours *rctx_hours(const struct rctx *x, const char *key)
{
	const struct config *c = config_for(x->cfg, convkey_business(key));
	for (size_t i = 0; i < x->cfg->nnumbers; i++)
		if (c == &x->cfg->numbers[i].cfg)
			return &x->number_hours[i];
	return &x->hours;
}

void rctx_set_str(char **dst, const char *v)
{
	if (v && *v) {
		free(*dst);
		*dst = xstrdup(v);
	}
}
