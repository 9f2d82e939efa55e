/*
 * libcurl resolved with dlopen (curl_load.h). Each function etcd.c and kube.c call is defined
 * here with the prototype of curl/curl.h, so the call sites stay as they are; it loads the
 * library on first use (pthread_once) and calls through the table. The executable does not
 * export these names (no -rdynamic), so libcurl's own calls never bind to them. When the
 * library is missing the entry points fail the way their callers already handle:
 * curl_global_init and curl_easy_perform return CURLE_FAILED_INIT, the constructors NULL,
 * the others an error code or nothing; curl_load logs why, once.
 *
 * curl_easy_setopt and curl_easy_getinfo are variadic: their one argument is read with the
 * type libcurl itself reads it with (the option's type range, CURLOPTTYPE_*; getinfo always
 * takes a pointer) and passed on.
 */
#define CURL_DISABLE_TYPECHECK /* the names below are definitions, not typechecked calls */
#include "curl_load.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "../sys/dlwrap.h"
#include "../sys/log.h"

/* X(return type, name, parameters, arguments, value when the library is missing) for the
 * functions returning a value, V(name, parameters, arguments) for the void ones. */
#define CURL_FUNCS(X, V)                                                                           \
	X(CURLcode, curl_global_init, (long flags), (flags), CURLE_FAILED_INIT)                    \
	X(CURL *, curl_easy_init, (void), (), NULL)                                                \
	V(curl_easy_cleanup, (CURL * h), (h))                                                      \
	V(curl_easy_reset, (CURL * h), (h))                                                        \
	X(CURLcode, curl_easy_perform, (CURL * h), (h), CURLE_FAILED_INIT)                         \
	X(const char *, curl_easy_strerror, (CURLcode c), (c), "libcurl is not loaded")            \
	X(char *, curl_easy_escape, (CURL * h, const char *s, int n), (h, s, n), NULL)             \
	V(curl_free, (void *p), (p))                                                               \
	X(struct curl_slist *, curl_slist_append, (struct curl_slist * l, const char *s), (l, s),  \
	  NULL)                                                                                    \
	V(curl_slist_free_all, (struct curl_slist * l), (l))                                       \
	X(CURLM *, curl_multi_init, (void), (), NULL)                                              \
	X(CURLMcode, curl_multi_cleanup, (CURLM * m), (m), CURLM_BAD_HANDLE)                       \
	X(CURLMcode, curl_multi_add_handle, (CURLM * m, CURL * h), (m, h), CURLM_BAD_HANDLE)       \
	X(CURLMcode, curl_multi_remove_handle, (CURLM * m, CURL * h), (m, h), CURLM_BAD_HANDLE)    \
	X(CURLMcode, curl_multi_perform, (CURLM * m, int *running), (m, running),                  \
	  CURLM_BAD_HANDLE)                                                                        \
	X(CURLMcode, curl_multi_fdset,                                                             \
	  (CURLM * m, fd_set * r, fd_set * w, fd_set * e, int *maxfd), (m, r, w, e, maxfd),        \
	  CURLM_BAD_HANDLE)                                                                        \
	X(CURLMcode, curl_multi_wait,                                                              \
	  (CURLM * m, struct curl_waitfd * extra, unsigned n, int ms, int *numfds),                \
	  (m, extra, n, ms, numfds), CURLM_BAD_HANDLE)                                             \
	X(CURLMsg *, curl_multi_info_read, (CURLM * m, int *left), (m, left), NULL)

static struct {
	CURL_FUNCS(DLW_FIELD_X, DLW_FIELD_V)
	CURLcode (*curl_easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*curl_easy_getinfo)(CURL *, CURLINFO, ...);
} fn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_ret = -ENOENT;

/* The variadic two, whose entry points are written out below, resolved with the rest. */
#define CURL_OPENED(X, V)                                                                          \
	CURL_FUNCS(X, V)                                                                           \
	X(CURLcode, curl_easy_setopt, (), (), 0)                                                   \
	X(CURLcode, curl_easy_getinfo, (), (), 0)

DLW_OPENER(curl_open, CURL_OPENED)

static void load_once(void)
{
	char err[256] = "", err2[256] = "";
	load_ret = curl_open(CURL_SONAME, err, sizeof(err));
	if (load_ret)
		load_ret = curl_open(CURL_SONAME_GNUTLS, err2, sizeof(err2));
	if (load_ret)
		log_msg(LOG_ERR,
		        "cannot load libcurl (%s; %s): the etcd and Kubernetes stores need it, "
		        "Debian package libcurl4",
		        err, err2);
}

int curl_load(void)
{
	pthread_once(&once, load_once);
	return load_ret;
}

#define DLW_LOADER curl_load
CURL_FUNCS(DLW_WRAP_X, DLW_WRAP_V)

/* The argument as libcurl's own curl_easy_setopt reads it (lib/setopt.c): a long, an object
 * or function pointer, a curl_off_t, or a struct curl_blob pointer, by the option's range. */
CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
	va_list ap;
	CURLcode r;
	if (curl_load() || !fn.curl_easy_setopt)
		return CURLE_FAILED_INIT;
	va_start(ap, opt);
	if (opt < CURLOPTTYPE_OBJECTPOINT) {
		long v = va_arg(ap, long);
		r = fn.curl_easy_setopt(h, opt, v);
	} else if (opt >= CURLOPTTYPE_OFF_T && opt < CURLOPTTYPE_BLOB) {
		curl_off_t v = va_arg(ap, curl_off_t);
		r = fn.curl_easy_setopt(h, opt, v);
	} else {
		/* objects, strings, blobs and (same size and passing on every ABI libcurl
		 * runs on) functions */
		void *v = va_arg(ap, void *);
		r = fn.curl_easy_setopt(h, opt, v);
	}
	va_end(ap);
	return r;
}

CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	va_list ap;
	if (curl_load() || !fn.curl_easy_getinfo)
		return CURLE_FAILED_INIT;
	va_start(ap, info);
	void *p = va_arg(ap, void *);
	va_end(ap);
	return fn.curl_easy_getinfo(h, info, p);
}
