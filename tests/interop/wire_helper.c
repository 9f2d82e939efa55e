/* Interop helper: 'build' prints messages made by PEAK's DNS writer as "NAME HEX" lines;
 * 'parse HEX' decodes a message with PEAK's reader and prints it as JSON. The pytest suite
 * checks both directions against dnspython. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peak/apl.h"
#include "peak/dns.h"

static void N(const char *s, struct dns_name *n)
{
	if (dns_name_parse(s, n))
		exit(3);
}

static void hexout(const char *name, const uint8_t *b, int n)
{
	printf("%s ", name);
	for (int i = 0; i < n; i++)
		printf("%02x", b[i]);
	putchar('\n');
}

static void build(void)
{
	uint8_t buf[4096], rd[256];
	struct dns_writer w;
	struct dns_name api, ssa, zone, ns, ns2, hm;
	struct apl_item it[8];
	N("api.svc.example.", &api);
	N("_ssa.api.svc.example.", &ssa);
	N("svc.example.", &zone);
	N("ns1.svc.example.", &ns);
	N("NS2.Svc.Example.", &ns2);
	N("hostmaster.svc.example.", &hm);

	/* 1: a full response */
	dns_writer_init(&w, buf, sizeof(buf), 0xbeef, DNS_F_QR | DNS_F_AA);
	dns_writer_question(&w, &api, DNS_T_APL, DNS_C_IN);
	int n = apl_parse_text("2:2001:db8:5::/64 2:2001:db8:6::/64", it, 8, NULL, 0);
	int rl = apl_write(it, (size_t)n, rd, sizeof(rd));
	dns_writer_rr_begin(&w, DNS_S_ANSWER, &api, DNS_T_APL, DNS_C_IN, 3600);
	dns_writer_bytes(&w, rd, (size_t)rl);
	dns_writer_rr_end(&w);
	const char *desc = "v=ssa1; slice=78; select=src; host=src; "
	                   "key=000102030405060708090a0b0c0d0e0f";
	dns_writer_rr_begin(&w, DNS_S_ANSWER, &ssa, DNS_T_TXT, DNS_C_IN, 3600);
	dns_writer_txt_rdata(&w, desc, strlen(desc));
	dns_writer_rr_end(&w);
	char big[600];
	for (int i = 0; i < 600; i++)
		big[i] = (char)('a' + i % 26);
	dns_writer_rr_begin(&w, DNS_S_ANSWER, &ssa, DNS_T_TXT, DNS_C_IN, 60);
	dns_writer_txt_rdata(&w, big, sizeof(big));
	dns_writer_rr_end(&w);
	dns_writer_rr_begin(&w, DNS_S_AUTHORITY, &zone, DNS_T_NS, DNS_C_IN, 3600);
	dns_writer_name(&w, &ns, true);
	dns_writer_rr_end(&w);
	dns_writer_rr_begin(&w, DNS_S_AUTHORITY, &zone, DNS_T_NS, DNS_C_IN, 3600);
	dns_writer_name(&w, &ns2, true);
	dns_writer_rr_end(&w);
	struct dns_soa soa = {ns, hm, 2026112201, 3600, 600, 604800, 30};
	dns_writer_rr_begin(&w, DNS_S_AUTHORITY, &zone, DNS_T_SOA, DNS_C_IN, 3600);
	dns_writer_soa_rdata(&w, &soa);
	dns_writer_rr_end(&w);
	uint8_t a6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0x53, [15] = 1};
	dns_writer_rr_begin(&w, DNS_S_ADDITIONAL, &ns, DNS_T_AAAA, DNS_C_IN, 3600);
	dns_writer_bytes(&w, a6, 16);
	dns_writer_rr_end(&w);
	uint8_t a4[4] = {192, 0, 2, 53};
	dns_writer_rr_begin(&w, DNS_S_ADDITIONAL, &ns, DNS_T_A, DNS_C_IN, 3600);
	dns_writer_bytes(&w, a4, 4);
	dns_writer_rr_end(&w);
	struct dns_ecs ecs = {2, 56, 48, {0x20, 0x01, 0x0d, 0xb8, 0, 0xaa, 0, 0}};
	dns_writer_opt(&w, 1232, 0, 0, true, &ecs);
	hexout("response", buf, dns_writer_finish(&w));

	/* 2: a query with Client Subnet, IPv4 */
	dns_writer_init(&w, buf, sizeof(buf), 0x1234, DNS_F_RD);
	dns_writer_question(&w, &api, DNS_T_AAAA, DNS_C_IN);
	struct dns_ecs ecs4 = {1, 24, 0, {198, 51, 100}};
	dns_writer_opt(&w, 4096, 0, 0, false, &ecs4);
	hexout("query", buf, dns_writer_finish(&w));

	/* 3: APL with both families and negation, and an unknown type */
	dns_writer_init(&w, buf, sizeof(buf), 7, DNS_F_QR);
	dns_writer_question(&w, &api, DNS_T_APL, DNS_C_IN);
	n = apl_parse_text("1:192.168.32.0/21 !1:192.168.38.0/28 2:2001:db8::1/32 1:0.0.0.0/0", it,
	                   8, NULL, 0);
	rl = apl_write(it, (size_t)n, rd, sizeof(rd));
	dns_writer_rr_begin(&w, DNS_S_ANSWER, &api, DNS_T_APL, DNS_C_IN, 5);
	dns_writer_bytes(&w, rd, (size_t)rl);
	dns_writer_rr_end(&w);
	dns_writer_rr_begin(&w, DNS_S_ANSWER, &api, 65280, DNS_C_IN, 5);
	dns_writer_bytes(&w, "\x01\x02\x03", 3);
	dns_writer_rr_end(&w);
	hexout("apl", buf, dns_writer_finish(&w));
}

