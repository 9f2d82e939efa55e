#pragma once
/*
 * The small-object log (issue 20): objects up to a size threshold are appended to segment
 * files in the data directory's "log" subdirectory ("seg-NNNNNNNN") instead of one file
 * each, so a group of PUTs costs one fdatasync, not a file and a directory flush each. An
 * in-memory index maps an object's name (store_object_name) to its newest record; start-up
 * rebuilds it by scanning the segments in order, and drops a segment's tail from its first
 * torn or damaged record on (a crash mid-append: those PUTs were never acknowledged).
 *
 * A record (integers big endian):
 *   "PKL1", type u8 (1 put, 2 delete), flags u8 (0), key length u16, body length u32,
 *   slice u32, seq u64, version u64 (wall-clock ms), the key (a delete: the object's
 *   name), the body, then the first 8 bytes of the SHA-256 of all before, and "PKC1" (the
 *   commit marker). The newest record of a name (highest seq) wins, wherever it lies; a
 *   delete record hides older puts of its name. A segment rolls over at a size; older
 *   segments are read-only.
 *
 * Compaction (a background thread, slog_compact_start): a read-only segment whose live
 * records (those the index points at) fill less than half of it is rewritten: its live
 * records are appended to the current segment with their seq (flushed, then the index
 * points at the copies), then it is unlinked. A delete record in it is copied too while an
 * older record may lie in another segment (one whose least seq is below it). A crash
 * between leaves both copies, the same seq: either is the object.
 *
 * Objects live either in the log or as files (large ones, repair's pulls); the functions
 * named store_object_* below see both, so listings, repair, drops and tombstones treat a
 * log object exactly as a file object. Thread-safe: the loop, the commit thread, the fetch
 * threads and the repair thread all use one log.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "req.h"

enum {
	SLOG_HDR = 32,   /* a record's header */
	SLOG_TRAIL = 12, /* the check and the commit marker */
	SLOG_PUT = 1,
	SLOG_DEL = 2,
	SLOG_DEF_MAX_OBJ = 64 << 10, /* bodies up to this go to the log by default */
	SLOG_DEF_SEG = 64 << 20,     /* a segment rolls at this size by default */
	SLOG_NAME_LEN = 73,          /* store_object_name's length */
};

/* One record as the scanner found it: pointers into the scanned bytes. */
struct slog_rec {
	unsigned type;
	uint32_t slice;
	uint64_t seq, version;
	const uint8_t *key; /* a delete: the object's name */
	size_t key_len;
	const uint8_t *body;
	size_t body_len;
	size_t off, len; /* the record's offset in the scanned bytes and its length */
};

typedef void (*slog_rec_fn)(void *arg, const struct slog_rec *rec);

/* Scans the records of p[0..n) in order through the project's cursor, calling fn for each
 * valid one; stops at the first torn or invalid record. Returns the length of the valid
 * prefix (n if every byte is a whole record). */
size_t slog_scan(const uint8_t *p, size_t n, slog_rec_fn fn, void *arg);

/* Writes a record into out (SLOG_HDR + key_len + body_len + SLOG_TRAIL bytes). */
size_t slog_rec_write(uint8_t *out, unsigned type, uint32_t slice, uint64_t seq, uint64_t version,
                      const uint8_t *key, size_t kl, const uint8_t *body, size_t len);

struct slog_ent;

struct slog_seg {
	uint32_t id;
	int fd; /* -1 once compacted away */
	uint64_t size;
	uint64_t live;   /* bytes of the records the index points at */
	uint64_t minseq; /* the least seq of its records (UINT64_MAX: none) */
};

