/* OpenDHT's C library (libopendht-c) loaded at run time, when the overlay's DHT slave starts,
 * not by the dynamic loader at every `peak` command: it pulls in OpenDHT's C++ and its
 * dependencies (about 9 ms of relocations per command that never uses them). odht_load.c
 * defines the functions of opendht/opendht_c.h that dht.c calls, under the same names, each
 * resolving the library on first use. */
#pragma once

#include <stddef.h>

#define ODHT_SONAME "libopendht-c.so.2"

/* Opens ODHT_SONAME once (later calls return the first result) and resolves every function
 * the project calls. Returns 0, or -ENOENT (library or a symbol missing; logged once, with
 * the package to install). */
int odht_load(void);

/* Opens the library <soname> and resolves every function from it, replacing the table; for
 * tests and odht_load. Returns 0 or -ENOENT with why in <err> (<errlen> bytes, may be 0). */
int odht_open(const char *soname, char *err, size_t errlen);
