/* Fuzzes the YAML configuration loader (libyaml plus the schema). */
#include "fuzz.h"
#include "peak/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peak_config *c;
	char err[CFG_ERRLEN];
	if (size > 65536)
		return 0;
	if (config_parse("fuzz", data, size, &c, err, sizeof(err)) == 0)
		config_free(c);
	return 0;
}
