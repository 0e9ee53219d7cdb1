/*
 * assets — the operator console's page, embedded at build time.
 *
 * The files of console/page/ become C arrays in $(BUILD)/gen/console_assets.c
 * (scripts/gen-console-assets, run by the Makefile whenever one changes), so
 * baton-console serves the page without reading anything from disk.
 */
#ifndef BATON_ASSETS_H
#define BATON_ASSETS_H

#include <stddef.h>

struct console_asset {
	const char *name;          /* file name: "index.html", "console.js", ... */
	const char *type;          /* Content-Type */
	const unsigned char *data; /* NUL-terminated (the NUL is not part of len) */
	size_t len;
};

/** Every embedded file; the last entry has name == NULL. */
extern const struct console_asset console_assets[];

#endif
