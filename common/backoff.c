/* backoff — see backoff.h. */
#include "backoff.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static uint64_t backoff_rand(void)
{
	static uint64_t state;
	if (!state)
		state = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 0x9E3779B97F4A7C15ull;
	/* xorshift64: jitter needs spread, not cryptographic quality */
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

uint64_t backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, long retry_after_ms)
{
	if (retry_after_ms >= 0)
		return (uint64_t)retry_after_ms < cap_ms ? (uint64_t)retry_after_ms : cap_ms;
	if (attempt == 0)
		attempt = 1;
	uint64_t d = base_ms;
	for (unsigned i = 1; i < attempt && d < cap_ms; i++)
		d = d > cap_ms / 2 ? cap_ms : d * 2; /* no overflow with a huge cap */
	if (d > cap_ms)
		d = cap_ms;
	uint64_t half = d / 2;
	return half + (half ? backoff_rand() % (d - half + 1) : 0);
}
