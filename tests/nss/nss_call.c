/*
 * Calls one entry point of an NSS hosts module the way glibc does, with a buffer of a given
 * size and offset, and prints what came back: the status, errno and h_errno, then one
 * address per line. For the ABI cases getaddrinfo never shows: a buffer too small, a
 * misaligned one, a tuple preallocated by the caller, AF_INET.
 *
 *   nss_call MODULE 4 NAME BUFLEN OFFSET [prealloc]
 *   nss_call MODULE 3|2 NAME BUFLEN OFFSET [inet]
 *   nss_call MODULE 1 NAME BUFLEN OFFSET
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <nss.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static void *sym(void *h, const char *name)
{
	void *f = dlsym(h, name);
	if (!f) {
		fprintf(stderr, "nss_call: %s: %s\n", name, dlerror());
		exit(2);
	}
	return f;
}

static void print_hostent(const struct hostent *he)
{
	char s[INET6_ADDRSTRLEN];
	printf("name %s\n", he->h_name);
	for (char **a = he->h_addr_list; *a; a++)
		printf("%s\n", inet_ntop(he->h_addrtype, *a, s, sizeof(s)));
	if (he->h_aliases[0])
		printf("alias %s\n", he->h_aliases[0]);
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr,
		        "usage: nss_call MODULE 4|3|2|1 NAME BUFLEN OFFSET [prealloc|inet]\n");
		return 2;
	}
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "nss_call: %s\n", dlerror());
		return 2;
	}
	int which = atoi(argv[2]);
	const char *name = argv[3], *opt = argc > 6 ? argv[6] : "";
	size_t buflen = strtoul(argv[4], NULL, 10), off = strtoul(argv[5], NULL, 10);
	char *mem = malloc(buflen + off + 1);
	char *buf = mem + off;
	int err = 0, herr = 0;
	enum nss_status s;
	struct hostent he;
	char s6[INET6_ADDRSTRLEN];
	if (which == 4) {
		nss_gethostbyname4_r *f = sym(h, "_nss_peak_gethostbyname4_r");
		struct gaih_addrtuple first = {0}, *pat = strcmp(opt, "prealloc") ? NULL : &first;
		s = f(name, &pat, buf, buflen, &err, &herr, NULL);
		printf("%d %d %d\n", s, err, herr);
		for (struct gaih_addrtuple *t = pat; s == NSS_STATUS_SUCCESS && t; t = t->next)
			printf("%s%s%s\n", inet_ntop(t->family, t->addr, s6, sizeof(s6)),
			       t->name ? " name " : "", t->name ? t->name : "");
	} else if (which == 3 || which == 2) {
		int af = strcmp(opt, "inet") ? AF_INET6 : AF_INET;
		char *canon = NULL;
		if (which == 3) {
			nss_gethostbyname3_r *f = sym(h, "_nss_peak_gethostbyname3_r");
			s = f(name, af, &he, buf, buflen, &err, &herr, NULL, &canon);
		} else {
			nss_gethostbyname2_r *f = sym(h, "_nss_peak_gethostbyname2_r");
			s = f(name, af, &he, buf, buflen, &err, &herr);
		}
		printf("%d %d %d\n", s, err, herr);
		if (s == NSS_STATUS_SUCCESS) {
			print_hostent(&he);
			if (canon)
				printf("canon %s\n", canon);
		}
	} else {
		nss_gethostbyname_r *f = sym(h, "_nss_peak_gethostbyname_r");
		s = f(name, &he, buf, buflen, &err, &herr);
		printf("%d %d %d\n", s, err, herr);
	}
	free(mem);
	return 0;
}
