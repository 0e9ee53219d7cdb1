/*
 * mediacheck — host and type allow-lists and magic numbers for media
 * downloads. See mediacheck.h.
 */
#include "mediacheck.h"

#include <curl/curl.h>
#include <string.h>
#include <strings.h>

#include "media.h"

const char *mediacheck_sniff(const void *buf, size_t len)
{
	const unsigned char *b = buf;
	if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
		return "image/jpeg";
	if (len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
		return "image/png";
	if (len >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6)))
		return "image/gif";
	if (len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
		return "image/webp";
	if (len >= 4 && !memcmp(b, "OggS", 4))
		return "audio/ogg";
	if (len >= 5 && !memcmp(b, "%PDF-", 5))
		return "application/pdf";
	return NULL;
}

bool mediacheck_bytes_match(const char *ctype, const void *buf, size_t len)
{
	char t[128];
	if (!media_bare_type(ctype, t, sizeof(t)))
		return false;
	bool checked = !strncmp(t, "image/", 6) || !strcmp(t, "audio/ogg") ||
		       !strcmp(t, "application/pdf");
	if (!checked)
		return true;
	const char *seen = mediacheck_sniff(buf, len);
	return seen && !strcmp(seen, t);
}

/* Calls fn on each trimmed, non-empty item of a comma-separated list until it says true. */
static bool mediacheck_list_any(const char *list, const char *want,
			   bool (*fn)(const char *item, size_t n, const char *want))
{
	const char *p = list;
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *s = p;
		while (n && (*s == ' ' || *s == '\t'))
			s++, n--;
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (n && fn(s, n, want))
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

static bool mediacheck_type_is(const char *item, size_t n, const char *want)
{
	return strlen(want) == n && !strncasecmp(item, want, n);
}

bool mediacheck_type_allowed(const char *ctype, const char *list)
{
	char t[128];
	return media_bare_type(ctype, t, sizeof(t)) && mediacheck_list_any(list, t, mediacheck_type_is);
}

static bool mediacheck_host_is(const char *item, size_t n, const char *host)
{
	size_t h = strlen(host);
	if (n > 2 && item[0] == '*' && item[1] == '.') {
		/* "*.twilio.com": a subdomain, so the host ends in ".twilio.com". */
		size_t suffix = n - 1;
		return h > suffix && !strncasecmp(host + h - suffix, item + 1, suffix);
	}
	return h == n && !strncasecmp(host, item, n);
}

bool mediacheck_host_allowed(const char *url, const char *list)
{
	bool ok = false;
	char *scheme = NULL, *host = NULL;
	CURLU *u = curl_url();
	if (!u || !url || !list)
		goto done;
	/* curl's parser, not ours: it is what will make the request. */
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		goto done;
	if (strcasecmp(scheme, "https") && strcasecmp(scheme, "http"))
		goto done;
	ok = mediacheck_list_any(list, host, mediacheck_host_is);
done:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}
