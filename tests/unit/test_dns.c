/* DNS codec: names, hostile compression, records, EDNS/ECS, queries, the writer. */
#include "test.h"

#include <errno.h>

#include "peak/apl.h"
#include "peak/dns.h"

static struct dns_name N(const char *s) {
	struct dns_name n;
	if (dns_name_parse(s, &n))
		fail_msg("bad name %s", s);
	return n;
}

static void
test_names(void **state)
{
	(void)state;
	struct dns_name n;
	char out[DNS_NAME_STRLEN];
	n = N("www.Example.com");
	assert_int_equal(n.len, 17);
	assert_int_equal(dns_name_print(&n, out, sizeof(out)), 16);
	assert_string_equal(out, "www.Example.com.");
	struct dns_name m = N("WWW.example.COM.");
	assert_true(dns_name_eq(&n, &m));
	dns_name_lower(&m); /* letters only: the length octets stay */
	assert_int_equal(dns_name_print(&m, out, sizeof(out)), 16);
	assert_string_equal(out, "www.example.com.");
	assert_int_equal(dns_name_labels(&n), 3);
	n = N(".");
	assert_int_equal(n.len, 1);
	dns_name_print(&n, out, sizeof(out));
	assert_string_equal(out, ".");
	/* escapes */
	n = N("a\\.b.\\065\\032c.");
	assert_int_equal(n.wire[0], 3);
	assert_memory_equal(n.wire + 1, "a.b", 3);
	assert_memory_equal(n.wire + 5, "A c", 3);
	dns_name_print(&n, out, sizeof(out));
	assert_string_equal(out, "a\\.b.A\\032c.");
	/* subdomains */
	struct dns_name z = N("svc.example."), a = N("api.SVC.example."), b = N("xsvc.example.");
	assert_true(dns_name_under(&a, &z));
	assert_true(dns_name_under(&z, &z));
	assert_false(dns_name_under(&b, &z)); /* not on a label boundary */
	assert_false(dns_name_under(&z, &a));
	struct dns_name root = N(".");
	assert_true(dns_name_under(&a, &root));
	/* errors */
	const char *bad[] = {"", "a..b", "..", ".a", "a\\", "a\\25", "a\\256.b"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dns_name_parse(bad[i], &n), -EINVAL);
	char l64[70];
	memset(l64, 'x', 64);
	l64[64] = '\0';
	assert_int_equal(dns_name_parse(l64, &n), -EINVAL);
	l64[63] = '\0';
	assert_int_equal(dns_name_parse(l64, &n), 0);
	char big[300];
	for (int i = 0; i < 128; i++) {
		big[2 * i] = 'a';
		big[2 * i + 1] = '.';
	}
	big[256] = '\0'; /* 128 labels: 257 octets */
	assert_int_equal(dns_name_parse(big, &n), -EINVAL);
	big[254] = '\0'; /* 127 labels: 255 octets */
	assert_int_equal(dns_name_parse(big, &n), 0);
	assert_int_equal(n.len, 255);
	assert_int_equal(dns_name_print(&n, out, 10), -ENOSPC);
}

/* Reads the name at offset off of msg. */
static int read_at(const uint8_t *msg, size_t len, size_t off, struct dns_name *n)
{
	struct cur c = cur_make(msg + off, len - off);
	return dns_name_read(msg, len, &c, n);
}

