/* libcurl loaded at run time, on the first call of a curl_* function, not by the dynamic
 * loader at every `peak` command: only the etcd and Kubernetes stores use it, and linking it
 * cost every command the loader's time for libcurl and its TLS and HTTP/2 libraries.
 * curl_load.c defines the curl_* functions that etcd.c and kube.c call, under the same names
 * and prototypes, each resolving the library on first use. */
#pragma once

#include <stddef.h>

#define CURL_SONAME "libcurl.so.4"
#define CURL_SONAME_GNUTLS "libcurl-gnutls.so.4"

/* Opens CURL_SONAME (or, without it, CURL_SONAME_GNUTLS) once (later calls return the first
 * result) and resolves every function the project calls. Returns 0, or -ENOENT (library or a
 * symbol missing; logged once, with the package to install). */
int curl_load(void);

/* Opens the library <soname> and resolves every function from it, replacing the table; for
 * tests and curl_load. Returns 0 or -ENOENT with why in <err> (<errlen> bytes, may be 0). */
int curl_open(const char *soname, char *err, size_t errlen);
