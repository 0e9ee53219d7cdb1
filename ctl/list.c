/*
 * list — batonctl conversations: newest activity first, a page at a time
 * from the recent index (convlist.h), as convview records (JSON) or a
 * table; see ctl.h.
 */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convlist.h"
#include "convview.h"
#include "xalloc.h"

/* Rows read per page of the walk when there is no --limit. */
#define LIST_PAGE 1000

static const char *list_field(json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));
	return s ? s : "";
}

static void list_table(json_t *rows, size_t total_shown, bool more)
{
	int wc = 8, wb = 8;
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r) {
		int c = (int)strlen(list_field(r, "customer")), b = (int)strlen(list_field(r, "business"));
		wc = c > wc ? c : wc;
		wb = b > wb ? b : wb;
	}
	printf("%-*s  %-*s  %-10s  %-20s  %5s  %6s  %s\n", wc, "CUSTOMER", wb, "BUSINESS", "MODE",
	       "LAST ACTIVITY", "TURNS", "ERROR", "FLEX (CONVERSATION TASK)");
	json_array_foreach(rows, i, r) {
		char when[40], err[24];
		json_t *flex = json_object_get(r, "flex"), *le = json_object_get(r, "last_error");
		bool open = strcmp(list_field(r, "mode"), "ai") != 0 && json_is_object(flex);
		/* Open Flex SIDs: only while a person has (or is getting) it. */
		const char *ch = open ? json_string_value(json_object_get(flex, "conversation")) : NULL;
		const char *wt = open ? json_string_value(json_object_get(flex, "task")) : NULL;
		json_int_t code = json_integer_value(json_object_get(le, "code"));
		ctl_time((uint64_t)json_integer_value(json_object_get(r, "last_activity_ms")), false,
			 when, sizeof(when));
		if (code)
			snprintf(err, sizeof(err), "%lld", (long long)code);
		else
			snprintf(err, sizeof(err), "-");
		printf("%-*s  %-*s  %-10s  %-20s  %5lld  %6s  %s%s%s\n", wc, list_field(r, "customer"),
		       wb, list_field(r, "business"), list_field(r, "mode"), when,
		       (long long)json_integer_value(json_object_get(r, "customer_turns")), err,
		       ch ? ch : (wt ? "" : "-"), ch && wt ? " " : "", wt ? wt : "");
	}
	if (more)
		printf("(the first %zu conversations; --limit)\n", total_shown);
}

int ctl_conversations(const struct config *cfg, const struct ctl_list *l)
{
	struct ctl_read rd;
	struct convlist_query q = { .filter = CONVLIST_ALL, .since = l->since };
	json_t *rows = json_array();
	char *after = NULL;
	bool more = false;
	int ret;

	switch (l->mode) {
	case MODE_AI: q.filter = CONVLIST_AI; break;
	case MODE_ESCALATING: q.filter = CONVLIST_ESCALATING; break;
	case MODE_HUMAN: q.filter = CONVLIST_HUMAN; break;
	default: break;
	}
	if ((ret = ctl_read_begin(cfg, &rd)) != CTL_OK) {
		json_decref(rows);
		return ret;
	}
	/* One read transaction, page after page: a consistent listing. */
	for (;;) {
		struct convlist page;
		size_t want = l->limit > 0 ? (size_t)l->limit - json_array_size(rows) : LIST_PAGE;
		q.limit = want < LIST_PAGE ? want : LIST_PAGE;
		q.after = after;
		int rc = convlist_page(rd.st, rd.txn, &q, &page);
		if (rc) {
			fprintf(stderr, "batonctl: cannot read conversations: %s\n",
				rc == ENOTSUP ? "the state comes from an older router (start the new "
						"router once to index it)"
					      : mdb_strerror(rc));
			convlist_release(&page);
			ret = CTL_FAIL;
			break;
		}
		for (size_t i = 0; i < page.n; i++)
			json_array_append_new(rows, convview_record(page.rows[i].key, &page.rows[i].c, 0));
		free(after);
		after = page.next ? xstrdup(page.next) : NULL;
		convlist_release(&page);
		if (!after)
			break;
		if (l->limit > 0 && json_array_size(rows) >= (size_t)l->limit) {
			more = true;
			break;
		}
	}
	free(after);
	ctl_read_end(&rd);
	if (ret == CTL_OK) {
		if (l->json)
			ctl_dump(rows);
		else
			list_table(rows, json_array_size(rows), more);
	}
	json_decref(rows);
	return ret;
}