static void test_decompression(void **state)
{
	(void)state;
	uint8_t m[512] = {0};
	struct dns_name n;
	/* "example.com." at 12, "www" + pointer to 12 at 25 */
	memcpy(m + 12, "\7example\3com\0", 13);
	memcpy(m + 25, "\3www\xc0\x0c", 6);
	assert_int_equal(read_at(m, 31, 25, &n), 0);
	char out[DNS_NAME_STRLEN];
	dns_name_print(&n, out, sizeof(out));
	assert_string_equal(out, "www.example.com.");
	struct cur c = cur_make(m + 25, 6);
	assert_int_equal(dns_name_read(m, 31, &c, &n), 0);
	assert_int_equal(c.left, 0); /* consumed up to and including the pointer */

	/* pointer to itself */
	memcpy(m + 40, "\xc0\x28", 2);
	assert_int_equal(read_at(m, 42, 40, &n), -EBADMSG);
	/* two pointers pointing at each other: 44 -> 46 is forward */
	memcpy(m + 44, "\xc0\x2e\xc0\x2c", 4);
	assert_int_equal(read_at(m, 48, 44, &n), -EBADMSG);
	assert_int_equal(read_at(m, 48, 46, &n), -EBADMSG); /* 46 -> 44 -> 46: loop */
	/* a label run that points back into itself */
	memcpy(m + 50, "\1a\1b\xc0\x32", 6);
	assert_int_equal(read_at(m, 56, 50, &n), -EBADMSG);
	/* pointer past the end of the message */
	memcpy(m + 60, "\xc1\xff", 2);
	assert_int_equal(read_at(m, 62, 60, &n), -EBADMSG);
	/* truncated pointer, truncated label, missing root */
	assert_int_equal(read_at(m, 61, 60, &n), -EBADMSG);
	memcpy(m + 70, "\5ab", 3);
	assert_int_equal(read_at(m, 73, 70, &n), -EBADMSG);
	memcpy(m + 80, "\2ab", 3);
	assert_int_equal(read_at(m, 83, 80, &n), -EBADMSG);
	/* reserved label types 0x40 and 0x80 */
	m[90] = 0x41;
	assert_int_equal(read_at(m, 100, 90, &n), -EBADMSG);
	m[90] = 0x81;
	assert_int_equal(read_at(m, 100, 90, &n), -EBADMSG);
	/* a name over 255 octets assembled through backward pointers */
	size_t at = 100;
	size_t prev = 0;
	for (int seg = 0; seg < 5; seg++) {
		m[at] = 63;
		memset(m + at + 1, 'a', 63);
		if (seg == 0) {
			m[at + 64] = 0;
			prev = at;
			at += 65;
		} else {
			m[at + 64] = (uint8_t)(0xc0 | prev >> 8);
			m[at + 65] = (uint8_t)prev;
			prev = at;
			at += 66;
		}
	}
	assert_int_equal(read_at(m, at, 100 + 65 + 66, &n), 0); /* 3 segments: 193 octets */
	assert_int_equal(read_at(m, at, prev, &n), -EBADMSG);   /* 5 segments: 321 */
	/* a cursor that does not point into the message */
	uint8_t other[4] = {0};
	c = cur_make(other, 4);
	assert_int_equal(dns_name_read(m, 100, &c, &n), -EBADMSG);
}

