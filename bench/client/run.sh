#!/bin/sh
# Client costs (as root: uses a network namespace of its own, removed on exit):
#   peak_resolve with a warm cache, per call, against peak dns on the namespace's loopback;
#   the proof of work for pow=16 and pow=20, median over 15 client sources.
# Usage: bench/client/run.sh [CALLS]   (default 100000)
set -eu
cd "$(dirname "$0")/../.."
CALLS=${1:-100000}
NS=pkbr-$$
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" -6 route add 2001:db8::/32 dev lo # a route toward the service: source ::1
ip netns exec "$NS" build/peak dns --config examples/peak.yaml --listen '[::1]:5353' --threads 1 --quiet &
pid=$!
for i in $(seq 50); do
	ip netns exec "$NS" kdig @::1 -p 5353 +short +timeout=1 +retry=0 svc.example. SOA >/dev/null 2>&1 && break
	sleep 0.1
done
echo "peak_resolve (api.svc.example., select=src host=src), $CALLS warm calls:"
ip netns exec "$NS" build/bench/bench_resolve resolve '[::1]:5353' api.svc.example. "$CALLS"
echo "proof of work (nonce 32 bits), 15 sources each:"
build/bench/bench_resolve pow 16 15
build/bench/bench_resolve pow 20 15
