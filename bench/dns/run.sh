#!/bin/sh
# DNS benchmark: peak dns against NSD and Knot serving the same zone, in one run.
# Each server runs pinned to CPU 0 with one worker; dnsperf runs pinned to CPU 1.
#   throughput: dnsperf at saturation for SECONDS per query mix
#   latency:    dnsperf at a fixed 5000 queries/s for 5 s, percentiles of every query
#   capped:     throughput again with the server held to CAP% (default 50) of its core
# Mixes: static (SOA, APL, TXT, glue AAAA, NXDOMAIN) and AAAA of an SSA service (steered
# by peak per client; a fixed record for NSD and Knot, which cannot steer).
# Usage: bench/dns/run.sh [SECONDS]   (default 20). Writes bench/results/dns.md, or $OUT.
set -eu
cd "$(dirname "$0")/../.."
DUR=${1:-20}
PEAK=${PEAK:-build/peak}
OUT=${OUT:-bench/results/dns.md}
for p in nsd knot dnsperf; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		[ "$(id -u)" -eq 0 ] || { echo "install $p (apt-get install nsd knot dnsperf)" >&2; exit 1; }
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nsd knot dnsperf >/dev/null
	fi
done
[ -x "$PEAK" ] || make
# the packaged units must not hold port 53 or our CPUs: we start our own instances only
tmp=$(mktemp -d)
pids=""
# A CPU cgroup for the servers: uncapped for the main runs; for the capped runs, CAP percent
# of one core (CFS bandwidth, 10 ms periods), so that the server and not dnsperf is what
# saturates and queries/s measure the server. cgroup v1 or v2; without either, no capped run.
CAP=${CAP:-50}
cg=""
if [ -w /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
	cg=/sys/fs/cgroup/cpu/peak-bench-dns.$$
	mkdir "$cg" && echo 10000 >"$cg/cpu.cfs_period_us" || { rmdir "$cg" 2>/dev/null; cg=""; }
elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
	cg=/sys/fs/cgroup/peak-bench-dns.$$
	mkdir "$cg" && [ -w "$cg/cpu.max" ] || { rmdir "$cg" 2>/dev/null; cg=""; }
fi
cap() { # on|off
	[ -n "$cg" ] || return 0
	if [ -e "$cg/cpu.max" ]; then
		if [ "$1" = on ]; then echo "$((CAP * 100)) 10000" >"$cg/cpu.max"; else echo "max 10000" >"$cg/cpu.max"; fi
	else
		if [ "$1" = on ]; then echo $((CAP * 100)) >"$cg/cpu.cfs_quota_us"; else echo -1 >"$cg/cpu.cfs_quota_us"; fi
	fi
}
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	[ -z "$cg" ] || rmdir "$cg" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

KEY=000102030405060708090a0b0c0d0e0f
DESC="v=ssa1; slice=78; select=src; host=src; key=$KEY"
ADDR=$($PEAK ssa compute --prefix 2001:db8:5::/64 --descriptor "$DESC" --source ::1)
cat >"$tmp/peak.yaml" <<YAML
zone:
  name: svc.example.
  ns: [{name: ns1.svc.example., address: "2001:db8:53::1"}]
  soa: {primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 1, minimum: 30}
  ttl: {soa: 3600, ns: 3600, apl: 3600, txt: 3600, aaaa: 30}
services:
  - name: api.svc.example.
    prefixes: [2001:db8:5::/64]
    slice: 78
    select: src
    host: src
    key: $KEY
    endpoints:
      - {id: pod-a, address: "2001:db8:100::a"}
      - {id: pod-b, address: "2001:db8:100::b"}
      - {id: pod-c, address: "2001:db8:100::c"}
      - {id: pod-d, address: "2001:db8:100::d"}
YAML
cat >"$tmp/svc.example.zone" <<ZONE
\$ORIGIN svc.example.
\$TTL 3600
@ IN SOA ns1.svc.example. hostmaster.svc.example. 1 3600 600 604800 30
@ IN NS ns1.svc.example.
ns1 IN AAAA 2001:db8:53::1
api IN APL 2:2001:db8:5::/64
_ssa.api IN TXT "$DESC"
api 30 IN AAAA $ADDR
ZONE
printf 'svc.example. SOA\napi.svc.example. APL\n_ssa.api.svc.example. TXT\nns1.svc.example. AAAA\nnope.svc.example. A\n' >"$tmp/static"
printf 'api.svc.example. AAAA\n' >"$tmp/aaaa"

cat >"$tmp/nsd.conf" <<NSD
server:
  ip-address: ::1@5601
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$tmp"
  pidfile: "$tmp/nsd.pid"
  zonelistfile: "$tmp/nsd.zonelist"
  xfrdfile: "$tmp/nsd.xfrd"
  database: ""
  verbosity: 0
  rrl-ratelimit: 0
  logfile: "$tmp/nsd.log"
remote-control:
  control-enable: no
zone:
  name: svc.example.
  zonefile: svc.example.zone
NSD
mkdir -p "$tmp/knot"
cat >"$tmp/knot.conf" <<KNOT
server:
  rundir: "$tmp/knot"
  user: root:root
  listen: ::1@5602
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
log:
  - target: stderr
    any: error
database:
  storage: "$tmp/knot"
template:
  - id: default
    storage: "$tmp"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: svc.example.
    file: svc.example.zone
KNOT

start() { # name port command... (sets pid)
	name=$1 port=$2
	shift 2
	# in the cgroup from the start, so that every process a server forks is in it too
	sh -c '[ -z "$0" ] || echo $$ >"$0/cgroup.procs"; exec taskset -c 0 "$@"' "$cg" "$@" \
		>"$tmp/$name.out" 2>&1 &
	pids="$pids $!"
	pid=$!
	i=0
	until kdig @::1 -p "$port" +short +timeout=1 +retry=0 svc.example. SOA >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 50 ] || { echo "$name did not start:" >&2; cat "$tmp/$name.out" >&2; exit 1; }
		sleep 0.1
	done
	# the answer must be right before it is fast
	got=$(kdig @::1 -p "$port" +short api.svc.example. AAAA)
	[ "$got" = "$ADDR" ] || { echo "$name answered '$got', want $ADDR" >&2; exit 1; }
}

