/* mpscan — the allocation-free msgpack walk; see mpscan.h. */
#include "mpscan.h"

#include <stdbool.h>

static size_t mpscan_at(const unsigned char *p, size_t len, int depth, int max_depth)
{
	size_t hdr = 1, body = 0, count = 0, w = 0;
	bool map = false;

	if (len == 0 || depth > max_depth)
		return 0;
	unsigned char c = p[0];
	if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
		return 1; /* fixint, negative fixint, nil, false, true */
	if ((c & 0xe0) == 0xa0) {
		body = c & 0x1f; /* fixstr */
	} else if ((c & 0xf0) == 0x90) {
		count = c & 0x0f; /* fixarray */
	} else if ((c & 0xf0) == 0x80) {
		count = c & 0x0f; /* fixmap */
		map = true;
	} else {
		switch (c) {
		case 0xcc: case 0xd0: return len >= 2 ? 2 : 0;
		case 0xcd: case 0xd1: case 0xd4: return len >= 3 ? 3 : 0;
		case 0xd5: return len >= 4 ? 4 : 0;
		case 0xce: case 0xd2: case 0xca: return len >= 5 ? 5 : 0;
		case 0xd6: return len >= 6 ? 6 : 0;
		case 0xcf: case 0xd3: case 0xcb: return len >= 9 ? 9 : 0;
		case 0xd7: return len >= 10 ? 10 : 0;
		case 0xd8: return len >= 18 ? 18 : 0;
		case 0xd9: case 0xc4: case 0xc7: w = 1; break; /* str8, bin8, ext8 */
		case 0xda: case 0xc5: case 0xc8: case 0xdc: w = 2; break;
		case 0xdb: case 0xc6: case 0xc9: case 0xdd: w = 4; break;
		case 0xde: w = 2; map = true; break;
		case 0xdf: w = 4; map = true; break;
		default: return 0; /* 0xc1 is never used */
		}
		if (len < 1 + w)
			return 0;
		size_t n = 0;
		for (size_t i = 0; i < w; i++)
			n = (n << 8) | p[1 + i];
		hdr = 1 + w;
		if (c >= 0xc7 && c <= 0xc9)
			hdr++, body = n; /* ext: a type byte after the size */
		else if (c == 0xdc || c == 0xdd || map)
			count = n;
		else
			body = n;
	}
	if (hdr > len)
		return 0;
	if (!count)
		return body <= len - hdr ? hdr + body : 0;
	size_t elems = map ? count * 2 : count;
	if (count > len || elems > len - hdr)
		return 0; /* cannot fit: refuse before anything allocates */
	size_t off = hdr;
	for (size_t i = 0; i < elems; i++) {
		size_t k = mpscan_at(p + off, len - off, depth + 1, max_depth);
		if (!k)
			return 0;
		off += k;
	}
	return off;
}

size_t mpscan_size(const unsigned char *p, size_t len, int max_depth)
{
	return mpscan_at(p, len, 0, max_depth);
}