static void test_write_read(void **state)
{
	(void)state;
	uint8_t buf[1232];
	struct dns_writer w;
	struct dns_name z = N("svc.example."), api = N("api.svc.example."),
	                ssa = N("_ssa.api.svc.example."), ns = N("ns1.svc.example.");
	dns_writer_init(&w, buf, sizeof(buf), 0xbeef, DNS_F_QR | DNS_F_AA);
	dns_writer_question(&w, &api, DNS_T_APL, DNS_C_IN);
	/* APL */
	struct apl_item it[2];
	uint8_t rd[64];
	int n = apl_parse_text("2:2001:db8:5::/64 2:2001:db8:6::/64", it, 2, NULL, 0);
	int rl = apl_write(it, (size_t)n, rd, sizeof(rd));
	dns_writer_rr_begin(&w, DNS_S_ANSWER, &api, DNS_T_APL, DNS_C_IN, 3600);
	dns_writer_bytes(&w, rd, (size_t)rl);
	dns_writer_rr_end(&w);
	/* TXT longer than one character-string */
	char txt[600];
	memset(txt, 'k', sizeof(txt));
	dns_writer_rr_begin(&w, DNS_S_ANSWER, &ssa, DNS_T_TXT, DNS_C_IN, 60);
	dns_writer_txt_rdata(&w, txt, sizeof(txt));
	dns_writer_rr_end(&w);
	/* NS and SOA with compressed names in rdata */
	dns_writer_rr_begin(&w, DNS_S_AUTHORITY, &z, DNS_T_NS, DNS_C_IN, 3600);
	dns_writer_name(&w, &ns, true);
	dns_writer_rr_end(&w);
	struct dns_soa soa = {N("ns1.svc.example."), N("hostmaster.svc.example."), 7, 1, 2, 3, 4};
	dns_writer_rr_begin(&w, DNS_S_AUTHORITY, &z, DNS_T_SOA, DNS_C_IN, 3600);
	dns_writer_soa_rdata(&w, &soa);
	dns_writer_rr_end(&w);
	/* AAAA and OPT with ECS */
	uint8_t a6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 5};
	dns_writer_rr_begin(&w, DNS_S_ADDITIONAL, &ns, DNS_T_AAAA, DNS_C_IN, 30);
	dns_writer_bytes(&w, a6, 16);
	dns_writer_rr_end(&w);
	struct dns_ecs ecs = {2, 56, 48, {0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, 0xbb, 0xff}};
	dns_writer_opt(&w, 1232, 0, 0, true, &ecs);
	int len = dns_writer_finish(&w);
	assert_true(len > 0);

	struct dns_reader r;
	struct dns_question q;
	struct dns_rr rr;
	assert_int_equal(dns_reader_init(&r, buf, (size_t)len), 0);
	assert_int_equal(r.hdr.id, 0xbeef);
	assert_int_equal(r.hdr.qdcount, 1);
	assert_int_equal(r.hdr.ancount, 2);
	assert_int_equal(r.hdr.nscount, 2);
	assert_int_equal(r.hdr.arcount, 2);
	assert_int_equal(dns_reader_question(&r, &q), 0);
	assert_true(dns_name_eq(&q.name, &api));
	assert_int_equal(q.type, DNS_T_APL);
	assert_int_equal(dns_reader_question(&r, &q), -ENOENT);

	assert_int_equal(dns_reader_rr(&r, &rr), 0);
	assert_int_equal(rr.type, DNS_T_APL);
	struct apl_item back[4];
	assert_int_equal(apl_parse(rr.rdata, rr.rdlen, back, 4), 2);

	assert_int_equal(dns_reader_rr(&r, &rr), 0);
	char t[1024];
	size_t tl;
	assert_int_equal(dns_rdata_txt(&rr, t, sizeof(t), &tl), 3); /* 255 + 255 + 90 */
	assert_int_equal(tl, 600);
	assert_int_equal(rr.ttl, 60);

	assert_int_equal(dns_reader_rr(&r, &rr), 0);
	assert_int_equal(rr.section, DNS_S_AUTHORITY);
	struct dns_name nsn;
	assert_int_equal(dns_rdata_name(buf, (size_t)len, &rr, &nsn), 0);
	assert_true(dns_name_eq(&nsn, &ns));
	assert_true(rr.rdlen < ns.len); /* compressed */

	assert_int_equal(dns_reader_rr(&r, &rr), 0);
	struct dns_soa s2;
	assert_int_equal(dns_rdata_soa(buf, (size_t)len, &rr, &s2), 0);
	assert_true(dns_name_eq(&s2.rname, &soa.rname));
	assert_int_equal(s2.serial, 7);
	assert_int_equal(s2.minimum, 4);

	assert_int_equal(dns_reader_rr(&r, &rr), 0);
	assert_int_equal(rr.type, DNS_T_AAAA);
	assert_int_equal(rr.rdlen, 16);

	assert_int_equal(dns_reader_rr(&r, &rr), 0);
	struct dns_edns e;
	assert_int_equal(dns_edns_parse(&rr, &e), 0);
	assert_int_equal(e.udp_size, 1232);
	assert_true(e.do_bit);
	assert_true(e.has_ecs);
	assert_int_equal(e.ecs.source, 56);
	assert_int_equal(e.ecs.scope, 48);
	assert_int_equal(e.ecs.addr[7], 0); /* bits past SOURCE were cleared on output */
	assert_int_equal(e.ecs.addr[5], 0xaa);
	assert_int_equal(dns_reader_rr(&r, &rr), -ENOENT);
	assert_int_equal(dns_reader_trailing(&r), 0);
}