tree_ns() { # CPU nanoseconds used so far by a process, its threads and its descendants
	/usr/bin/python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1])
kids = {}
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(p))
        except OSError:
            pass
total, pending = 0, [root]
while pending:
    p = pending.pop()
    pending += kids.get(p, [])
    try:
        for t in os.listdir(f"/proc/{p}/task"):
            total += int(open(f"/proc/{p}/task/{t}/schedstat").read().split()[0])
    except OSError:
        pass
print(total)
PY
}

perf() { # pid port file -> "qps avg_ms lost cpu_ns_per_query"
	c0=$(tree_ns "$1")
	taskset -c 1 dnsperf -s ::1 -p "$2" -d "$3" -l "$DUR" -c 16 -q 256 -T 1 >"$tmp/perf.out" 2>&1
	c1=$(tree_ns "$1")
	awk -v cpu=$((c1 - c0)) '/Queries lost:/ {l=$3} /Queries completed:/ {n=$3}
		/Queries per second:/ {q=$4} /Average Latency/ {a=$4}
		END {printf "%.0f %.3f %s %.0f\n", q, a*1000, l, n ? cpu/n : 0}' "$tmp/perf.out"
}

lat() { # port file -> "p50 p90 p99 p99.9 (microseconds)"
	taskset -c 1 dnsperf -s ::1 -p "$1" -d "$2" -l 5 -Q 5000 -c 4 -v 2>/dev/null |
		/usr/bin/python3 -c '
import sys
v = sorted(float(l.split()[-1]) for l in sys.stdin if l.startswith("> "))
p = lambda q: v[min(len(v) - 1, int(q * len(v)))] * 1e6
print("%.0f %.0f %.0f %.0f" % (p(.5), p(.9), p(.99), p(.999)) if v else "- - - -")'
}

