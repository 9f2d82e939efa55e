/*
 * A library's functions resolved with dlopen on first use, from one X-macro list
 * LIST(X, V): X(return type, name, parameters, arguments, value when the library is
 * missing) for the functions returning a value, V(name, parameters, arguments) for the void
 * ones. odht_load.c (OpenDHT) and curl_load.c (libcurl) use it.
 */
#ifndef PEAK_SYS_DLWRAP_H
#define PEAK_SYS_DLWRAP_H

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The members of the table of pointers: struct { LIST(DLW_FIELD_X, DLW_FIELD_V) } fn; */
#define DLW_FIELD_X(ret, name, params, args, dflt) ret(*name) params;
#define DLW_FIELD_V(name, params, args) void(*name) params;

/* In the opener, with void *h (the dlopen handle), const char *soname, char *err and size_t
 * errlen in scope, a table fn and a label fail: resolves one name into fn or writes why to
 * err and goes to fail. (dlsym's void * to a function pointer: POSIX guarantees it, ISO C
 * has no cast for it.) */
#define DLW_LOAD_X(ret, name, params, args, dflt)                                                  \
	if (!(*(void **)&fn.name = dlsym(h, #name))) {                                             \
		snprintf(err, errlen, "%s: no %s", soname, #name);                                 \
		goto fail;                                                                         \
	}
#define DLW_LOAD_V(name, params, args) DLW_LOAD_X(void, name, params, args, 0)

/* Defines int FNAME(const char *soname, char *err, size_t errlen): opens the library soname
 * and resolves LIST's names into fn; 0, or -ENOENT
 * with why in err and fn cleared. */
#define DLW_OPENER(FNAME, LIST)                                                                    \
	int FNAME(const char *soname, char *err, size_t errlen)                                    \
	{                                                                                          \
		void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);                                   \
		if (!h) {                                                                          \
			snprintf(err, errlen, "%s", dlerror());                                    \
			return -ENOENT;                                                            \
		}                                                                                  \
		LIST(DLW_LOAD_X, DLW_LOAD_V)                                                       \
		return 0;                                                                          \
	fail:                                                                                      \
		memset(&fn, 0, sizeof(fn));                                                        \
		dlclose(h);                                                                        \
		return -ENOENT;                                                                    \
	}

/* The entry points, each with the library's prototype: it loads the library through
 * DLW_LOADER() (0 when loaded; define it before using these) and calls through fn, or
 * returns the list's value for a missing library. */
#define DLW_WRAP_X(ret, name, params, args, dflt)                                                  \
	ret name params                                                                            \
	{                                                                                          \
		if (DLW_LOADER() || !fn.name)                                                      \
			return dflt;                                                               \
		return fn.name args;                                                               \
	}
#define DLW_WRAP_V(name, params, args)                                                             \
	void name params                                                                           \
	{                                                                                          \
		if (DLW_LOADER() || !fn.name)                                                      \
			return;                                                                    \
		fn.name args;                                                                      \
	}

#endif
