/*
 * OpenDHT's C API resolved with dlopen (odht_load.h). Each function dht.c calls is defined
 * here with the prototype of opendht/opendht_c.h, so the call sites stay as they are; it
 * loads the library on first use (pthread_once: OpenDHT's threads may call dht_value_get_data
 * from its callbacks, though only after dht_runner_new, which loads first) and calls through
 * the table. The executable does not export these names (no -rdynamic), so the library's own
 * calls never bind to them. When the library is missing the entry points fail the way their
 * callers already handle: dht_runner_new returns NULL, dht_runner_run_config -ENOENT, the
 * others do nothing or return a zero value; odht_load logs why, once.
 */
#include "odht_load.h"

#include <dlfcn.h>
#include <errno.h>
#include <opendht/opendht_c.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "../sys/dlwrap.h"
#include "../sys/log.h"

/* X(return type, name, parameters, arguments, value when the library is missing) for the
 * functions returning a value, V(name, parameters, arguments) for the void ones. */
#define ODHT_FUNCS(X, V)                                                                           \
	X(const char *, dht_version, (void), (), "")                                               \
	V(dht_infohash_get, (dht_infohash * h, const uint8_t *dat, size_t dat_size),               \
	  (h, dat, dat_size))                                                                      \
	X(const char *, dht_infohash_print, (const dht_infohash *h), (h), "")                      \
	X(dht_value *, dht_value_new, (const uint8_t *data, size_t size), (data, size), NULL)      \
	V(dht_value_unref, (dht_value * v), (v))                                                   \
	X(dht_data_view, dht_value_get_data, (const dht_value *data), (data), (dht_data_view){0})  \
	V(dht_op_token_delete, (dht_op_token * token), (token))                                    \
	V(dht_runner_config_default, (dht_runner_config * config), (config))                       \
	X(dht_runner *, dht_runner_new, (void), (), NULL)                                          \
	V(dht_runner_delete, (dht_runner * runner), (runner))                                      \
	X(int, dht_runner_run_config,                                                              \
	  (dht_runner * runner, in_port_t port, const dht_runner_config *config),                  \
	  (runner, port, config), -ENOENT)                                                         \
	V(dht_runner_bootstrap, (dht_runner * runner, const char *host, const char *service),      \
	  (runner, host, service))                                                                 \
	V(dht_runner_get,                                                                          \
	  (dht_runner * runner, const dht_infohash *hash, dht_get_cb cb, dht_done_cb done_cb,      \
	   void *cb_user_data),                                                                    \
	  (runner, hash, cb, done_cb, cb_user_data))                                               \
	X(dht_op_token *, dht_runner_listen,                                                       \
	  (dht_runner * runner, const dht_infohash *hash, dht_value_cb cb,                         \
	   dht_shutdown_cb done_cb, void *cb_user_data),                                           \
	  (runner, hash, cb, done_cb, cb_user_data), NULL)                                         \
	V(dht_runner_put,                                                                          \
	  (dht_runner * runner, const dht_infohash *hash, const dht_value *value,                  \
	   dht_done_cb done_cb, void *cb_user_data, bool permanent),                               \
	  (runner, hash, value, done_cb, cb_user_data, permanent))                                 \
	X(dht_infohash, dht_runner_get_node_id, (const dht_runner *runner), (runner),              \
	  (dht_infohash){{0}})

static struct {
	ODHT_FUNCS(DLW_FIELD_X, DLW_FIELD_V)
} fn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_ret = -ENOENT;

DLW_OPENER(odht_open, ODHT_FUNCS)

static void load_once(void)
{
	char err[256] = "";
	load_ret = odht_open(ODHT_SONAME, err, sizeof(err));
	if (load_ret)
		log_msg(
		    LOG_ERR,
		    "overlay: dht: cannot load OpenDHT (%s): the DHT slave needs its C library, "
		    "Debian package libopendht-c2",
		    err);
}

int odht_load(void)
{
	pthread_once(&once, load_once);
	return load_ret;
}

#define DLW_LOADER odht_load
ODHT_FUNCS(DLW_WRAP_X, DLW_WRAP_V)
