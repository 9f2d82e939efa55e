#pragma once
/*
 * The control-line grammar: every line PEAK's daemons exchange on their control links is
 * parsed and written here, so both ends agree byte for byte.
 *
 *   controller -> agent     challenge NONCE                 (32 lowercase hex digits)
 *   agent -> controller     hello NODE [TAG [NONCE]]        (TAG: 64 lowercase hex digits,
 *                                                            HMAC-SHA256, see ctlauth.h;
 *                                                            NONCE: the agent's, 32 digits)
 *   controller -> agent     welcome TAG                     (the controller's proof over
 *                                                            the agent's NONCE, ctlauth.h)
 *                           health SERVICE ENDPOINT up|down
 *                           load SERVICE ENDPOINT CONNECTIONS CPU_NANOSECONDS [APP]
 *                                [sat THROTTLED_NS QUEUED BACKLOG]
 *                           (APP: the pod's own load figure, optional; steering uses it
 *                           when every endpoint of the service reports one. sat, optional
 *                           (agents before it send none): the pod's saturation: the CPU
 *                           time its cgroup was throttled (a counter, ns), and its
 *                           listening socket's accept queue and that queue's limit now)
 *   controller -> agent     map SERVICE, ep ENDPOINT START/LOG2 ..., end
 *                           (several ep lines for one endpoint add up; at most
 *                           CTL_EP_BLOCKS_MAX blocks on one line)
 *   controller -> agent     add SERVICE ENDPOINT ADDRESS WEIGHT [NODE], del SERVICE ENDPOINT
 *                           (before each map of a service: one add line per endpoint of it
 *                           added at run time, the whole set, and a del per one removed
 *                           since; they take effect with that map, at its end: ctlrt.h.
 *                           After a change they also go before its handovers, which may
 *                           name a pod they add)
 *   controller -> agent     handover SERVICE OLD NEW MS START/LOG2 ...
 *                           (the blocks move from endpoint OLD to NEW, which still
 *                           forward to each other for MS milliseconds, 1..CTL_HANDOVER_MS_MAX;
 *                           1 to CTL_EP_BLOCKS_MAX blocks; sent before the map that moves
 *                           them; an agent that does not know the line ignores it)
 *   controller/operator -> peak dns or the controller's control socket
 *                           health ..., weight SERVICE ENDPOINT N, status, reload
 *                           add SERVICE ENDPOINT ADDRESS WEIGHT [NODE]
 *                           (an endpoint added at run time: its pod's IPv6 address, its
 *                           configured weight and node; also a line of the stored record
 *                           that marks it as added at run time)
 *                           del SERVICE ENDPOINT (an endpoint added at run time removed)
 *                           batch N (the next N lines on the control socket, each add or
 *                           del, applied all or nothing; 1..CTL_BATCH_MAX)
 *   replies                 ok | error: TEXT
 *
 * A line is at most CTL_LINE_MAX bytes with its '\n'. Tokens are separated by exactly one
 * space; no leading or trailing space, no control bytes. Numbers are decimal digits only
 * (no sign, no leading zero, no overflow, each within its field's range). SERVICE is a DNS
 * name in presentation form (dns_name_parse accepts it); ENDPOINT and NODE are 1 to
 * CTL_ID_MAX - 1 printable bytes other than '"' and '\'. The writer refuses what the parser
 * would refuse, so whatever ctl_write writes, ctl_parse reads back to the same message.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peak/assign.h"

enum {
	CTL_LINE_MAX = 1024,    /* bytes of one line, its '\n' included */
	CTL_SVC_MAX = 256,      /* a service name as text, NUL included */
	CTL_ID_MAX = 64,        /* an endpoint id or node name, NUL included (CFG_ID_MAX) */
	CTL_NONCE_LEN = 16,     /* bytes of a challenge nonce */
	CTL_TAG_LEN = 32,       /* bytes of a hello tag (HMAC-SHA256) */
	CTL_EP_BLOCKS_MAX = 64, /* blocks on one ep line */
	CTL_TEXT_MAX = 256,     /* bytes of an error reply's text, NUL included */
	CTL_WEIGHT_MAX = ASSIGN_MAX_WEIGHT,
	CTL_SLICES_MAX = ASSIGN_MAX_SLICES,
	CTL_HANDOVER_MS_MAX = 600000, /* a handover window's longest deadline */
	CTL_BATCH_MAX = 1000000,      /* lines of one batch */
};

