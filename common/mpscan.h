/*
 * mpscan — checks a msgpack buffer before msgpack-c unpacks it.
 *
 * msgpack-c allocates a container's elements from the count in its header
 * before reading them, so a 5-byte frame claiming 2^32 elements would ask
 * for tens of GiB. mpscan_size walks one object without allocating and
 * refuses any container whose count cannot fit in the bytes left (every
 * element takes at least one byte) or that nests deeper than max_depth.
 * Pure function, no state.
 */
#ifndef BATON_MPSCAN_H
#define BATON_MPSCAN_H

#include <stddef.h>

/** Size in bytes of the one msgpack object at p, or 0 when it is incomplete,
 *  malformed, too deep, or claims more elements than len can hold. */
size_t mpscan_size(const unsigned char *p, size_t len, int max_depth);

#endif
