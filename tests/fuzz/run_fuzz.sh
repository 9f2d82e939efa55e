#!/bin/sh
# Runs one libFuzzer target for a bounded time: run_fuzz.sh TARGET SEED_DIR WORK_DIR [SECONDS]
# New inputs go to WORK_DIR (in the build tree), never into the seed corpus.
set -eu
target=$1 seeds=$2 work=$3 secs=${4:-${PEAK_FUZZ_SECONDS:-20}}
mkdir -p "$work"
# -error_exitcode: libFuzzer's default for a crash is 77, which meson counts as a skip
exec "$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
	-error_exitcode=1 -print_final_stats=1 "$work" "$seeds"