echo "servers pinned to CPU 0, dnsperf to CPU 1, ${DUR}s per throughput run" >&2
results=""
run() { # name port
	for mix in static aaaa; do
		echo "  $1 $mix ..." >&2
		set -- "$1" "$2" "$mix" $(perf "$pid" "$2" "$tmp/$mix") $(lat "$2" "$tmp/$mix")
		capped=-
		if [ -n "$cg" ]; then
			cap on
			capped=$(perf "$pid" "$2" "$tmp/$mix" | awk '{print $1}')
			cap off
		fi
		results="$results$1 $3 $4 $5 $6 $7 $8 $9 ${10} ${11} $capped
"
		set -- "$1" "$2"
	done
}
start peak 5600 "$PEAK" dns --config "$tmp/peak.yaml" --listen "[::1]:5600" --threads 1 --quiet
run peak 5600
start nsd 5601 nsd -d -c "$tmp/nsd.conf"
run nsd 5601
start knot 5602 knotd -c "$tmp/knot.conf"
run knot 5602

{
	echo "# DNS: peak dns against NSD and Knot"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r); $($PEAK --version),"
	echo "NSD $(nsd -v 2>&1 | head -1 | awk '{print $3}'), Knot $(knotd -V | awk '{print $NF}'), dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')."
	echo "Each server on CPU 0 with one worker, dnsperf on CPU 1 (16 clients, 256 outstanding)."
	echo "Throughput: ${DUR} s at saturation per mix. Latency: 5 s at 5000 queries/s, every query."
	echo "Static mix: SOA, APL, TXT, glue AAAA, NXDOMAIN. AAAA mix: the SSA service's AAAA,"
	echo "computed per client by peak (select=src, host=src), a fixed record for NSD and Knot."
	echo
	echo "Server CPU: what the server's processes and threads used (schedstat), per query."
	echo "Capped: queries/s again with the server held to ${CAP}% of its core (CPU cgroup, 10 ms"
	echo "periods), so that the server saturates before dnsperf does (at full speed dnsperf's"
	echo "own core is the limit here); '-' where no CPU cgroup was available."
	echo
	echo "| server | mix | queries/s | avg latency ms (saturated) | lost | server CPU ns/query | queries per server-CPU-second | queries/s capped at ${CAP}% | p50 us | p90 us | p99 us | p99.9 us |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
	printf '%s' "$results" | awk 'NF {printf "| %s | %s | %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s |\n", $1,$2,$3,$4,$5,$6,($6 ? 1e9/$6 : 0),$11,$7,$8,$9,$10}'
	echo
	printf '%s' "$results" | awk '
		NF {q[$1 " " $2] = $3; c[$1 " " $2] = $6 ? 1e9 / $6 : 0; k[$1 " " $2] = $11 + 0}
		function ratio(x, m, a, b) {
			a = x["nsd " m]; b = x["knot " m]
			return x["peak " m] / (a > b ? a : b)
		}
		END {
			printf "Ratios against the better of NSD and Knot, measured queries/s: static %.2f (target 1.2), steered AAAA %.2f (target 1.0).\n", ratio(q, "static"), ratio(q, "aaaa")
			printf "Ratios against the better of NSD and Knot, queries per server-CPU-second: static %.2f, steered AAAA %.2f.\n", ratio(c, "static"), ratio(c, "aaaa")
			if (k["nsd static"] > 0 && k["knot static"] > 0)
				printf "Ratios against the better of NSD and Knot, queries/s with each server capped: static %.2f, steered AAAA %.2f.\n", ratio(k, "static"), ratio(k, "aaaa")
		}'
} >"$OUT"
cat "$OUT"
