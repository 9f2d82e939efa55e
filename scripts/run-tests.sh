#!/bin/sh
# Runs every test suite in three builds and prints 'N passed, N failed' last:
#   build/      gcc: unit, fuzz corpus replay, CLI, DNS, client, filter, interop, NSS,
#               regress, the demo and testbed, the bench smoke runs and the install suites;
#               not the daemon scenario suites (suite 'scenario': cluster, store,
#               controlplane, k8s, h3, overlay), which run once, under the sanitizers
#   build-san/  gcc with ASan+UBSan (no recovery): every suite but the install ones, the
#               demo and the bench smoke runs ('make test' must stay within 25 minutes on
#               2 cores)
#   build-fuzz/ clang libFuzzer + ASan+UBSan: each fuzz target for FUZZ_SECONDS (5)
# Exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-5}
export PEAK_FUZZ_SECONDS="$FUZZ_SECONDS"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# each Python suite's slowest tests in its log (build*/meson-logs/testlog.txt), to keep the
# 25-minute budget in view
export PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} --durations=12 --durations-min=2"
status=0

setup() { # dir, then meson options
	dir=$1
	shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || {
			cat "$dir.setup.log"
			return 1
		}
	fi
	ninja -C "$dir" >/dev/null || ninja -C "$dir"
}

step() {
	echo "== $*"
}

step "build (gcc)"
setup build && meson test -C build --print-errorlogs -q --no-suite scenario || status=1

step "build-san (gcc, ASan+UBSan)"
setup build-san -Db_sanitize=address,undefined -Db_lundef=false &&
	meson test -C build-san --print-errorlogs -q --no-suite install || status=1

step "build-fuzz (clang libFuzzer, ${FUZZ_SECONDS}s per target)"
(export CC=clang && setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false) &&
	meson test -C build-fuzz --print-errorlogs -q --num-processes 2 || status=1

step "summary"
/usr/bin/python3 scripts/test-summary.py build/meson-logs/testlog.json \
	build-san/meson-logs/testlog.json build-fuzz/meson-logs/testlog.json || status=1
exit $status
