/* Content sniffing: the magic numbers of audio and video containers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sniff.h"

static const char *type_of(const void *p, size_t n)
{
	/* an exact-size copy: ASan sees any read past n */
	uint8_t *c = malloc(n ? n : 1);
	assert_non_null(c);
	memcpy(c, p, n);
	struct h3_sniff s = h3_sniff_type(c, n);
	free(c);
	assert_true((s.type == NULL) == (s.why == NULL));
	return s.type ? s.type : "-";
}

#define T(bytes, want) assert_string_equal(type_of(bytes, sizeof(bytes) - 1), want)

static void test_containers(void **state)
{
	(void)state;
	T("OggS\0\2\0\0", "audio/ogg");
	T("fLaC\0\0\0\x22", "audio/flac");
	T("ID3\4\0\0", "audio/mpeg");
	T("\xff\xfb\x90\x64", "audio/mpeg"); /* MPEG-1 layer III */
	T("\xff\xf1\x50\x80", "audio/aac");  /* ADTS */
	T("RIFF\x24\0\0\0WAVEfmt ", "audio/wav");
	T("RIFF\x24\0\0\0AVI LIST", "video/x-msvideo");
	T("FORM\0\0\0\0AIFFCOMM", "audio/aiff");
	T("\0\0\0\x20"
	  "ftypisom\0\0\2\0",
	  "video/mp4");
	T("\0\0\0\x20"
	  "ftypM4A \0\0\2\0",
	  "audio/mp4");
	T("\0\0\0\x14"
	  "ftypqt  ",
	  "video/quicktime");
	T("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm");
	T("\x1a\x45\xdf\xa3\xa3\x42\x82\x88matroska", "video/x-matroska");
	T("\0\0\1\xba\x44", "video/mpeg");
	T("#!AMR\n", "audio/amr");
	uint8_t ts[189] = {0x47};
	ts[188] = 0x47;
	assert_string_equal(type_of(ts, sizeof(ts)), "video/mp2t");
}

static void test_not_recognised(void **state)
{
	(void)state;
	T("", "-");
	T("hello, world", "-");
	T("{\"a\":1}", "-");
	T("Ogg", "-");              /* cut short */
	T("RIFF\0\0\0\0WAV", "-");  /* cut short */
	T("RIFF\0\0\0\0XXXX", "-"); /* another RIFF form */
	T("\0\0\0\x20"
	  "ftyp",
	  "-");                     /* no brand yet */
	T("\xff\xff\xff\xff", "-"); /* MPEG reserved layer and bitrate */
	T("\xff", "-");
	uint8_t ts[188] = {0x47};
	assert_string_equal(type_of(ts, sizeof(ts)), "-"); /* one sync byte is no proof */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_containers),
	    cmocka_unit_test(test_not_recognised),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
