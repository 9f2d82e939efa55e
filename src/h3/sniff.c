/* Magic numbers of audio and video containers (the WHATWG MIME Sniffing Standard §6.2 and the
 * containers' own specifications). */
#include "sniff.h"

#include <string.h>

/* True if p[n] holds s (len bytes) at offset off. */
static int at(const uint8_t *p, size_t n, size_t off, const char *s, size_t len)
{
	return off <= n && len <= n - off && !memcmp(p + off, s, len);
}

struct h3_sniff h3_sniff_type(const uint8_t *p, size_t n)
{
	static const struct {
		size_t off;
		const char *magic;
		size_t len;
		const char *type, *why;
	} sig[] = {
	    {0, "OggS\0", 5, "audio/ogg", "OggS at 0"},
	    {0, "fLaC", 4, "audio/flac", "fLaC at 0"},
	    {0, "ID3", 3, "audio/mpeg", "ID3 tag at 0"},
	    {0, "#!AMR\n", 6, "audio/amr", "#!AMR at 0"},
	    {0, ".snd", 4, "audio/basic", ".snd at 0"},
	    {0, "MThd\0\0\0\6", 8, "audio/midi", "MThd at 0"},
	    {0, "\x00\x00\x01\xba", 4, "video/mpeg", "MPEG-PS pack header at 0"},
	    {0, "\x00\x00\x01\xb3", 4, "video/mpeg", "MPEG sequence header at 0"},
	    {0, "FLV\x01", 4, "video/x-flv", "FLV at 0"},
	};
	for (size_t i = 0; i < sizeof(sig) / sizeof(sig[0]); i++)
		if (at(p, n, sig[i].off, sig[i].magic, sig[i].len))
			return (struct h3_sniff){sig[i].type, sig[i].why};
	/* RIFF and IFF: a form type after the size */
	if (at(p, n, 0, "RIFF", 4) && at(p, n, 8, "WAVE", 4))
		return (struct h3_sniff){"audio/wav", "RIFF WAVE at 0"};
	if (at(p, n, 0, "RIFF", 4) && at(p, n, 8, "AVI ", 4))
		return (struct h3_sniff){"video/x-msvideo", "RIFF AVI at 0"};
	if (at(p, n, 0, "FORM", 4) && (at(p, n, 8, "AIFF", 4) || at(p, n, 8, "AIFC", 4)))
		return (struct h3_sniff){"audio/aiff", "FORM AIFF at 0"};
	/* ISO BMFF (MP4, QuickTime, 3GP): a box 'ftyp' first, its major brand after it */
	if (at(p, n, 4, "ftyp", 4)) {
		if (at(p, n, 8, "M4A ", 4) || at(p, n, 8, "M4B ", 4))
			return (struct h3_sniff){"audio/mp4", "ftyp M4A at 4"};
		if (at(p, n, 8, "qt  ", 4))
			return (struct h3_sniff){"video/quicktime", "ftyp qt at 4"};
		if (at(p, n, 8, "3gp", 3))
			return (struct h3_sniff){"video/3gpp", "ftyp 3gp at 4"};
		if (n >= 12)
			return (struct h3_sniff){"video/mp4", "ftyp at 4"};
	}
	/* Matroska and WebM: an EBML header, the DocType inside its first bytes */
	if (at(p, n, 0, "\x1a\x45\xdf\xa3", 4)) {
		size_t lim = n < 64 ? n : 64;
		for (size_t i = 4; i + 4 <= lim; i++)
			if (!memcmp(p + i, "webm", 4))
				return (struct h3_sniff){"video/webm", "EBML DocType webm"};
		return (struct h3_sniff){"video/x-matroska", "EBML header at 0"};
	}
	/* MPEG transport stream: sync bytes 188 apart */
	if (n > 188 && p[0] == 0x47 && p[188] == 0x47)
		return (struct h3_sniff){"video/mp2t", "TS sync at 0 and 188"};
	/* MPEG audio frames and ADTS (AAC): 12 sync bits; layer bits 00 with ID set is ADTS */
	if (n >= 2 && p[0] == 0xff && (p[1] & 0xf0) == 0xf0 && (p[1] & 0x06) == 0)
		return (struct h3_sniff){"audio/aac", "ADTS sync at 0"};
	if (n >= 3 && p[0] == 0xff && (p[1] & 0xe0) == 0xe0 && (p[1] & 0x06) != 0 &&
	    (p[1] & 0x18) != 0x08 && (p[2] & 0xf0) != 0xf0)
		return (struct h3_sniff){"audio/mpeg", "MPEG audio frame sync at 0"};
	return (struct h3_sniff){NULL, NULL};
}
