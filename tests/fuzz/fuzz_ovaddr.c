/* Fuzzes the overlay gateway's count of IPv4 address changes in a datagram of rtnetlink
 * messages (src/overlay/addrwatch.h): never reads past the input, and never counts more
 * changes than messages of the smallest counted size fit in it. */
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdint.h>

#include "addrwatch.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned n = addrwatch_count(data, size);
	if (n > size / NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
		__builtin_trap();
	return 0;
}
