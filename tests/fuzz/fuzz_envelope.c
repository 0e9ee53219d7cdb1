/* fuzz_envelope — env_decode on arbitrary frames; what decodes must re-encode and decode the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envelope env, again;
	if (env_decode(data, size, &env) != ENV_EOK)
		return 0;
	char *buf = NULL;
	size_t len = 0;
	if (env_encode(&env, &buf, &len) == ENV_EOK) {
		if (env_decode(buf, len, &again) != ENV_EOK || again.type != env.type ||
		    again.id != env.id || again.nturns != env.nturns)
			abort();
		env_release(&again);
		free(buf);
	}
	env_release(&env);
	return 0;
}
