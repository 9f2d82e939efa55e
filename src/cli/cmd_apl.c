/* peak apl encode|decode: APL rdata (RFC 3123) between presentation form and hex. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "peak/apl.h"
#include "peak/util.h"

static const char apl_help[] =
    "usage: peak apl encode 'PRESENTATION'\n"
    "       peak apl decode HEX\n"
    "\n"
    "encode prints the rdata of an APL record in hex, e.g.\n"
    "  peak apl encode '2:2001:db8:5::/64 !1:192.0.2.0/24'\n"
    "decode prints the presentation form of hex rdata (white space and ':' ignored).\n"
    "Items of unknown address families are printed in the RFC 3597 form '\\# LEN HEX'.\n"
    "Malformed input prints the reason and exits 2.\n";

int cmd_apl(int argc, char **argv)
{
	static struct apl_item items[APL_MAX_ITEMS];
	static uint8_t rd[65536];
	static char text[1 << 20];
	char err[256];

	if (argc < 2 || cli_wants_help(argc, argv)) {
		fputs(apl_help, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (argc != 3)
		cli_usage_error("apl", "want 'encode TEXT' or 'decode HEX' (see --help)");
	if (!strcmp(argv[1], "encode")) {
		int n = apl_parse_text(argv[2], items, APL_MAX_ITEMS, err, sizeof(err));
		if (n == -E2BIG)
			cli_usage_error("apl encode", "more than %d items", APL_MAX_ITEMS);
		if (n < 0)
			cli_usage_error("apl encode", "%s", err);
		int len = apl_write(items, (size_t)n, rd, sizeof(rd));
		if (len < 0)
			cli_usage_error("apl encode", "record longer than 65535 bytes");
		for (int i = 0; i < len; i++)
			printf("%02x", rd[i]);
		putchar('\n');
		return 0;
	}
	if (!strcmp(argv[1], "decode")) {
		char bad;
		long len = peak_hex_decode(argv[2], ":", rd, 65535, &bad);
		if (len == -E2BIG)
			cli_usage_error("apl decode", "more than 65535 bytes");
		if (len < 0 && bad)
			cli_usage_error("apl decode", "'%c' is not a hex digit", bad);
		if (len < 0)
			cli_usage_error("apl decode", "odd number of hex digits");
		int n = apl_parse(rd, (size_t)len, items, APL_MAX_ITEMS);
		if (n < 0)
			cli_usage_error("apl decode",
			                "malformed APL rdata (truncated item, AFDLENGTH or prefix "
			                "length over its family's maximum)");
		if (apl_print(items, (size_t)n, text, sizeof(text)) < 0)
			cli_usage_error("apl decode", "record too long to print");
		puts(text);
		return 0;
	}
	cli_usage_error("apl", "unknown subcommand '%s' (encode or decode)", argv[1]);
}