static void test_writer_limits(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct dns_writer w;
	struct dns_name n = N("a-rather-long-name.svc.example.");
	dns_writer_init(&w, buf, sizeof(buf), 1, DNS_F_QR);
	dns_writer_question(&w, &n, DNS_T_TXT, DNS_C_IN);
	struct dns_mark mk = dns_writer_mark(&w);
	dns_writer_rr_begin(&w, DNS_S_ANSWER, &n, DNS_T_TXT, DNS_C_IN, 1);
	dns_writer_txt_rdata(&w, "0123456789012345678901234567890123456789", 40);
	dns_writer_rr_end(&w);
	assert_int_equal(dns_writer_finish(&w), -EMSGSIZE);
	dns_writer_rollback(&w, &mk);
	dns_writer_set_flags(&w, DNS_F_QR | DNS_F_TC);
	int len = dns_writer_finish(&w);
	assert_true(len > 0);
	struct dns_reader r;
	dns_reader_init(&r, buf, (size_t)len);
	assert_true(r.hdr.flags & DNS_F_TC);
	assert_int_equal(r.hdr.ancount, 0);
	assert_int_equal(r.hdr.qdcount, 1);
	/* a header that does not fit */
	dns_writer_init(&w, buf, 8, 1, 0);
	assert_int_equal(dns_writer_finish(&w), -EMSGSIZE);
}

/* Builds a query with optional extra bytes; returns its length. */
static size_t make_query(uint8_t *buf, size_t cap, const char *name, uint16_t type,
                         const struct dns_ecs *ecs, uint8_t version)
{
	struct dns_writer w;
	struct dns_name n = N(name);
	dns_writer_init(&w, buf, cap, 0x1234, DNS_F_RD);
	dns_writer_question(&w, &n, type, DNS_C_IN);
	dns_writer_opt(&w, 1232, 0, version, false, ecs);
	return (size_t)dns_writer_finish(&w);
}

static void test_query_parse(void **state)
{
	(void)state;
	uint8_t buf[512];
	struct dns_query q;
	struct dns_ecs ecs = {2, 64, 0, {0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, 0xbb}};
	size_t len = make_query(buf, sizeof(buf), "api.svc.example.", DNS_T_AAAA, &ecs, 0);
	assert_int_equal(dns_query_parse(buf, len, &q), 0);
	assert_int_equal(q.hdr.id, 0x1234);
	assert_int_equal(q.q.type, DNS_T_AAAA);
	assert_true(q.edns.present);
	assert_true(q.edns.has_ecs);
	assert_int_equal(q.edns.ecs.source, 64);

	/* no answer at all: short, or a response */
	assert_int_equal(dns_query_parse(buf, 11, &q), -EBADMSG);
	buf[2] |= 0x80;
	assert_int_equal(dns_query_parse(buf, len, &q), -EBADMSG);
	buf[2] &= 0x7f;
	/* FORMERR: trailing garbage */
	buf[len] = 0;
	assert_int_equal(dns_query_parse(buf, len + 1, &q), DNS_R_FORMERR);
	assert_int_equal(q.hdr.id, 0x1234);
	/* FORMERR: truncated question / record */
	assert_int_equal(dns_query_parse(buf, 20, &q), DNS_R_FORMERR);
	assert_int_equal(dns_query_parse(buf, len - 1, &q), DNS_R_FORMERR);
	/* FORMERR: qdcount 0 and 2 */
	buf[5] = 0;
	assert_int_equal(dns_query_parse(buf, len, &q), DNS_R_FORMERR);
	buf[5] = 2;
	assert_int_equal(dns_query_parse(buf, len, &q), DNS_R_FORMERR);
	buf[5] = 1;
	/* FORMERR: arcount claims two records, the second is absent */
	buf[11] = 2;
	assert_int_equal(dns_query_parse(buf, len, &q), DNS_R_FORMERR);
	buf[11] = 1;
	/* FORMERR: the OPT in the answer section */
	buf[7] = 1;
	buf[11] = 0;
	assert_int_equal(dns_query_parse(buf, len, &q), DNS_R_FORMERR);
	buf[7] = 0;
	buf[11] = 1;
	/* two OPT records */
	uint8_t two[600];
	memcpy(two, buf, len);
	size_t optlen = len - (12 + 18 + 4);
	memcpy(two + len, buf + len - optlen, optlen);
	two[11] = 2;
	assert_int_equal(dns_query_parse(two, len + optlen, &q), DNS_R_FORMERR);
	/* ECS with bits set past SOURCE, or SOURCE past 128, or too many address bytes */
	struct dns_query ok;
	len = make_query(buf, sizeof(buf), "a.", DNS_T_A, &ecs, 0);
	assert_int_equal(dns_query_parse(buf, len, &ok), 0);
	size_t src_at = len - 8 - 2; /* family(2) source(1) scope(1) addr(8) */
	buf[src_at] = 60;            /* source 60 with 8 address bytes: too many */
	assert_int_equal(dns_query_parse(buf, len, &q), DNS_R_FORMERR);
	buf[src_at] = 62; /* 8 bytes ok, but bit 62/63 of ...bb is set */
	assert_int_equal(dns_query_parse(buf, len, &q), DNS_R_FORMERR);
	buf[src_at] = 129;
	assert_int_equal(dns_query_parse(buf, len, &q), DNS_R_FORMERR);
	buf[src_at] = 64;
	buf[src_at - 1] = 9; /* family 9 */
	assert_int_equal(dns_query_parse(buf, len, &q), DNS_R_FORMERR);
	/* EDNS version is reported, not judged here (the server answers BADVERS) */
	len = make_query(buf, sizeof(buf), "a.", DNS_T_A, NULL, 1);
	assert_int_equal(dns_query_parse(buf, len, &q), 0);
	assert_int_equal(q.edns.version, 1);
	/* a plain query with no EDNS */
	struct dns_writer w;
	struct dns_name a = N("a.");
	dns_writer_init(&w, buf, sizeof(buf), 7, 0);
	dns_writer_question(&w, &a, DNS_T_A, DNS_C_IN);
	len = (size_t)dns_writer_finish(&w);
	assert_int_equal(dns_query_parse(buf, len, &q), 0);
	assert_false(q.edns.present);
	assert_int_equal(dns_opcode(q.hdr.flags), 0);
}

