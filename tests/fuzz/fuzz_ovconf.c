/* Fuzzes the overlay daemon's configuration parser (src/overlay/ovconf.h; libyaml plus its
 * keys): any text either parses or is refused with a "FILE:LINE: reason" message. */
#include <string.h>

#include "fuzz.h"
#include "ovconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ov_conf c;
	char err[OVC_ERRLEN];
	if (size > 65536)
		return 0;
	int r = ov_conf_parse("fuzz", data, size, &c, err, sizeof(err));
	if (r == -22 && strncmp(err, "fuzz", 4))
		__builtin_trap();
	ov_conf_fini(&c);
	return 0;
}