struct slog {
	int dirfd; /* the data directory (object files) */
	int logfd; /* its "log" subdirectory */
	uint64_t seg_max;
	/* held by whoever appends (one at a time), across the write and the flush */
	pthread_mutex_t amu;
	/* held briefly for the index and the segment table; never across a flush */
	pthread_mutex_t mu;
	struct slog_seg *segs; /* in id order; the last is the one appended to */
	size_t nsegs;
	struct slog_ent **tab; /* the index: chained hash table of names */
	size_t tabsize, count;
	uint64_t seq;
	atomic_uint_fast64_t syncs;         /* fdatasyncs of appends */
	atomic_uint_fast64_t records;       /* put records appended */
	atomic_uint_fast64_t torn;          /* segment tails dropped at start-up */
	atomic_uint_fast64_t compactions;   /* segments rewritten and removed */
	atomic_uint_fast64_t compact_bytes; /* bytes of dead records they freed */
	/* an object file may be in dirfd: set by the pod at start-up if it holds any, and
	 * before it renames one into place (a large PUT, a pull); while it is not, an append
	 * does not look for a file of each name (a faccessat per PUT) */
	atomic_bool files;
	/* the compaction thread */
	pthread_t th;
	pthread_mutex_t cmu;
	pthread_cond_t ccv;
	bool cstarted, cstop;
	bool open;
};

/* Opens (creates) dirfd's log and rebuilds the index, truncating a torn tail of any
 * segment (logged). seg_max: the roll-over size (0: the default). Returns 0 or -errno. */
int slog_open(struct slog *l, int dirfd, uint64_t seg_max);

/* Starts the compaction thread (signals must already be blocked: it inherits the mask).
 * Returns 0 or -errno. */
int slog_compact_start(struct slog *l);

/* Stops the compaction thread after the segment under way. Safe if never started. */
void slog_compact_stop(struct slog *l);

/* Segments on disk. */
size_t slog_segments(struct slog *l);

/* Closes the segments and frees the index. Safe on a zeroed log. */
void slog_close(struct slog *l);

/* One PUT of a group append. */
struct slog_put {
	const char *name; /* store_object_name of the key */
	uint32_t slice;
	const uint8_t *key;
	size_t key_len;
	const uint8_t *body;
	size_t body_len;
	uint64_t version; /* set by slog_append: the wall-clock ms of the append */
	bool existed;     /* set by slog_append: the name had an object before (log or file) */
};

/* Appends the n PUTs with one write and one fdatasync, then makes them visible in the
 * index (a file of the same name goes). Returns 0 or -errno (none is stored). */
int slog_append(struct slog *l, struct slog_put *p, size_t n);

/* A log object: its segment (a dup'ed descriptor the caller closes), where its key
 * starts (the body follows it), their lengths, and its version. */
struct slog_obj {
	int fd;
	uint64_t key_off, body_len, version;
	size_t key_len;
};

/* Looks name up in the log. Returns 0 with *o filled (o->fd open), -ENOENT, or -errno. */
int slog_get(struct slog *l, const char *name, struct slog_obj *o);

/* Appends a delete record for name if the log has it (flushed if sync), and drops it from
 * the index. Returns 0, -ENOENT if the log has no such object, or -errno. */
int slog_del(struct slog *l, const char *name, bool sync);

/* Whether name is in the log. */
bool slog_has(struct slog *l, const char *name);

/* The log's names (malloc'ed, STORE_NAME_MAX each), their count in *n. */
char (*slog_names(struct slog *l, size_t *n))[STORE_NAME_MAX];

/* Objects in the log. */
size_t slog_count(struct slog *l);

/* An object's version (ms): the log's, else its file's mtime; 0 if it is absent. */
uint64_t store_object_version(struct slog *l, const char *name);

/* The key, body size and version of the object name (log or file); false if absent. */
bool store_object_info(struct slog *l, const char *name, uint8_t key[static STORE_KEY_MAX],
                       size_t *kl, uint64_t *size, uint64_t *version);

/* Removes the object name durably (a delete record, or the file's unlink and a directory
 * fsync). Returns 0 if it was there, -ENOENT if not, or -errno. */
int store_object_remove(struct slog *l, const char *name);

/* store_object_remove without the flush, for many removals that need not be durable one
 * by one (a crash may bring such an object back: a drop of a copy that lives elsewhere);
 * store_objects_flush makes those before it durable. */
int store_object_drop(struct slog *l, const char *name);

/* Flushes the log's current segment and the data directory. Returns 0 or -errno. */
int store_objects_flush(struct slog *l);