static void test_rdata_errors(void **state)
{
	(void)state;
	uint8_t m[64] = {0};
	struct dns_rr rr = {0};
	struct dns_name n;
	struct dns_soa soa;
	/* NS rdata whose name runs past its RDLENGTH */
	memcpy(m + 12, "\3abc\0", 5);
	rr.rdata = m + 12;
	rr.rdoff = 12;
	rr.rdlen = 3;
	assert_int_equal(dns_rdata_name(m, 17, &rr, &n), -EBADMSG);
	rr.rdlen = 5;
	assert_int_equal(dns_rdata_name(m, 17, &rr, &n), 0);
	rr.rdlen = 6; /* a byte after the name */
	assert_int_equal(dns_rdata_name(m, 18, &rr, &n), -EBADMSG);
	/* SOA too short */
	rr.rdlen = 5;
	assert_int_equal(dns_rdata_soa(m, 17, &rr, &soa), -EBADMSG);
	/* TXT: empty rdata, and a string longer than what is left */
	char t[16];
	rr.rdlen = 0;
	assert_int_equal(dns_rdata_txt(&rr, t, sizeof(t), NULL), -EBADMSG);
	uint8_t txt[] = {5, 'a', 'b'};
	rr.rdata = txt;
	rr.rdlen = 3;
	assert_int_equal(dns_rdata_txt(&rr, t, sizeof(t), NULL), -EBADMSG);
	/* OPT: owner not root; option length past the end */
	struct dns_edns e;
	rr.type = DNS_T_OPT;
	rr.name = N("a.");
	rr.rdlen = 0;
	assert_int_equal(dns_edns_parse(&rr, &e), -EBADMSG);
	rr.name = N(".");
	uint8_t opt[] = {0, 8, 0, 9, 0, 2};
	rr.rdata = opt;
	rr.rdlen = sizeof(opt);
	assert_int_equal(dns_edns_parse(&rr, &e), -EBADMSG);
	/* unknown options are skipped */
	uint8_t opt2[] = {0, 10, 0, 2, 1, 2};
	rr.rdata = opt2;
	rr.rdlen = sizeof(opt2);
	assert_int_equal(dns_edns_parse(&rr, &e), 0);
	assert_false(e.has_ecs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),       cmocka_unit_test(test_decompression),
	    cmocka_unit_test(test_write_read),  cmocka_unit_test(test_writer_limits),
	    cmocka_unit_test(test_query_parse), cmocka_unit_test(test_rdata_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
