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

/* The Kubernetes client's options every --source kubernetes command takes: CLI_KUBE_OPTIONS
 * in its getopt_long table, cli_kube_opt in its switch's default (true when it took c). */
enum { CLI_OPT_KUBE_API = 0x180, CLI_OPT_KUBE_TOKEN, CLI_OPT_KUBE_CA, CLI_OPT_KUBE_SECRET };
/* clang-format off */
#define CLI_KUBE_OPTIONS                                                                           \
	{"kube-api", required_argument, 0, CLI_OPT_KUBE_API},                                      \
	{"kube-token-file", required_argument, 0, CLI_OPT_KUBE_TOKEN},                             \
	{"kube-ca", required_argument, 0, CLI_OPT_KUBE_CA},                                        \
	{"kube-secret-dir", required_argument, 0, CLI_OPT_KUBE_SECRET}
/* clang-format on */
struct kube_opts;
bool cli_kube_opt(int c, const char *arg, struct kube_opts *ko);

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
