/*
 * show — batonctl show: one conversation as convview's document (JSON), or
 * as text for a person: mode, Flex SIDs, timeline and transcript; see ctl.h.
 */
#include "ctl.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convview.h"
#include "log.h"

static const char *show_field(json_t *o, const char *name)
{
	const char *s = json_string_value(json_object_get(o, name));
	return s ? s : "";
}

static void show_text(json_t *doc)
{
	char when[40];
	json_t *flex = json_object_get(doc, "flex"), *e;
	size_t i;
	printf("conversation  %s\nmode          %s\n", show_field(doc, "customer"),
	       show_field(doc, "mode"));
	if (json_is_object(flex) && json_string_value(json_object_get(flex, "conversation")))
		printf("flex          conversation %s, interaction %s, task %s\n",
		       show_field(flex, "conversation"),
		       json_string_value(json_object_get(flex, "interaction")) ? show_field(flex, "interaction") : "-",
		       json_string_value(json_object_get(flex, "task")) ? show_field(flex, "task") : "-");
	if (!json_is_null(json_object_get(doc, "window_closed_ms")))
		printf("whatsapp      window closed (free-form messages cannot be sent)\n");
	printf("\ntimeline\n");
	json_array_foreach(json_object_get(doc, "timeline"), i, e) {
		ctl_time((uint64_t)json_integer_value(json_object_get(e, "at_ms")), false, when,
			 sizeof(when));
		printf("  %s  %-18s %s\n", when, show_field(e, "event"), show_field(e, "detail"));
	}
	printf("\ntranscript\n");
	json_array_foreach(json_object_get(doc, "history"), i, e) {
		const char *agent = json_string_value(json_object_get(e, "agent"));
		char who[64];
		snprintf(who, sizeof(who), "%s%s%s%s", show_field(e, "role"), agent ? " (" : "",
			 agent ? agent : "", agent ? ")" : "");
		ctl_time((uint64_t)json_integer_value(json_object_get(e, "at_ms")), false, when,
			 sizeof(when));
		bool transcript = json_is_true(json_object_get(e, "transcript"));
		printf("  %s  %-18s %s%s\n", when, who, transcript ? "(voice note transcript) " : "",
		       show_field(e, "text"));
		const char *media = json_string_value(json_object_get(e, "media_text"));
		if (media && *media)
			printf("  %19s %-18s %s\n", "", "", media);
	}
}

int ctl_show(const struct config *cfg, const char *address, bool json)
{
	struct ctl_read rd;
	struct conv_rec c;
	char *key;
	int ret;

	if ((ret = ctl_read_conv(cfg, &rd, address, &key, &c)) != CTL_OK)
		return ret;
	json_t *doc = convview_document(rd.st, rd.txn, key, &c, 0, 0, 0);
	if (json)
		ctl_dump(doc);
	else
		show_text(doc);
	json_decref(doc);
	conv_rec_release(&c);
	free(key);
	ctl_read_end(&rd);
	return CTL_OK;
}