static void json_name(const struct dns_name *n)
{
	char t[DNS_NAME_STRLEN];
	dns_name_print(n, t, sizeof(t));
	putchar('"');
	for (char *p = t; *p; p++) {
		if (*p == '"' || *p == '\\')
			putchar('\\');
		putchar(*p);
	}
	putchar('"');
}

static int parse(const char *hex)
{
	static uint8_t m[65536];
	size_t len = strlen(hex) / 2;
	for (size_t i = 0; i < len; i++)
		sscanf(hex + 2 * i, "%2hhx", &m[i]);
	struct dns_reader r;
	struct dns_question q;
	struct dns_rr rr;
	if (dns_reader_init(&r, m, len))
		return 1;
	printf("{\"id\": %u, \"flags\": %u, \"question\": [", r.hdr.id, r.hdr.flags);
	for (int i = 0; dns_reader_question(&r, &q) == 0; i++) {
		printf("%s{\"name\": ", i ? ", " : "");
		json_name(&q.name);
		printf(", \"type\": %u, \"class\": %u}", q.type, q.class);
	}
	printf("], \"rrs\": [");
	for (int i = 0;; i++) {
		int e = dns_reader_rr(&r, &rr);
		if (e == -ENOENT)
			break;
		if (e)
			return 1;
		printf("%s{\"section\": %d, \"name\": ", i ? ", " : "", rr.section);
		json_name(&rr.name);
		printf(", \"type\": %u, \"class\": %u, \"ttl\": %u, \"rdata\": ", rr.type, rr.class,
		       rr.ttl);
		char t[70000];
		struct dns_name n;
		struct dns_soa s;
		struct dns_edns ed;
		static struct apl_item items[APL_MAX_ITEMS];
		switch (rr.type) {
		case DNS_T_A:
		case DNS_T_AAAA:
			if (rr.rdlen != (rr.type == DNS_T_A ? 4 : 16))
				return 1;
			uint8_t a[16] = {0};
			memcpy(a, rr.rdata, rr.rdlen);
			addr_print(rr.type == DNS_T_A ? PEAK_AFI_IP4 : PEAK_AFI_IP6, a, t);
			printf("\"%s\"", t);
			break;
		case DNS_T_NS:
		case DNS_T_CNAME:
		case DNS_T_PTR:
			if (dns_rdata_name(m, len, &rr, &n))
				return 1;
			json_name(&n);
			break;
		case DNS_T_SOA:
			if (dns_rdata_soa(m, len, &rr, &s))
				return 1;
			printf("[");
			json_name(&s.mname);
			printf(", ");
			json_name(&s.rname);
			printf(", %u, %u, %u, %u, %u]", s.serial, s.refresh, s.retry, s.expire,
			       s.minimum);
			break;
		case DNS_T_TXT: {
			struct cur c = cur_make(rr.rdata, rr.rdlen);
			if (dns_rdata_txt(&rr, t, sizeof(t), NULL) < 0)
				return 1;
			printf("[");
			for (int k = 0; c.left; k++) {
				uint8_t l = cur_u8(&c);
				const uint8_t *p = cur_ptr(&c, l);
				printf("%s\"", k ? ", " : "");
				for (int j = 0; j < l; j++)
					printf("%02x", p[j]);
				printf("\"");
			}
			printf("]");
			break;
		}
		case DNS_T_APL: {
			int k = apl_parse(rr.rdata, rr.rdlen, items, APL_MAX_ITEMS);
			if (k < 0 || apl_print(items, (size_t)k, t, sizeof(t)) < 0)
				return 1;
			printf("\"%s\"", t);
			break;
		}
		case DNS_T_OPT:
			if (dns_edns_parse(&rr, &ed))
				return 1;
			printf("{\"udp\": %u, \"version\": %u, \"do\": %s", ed.udp_size, ed.version,
			       ed.do_bit ? "true" : "false");
			if (ed.has_ecs)
				printf(", \"ecs\": [%u, %u, %u, \"%s\"]", ed.ecs.family,
				       ed.ecs.source, ed.ecs.scope,
				       addr_print(ed.ecs.family == 1 ? PEAK_AFI_IP4 : PEAK_AFI_IP6,
				                  ed.ecs.addr, t));
			printf("}");
			break;
		default:
			printf("\"");
			for (int j = 0; j < rr.rdlen; j++)
				printf("%02x", rr.rdata[j]);
			printf("\"");
		}
		printf("}");
	}
	printf("], \"trailing\": %zu}\n", dns_reader_trailing(&r));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "build")) {
		build();
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "parse"))
		return parse(argv[2]);
	fprintf(stderr, "usage: wire_helper build | parse HEX\n");
	return 2;
}
