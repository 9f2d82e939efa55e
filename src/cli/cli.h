#pragma once
/* Shared helpers of the peak command's subcommands. Exit codes: 0 success, 1 a negative
 * answer (e.g. a rejected packet), 2 bad usage or input. */
#include <stdbool.h>
#include <stdint.h>

enum { EXIT_NO = 1, EXIT_USAGE = 2 };

/* Prints "peak CMD: message" to stderr and exits with EXIT_USAGE. */
_Noreturn void cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses a decimal number in [min, max] or exits with a usage error naming opt. */
uint64_t cli_u64(const char *cmd, const char *opt, const char *s, uint64_t min, uint64_t max);

/* Parses an IPv6 address or exits with a usage error naming opt. */
void cli_addr6(const char *cmd, const char *opt, const char *s, uint8_t out[static 16]);

/* Reads a 16-byte secret written as 32 hex digits (white space around it ignored) from a
 * file, or exits with a usage error. The secret is never printed. */
void cli_secret_file(const char *cmd, const char *path, uint8_t out[static 16]);

/* The hop secret a client command uses: from path (--secret-file) or else from the file
 * $PEAK_SECRET_FILE names; NULL if neither is set. Exits with a usage error if the file is
 * bad. */
const uint8_t *cli_secret_option(const char *cmd, const char *path, uint8_t out[static 16]);

/* True if argv holds -h or --help before any "--". */
bool cli_wants_help(int argc, char **argv);

int cmd_ssa(int argc, char **argv);
int cmd_apl(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_dns(int argc, char **argv);
int cmd_dns_ctl(int argc, char **argv);
int cmd_resolve(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_controller(int argc, char **argv);
int cmd_controller_ctl(int argc, char **argv);
int cmd_filter(int argc, char **argv);
int cmd_overlay(int argc, char **argv);
int cmd_overlay_ctl(int argc, char **argv);
int cmd_h3(int argc, char **argv);
