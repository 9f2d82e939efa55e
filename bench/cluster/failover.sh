#!/bin/sh
# Failover on the demo cluster, N trials (default 10): per trial, the median and maximum
# time until a killed pod's clients are served again; then the median over the trials.
# Usage (root): bench/cluster/failover.sh [N]
set -eu
cd "$(dirname "$0")/../.."
N=${1:-10}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in $(seq "$N"); do
	/usr/bin/python3 tests/integration/demo.py | grep -o 'served again after [0-9.]* s (median), [0-9.]* s (max)' |
		awk '{print $4, $7}' | tee -a "$out"
done
sort -n "$out" | awk '{m[NR] = $1; if ($2 > worst) worst = $2}
	END {printf "trials %d: failover median of medians %.2f s, worst client %.2f s\n", NR, m[int((NR + 1) / 2)], worst}'