enum ctl_kind {
	CTL_NONE = 0,
	CTL_CHALLENGE, /* nonce */
	CTL_HELLO,     /* id = node, has_tag, tag, has_nonce, nonce (the agent's) */
	CTL_WELCOME,   /* tag (the controller's proof) */
	CTL_HEALTH,    /* svc, id, up */
	CTL_LOAD,      /* svc, id, conns, cpu_ns, has_app, app, has_sat, throttled_ns, queued,
	                * backlog */
	CTL_WEIGHT,    /* svc, id, weight */
	CTL_MAP,       /* svc */
	CTL_EP,        /* id, blocks[nblocks] */
	CTL_END,
	CTL_STATUS,
	CTL_RELOAD,
	CTL_OK,
	CTL_ERROR,    /* text */
	CTL_HANDOVER, /* svc, id = old owner, to = new owner, ms, blocks[nblocks] (>= 1) */
	CTL_ADD,      /* svc, id, addr, weight, node ("" when not given) */
	CTL_DEL,      /* svc, id */
	CTL_BATCH,    /* count */
};

struct ctl_msg {
	enum ctl_kind kind;
	bool up;
	bool has_tag;
	bool has_nonce; /* hello: the agent asks the controller to prove the key */
	bool has_app;   /* load: the application's figure is there */
	bool has_sat;   /* load: the saturation figures are there */
	char svc[CTL_SVC_MAX];
	char id[CTL_ID_MAX];
	uint8_t nonce[CTL_NONCE_LEN];
	uint8_t tag[CTL_TAG_LEN]; /* hello: the agent's tag; welcome: the controller's */
	uint64_t conns, cpu_ns, app;
	uint64_t throttled_ns;    /* load, sat: CPU time the pod's cgroup was throttled (counter) */
	uint32_t queued, backlog; /* load, sat: its accept queue now, and the queue's limit */
	uint32_t weight;
	unsigned nblocks;
	struct assign_block blocks[CTL_EP_BLOCKS_MAX];
	char text[CTL_TEXT_MAX];
	char to[CTL_ID_MAX];   /* handover: the new owner */
	uint32_t ms;           /* handover: the window's deadline, ms after the line */
	uint8_t addr[16];      /* add: the pod's IPv6 address */
	char node[CTL_ID_MAX]; /* add: its node, "" when not given */
	uint32_t count;        /* batch: the lines that follow */
	const char *why; /* after a failed ctl_parse: what the line should have been (static) */
};

/* Finds the first line of buf. Returns the bytes it takes with its '\n' (> 0) and its
 * length without the '\n' in *linelen; 0 if no '\n' yet and the line may still fit;
 * -EMSGSIZE if the line is longer than CTL_LINE_MAX (the peer is broken or hostile). */
long ctl_line_split(const uint8_t *buf, size_t len, size_t *linelen);

/* Parses one line (len bytes, without its '\n'). Fills all of *m (zeroed first). Returns
 * 0, or -EBADMSG for anything the grammar above does not allow; *m is then CTL_NONE with
 * m->why saying what the line should have been ("unknown command" or the kind's form). */
int ctl_parse(const char *line, size_t len, struct ctl_msg *m);

/* Writes m as one line with its '\n' into out (NUL-terminated when there is room for it).
 * Returns the length with the '\n' (at most CTL_LINE_MAX), -EINVAL if a field is outside
 * the grammar, or -EMSGSIZE if cap is too small. */
int ctl_write(const struct ctl_msg *m, char *out, size_t cap);

/* The lowercase name of a line kind ("hello", "health", ...; "?" for none). */
const char *ctl_kind_name(enum ctl_kind k);
