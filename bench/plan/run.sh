#!/bin/sh
# Balance, routes and movement of the slice assignment for 16384 slices and 10, 100 and
# 1000 equal-weight endpoints, from 'peak plan': one endpoint added, then one removed.
# Usage: bench/plan/run.sh [PEAK_BINARY]
set -eu
PEAK=${1:-build/peak}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-10s %-12s %-10s %-8s %-16s %-16s %-12s\n' endpoints "max/min" routes "max/ep" \
	"add: moved/min" "remove: moved/min" "after add"
for n in 10 100 1000; do
	cfg=$tmp/plan-$n.yaml
	{
		echo "zone: {name: svc.example., ns: [{name: ns1.svc.example.}]}"
		echo "services:"
		echo "  - name: api.svc.example."
		echo "    prefixes: [2001:db8:5::/64]"
		echo "    slice: 78"
		echo "    endpoints:"
		i=0
		while [ $i -lt "$n" ]; do
			printf '      - {id: ep%04d, address: "2001:db8:100::%x"}\n' $i $((i + 1))
			i=$((i + 1))
		done
	} >"$cfg"
	out=$("$PEAK" plan --config "$cfg" --summary --add new --remove ep0003)
	bal() { echo "$out" | sed -n "$1p" | sed -E 's/.*per weight ([0-9.]+); routes: ([0-9]+) in all, ([0-9]+) at most.*/\1 \2 \3/'; }
	set -- $(bal 2)
	b0=$1 r0=$2 m0=$3
	add=$(echo "$out" | sed -nE 's/^add new .*: ([0-9]+) slices moved.*receives: ([0-9]+)$/\1\/\2/p')
	rem=$(echo "$out" | sed -nE 's/^remove ep0003: ([0-9]+) slices moved.*held: ([0-9]+)$/\1\/\2/p')
	set -- $(bal 4)
	printf '%-10s %-12s %-10s %-8s %-16s %-16s %-12s\n' "$n" "$b0" "$r0" "$m0" "$add" "$rem" \
		"max/min $1"
done
