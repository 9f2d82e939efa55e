#pragma once
/* The blocks of a controller's 'ep' line ("ep ID START/LOG2 START/LOG2 ..."): pure parsing,
 * no I/O, so it can be fuzzed and unit-tested. */
#include <stddef.h>

#include "peak/assign.h"
#include "peak/ssa.h"

/* Slices a service may have (assign.h), so a block never spans more than 2^24 of them. */
enum { MAPLINE_MAX_LOG2 = 24 };

/* Parses the blocks part of an 'ep' line: len bytes of text (no NUL needed), tokens
 * "START/LOG2" separated by single spaces, each number decimal digits only (no sign, no
 * leading zero but in "0"). Each block is 2^LOG2 slices from slice START of the service's
 * space sp: LOG2 <= MAPLINE_MAX_LOG2, START aligned to the block, the block inside one
 * prefix of sp (as assign_block_prefix takes it). Empty text is no blocks. Writes the first
 * max blocks to out (out may be NULL, max 0, to count them) and the count to *n. Returns 0,
 * or -EBADMSG when any token is malformed or out of range: then the whole line is refused,
 * *n is 0 and what out holds is to be ignored. */
int mapline_blocks_parse(const char *text, size_t len, const struct ssa_space *sp,
                         struct assign_block *out, size_t max, size_t *n);
