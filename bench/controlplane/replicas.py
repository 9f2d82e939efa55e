#!/usr/bin/python3
"""Two peak dns replicas following one etcd prefix (issue 18: "two DNS replicas answer the
same after every change, within 100 ms"): per change made through the controller's control
socket, the time from the controller's acknowledgment to both replicas answering the new
state, and whether they answer it identically.

Setup, on loopback: a real etcd (Debian etcd-server), `peak controller --store etcd
--control SOCK`, two `peak dns --store etcd` on the same prefix. The service probe.svc.example.
has three endpoints and `answers: 3`, so an AAAA answer holds one address in a slice of each
endpoint that is up with a weight above 0. The changes cycle through four, each changing
the answer's set of endpoints: `health probe.svc.example. p1 down` (p0 p2), `weight ...
p2 0` (p0), `health ... p1 up` (p0 p1), `weight ... p2 1` (p0 p1 p2): half health, half
weight. Each is one line on the controller's control socket (what `peak controller-ctl`
sends, without its process start); the controller replies `ok` once the change is stored
in etcd (the acknowledgment). Then, per change:

  answered   from the acknowledgment until both replicas answer with as many addresses
             as the new state has endpoints (each replica queried with dnspython in turn,
             every --poll-ms, default 1)
  applied    from the acknowledgment to the later of both replicas' log lines `dns: etcd:
             the stored state applied` (millisecond stamps; the replica logs it once it
             serves the new state), which the poll's own delay does not inflate
  identical  after both answered: each replica's AAAA addresses mapped to endpoints through
             the controller's stored map (PREFIX svc/probe.svc.example. in etcd: `ep ID
             START/LOG2` slice blocks) give exactly the endpoints up with weight, in both,
             and both replicas' `status` (health, weight and slices per endpoint) are equal

Prints p50/p99 of both figures and writes a JSON file (--out, default
bench/results/dns-replicas.json). Exit 1 if a change did not reach both replicas within
--timeout seconds or they answered differently; never on the 100 ms target.
--quick: 8 changes (tests/controlplane/test_dns_replicas.py runs it).
Usage: bench/controlplane/replicas.py [--changes N] [--quick] [--poll-ms MS] [--out FILE]"""
import argparse
import ipaddress
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

import cplib
from cplib import ROOT, etcdproc, log_time, pct, peaktest, readlog, unix_command, wait_for
SVC = "probe.svc.example."
NET = ipaddress.ip_network("2001:db8:ffff::/64")
SLICE = 72  # 256 slices: the slice of an address is its byte 8
EPS = ("p0", "p1", "p2")
APPLIED = "dns: etcd: the stored state applied"
CONFIG = f"""zone:
  name: svc.example.
  ns:
    - {{name: ns1.svc.example., address: "2001:db8:53::1"}}
  soa: {{primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 1, minimum: 20}}
services:
  - name: {SVC}
    prefixes: [{NET}]
    slice: {SLICE}
    answers: 3
    endpoints:
      - {{id: p0, address: "fd00:ffff::1"}}
      - {{id: p1, address: "fd00:ffff::2"}}
      - {{id: p2, address: "fd00:ffff::3"}}
"""
# the cycle of changes: (command, the endpoints up with weight afterwards)
CYCLE = [(f"health {SVC} p1 down", {"p0", "p2"}),
         (f"weight {SVC} p2 0", {"p0"}),
         (f"health {SVC} p1 up", {"p0", "p1"}),
         (f"weight {SVC} p2 1", {"p0", "p1", "p2"})]


def progress(msg):
    print(f"[replicas] {msg}", file=sys.stderr, flush=True)


class Replica:
    def __init__(self, tmp, name, etcd_url):
        self.port = peaktest.free_port()
        self.log = os.path.join(tmp, f"{name}.log")
        self.ctl = os.path.join(tmp, f"{name}.ctl")
        self.proc = cplib.replica(os.path.join(tmp, "peak.yaml"), etcd_url, self.log,
                                  self.port, "--control", self.ctl)

    def aaaa(self):
        """The AAAA addresses of the probe service (None: no answer)."""
        q = dns.message.make_query(SVC, "AAAA")
        try:
            r = dns.query.udp(q, "::1", port=self.port, timeout=0.5)
        except Exception:
            return None
        return [ipaddress.ip_address(rd.address) for rr in r.answer
                if rr.rdtype == dns.rdatatype.AAAA for rd in rr]

    def status(self):
        return sorted(x for x in unix_command(self.ctl, "status", b"ok\n").splitlines()
                      if x.startswith(SVC + " "))


def stored_owners(etcd):
    """slice index -> endpoint, from the controller's stored map."""
    owners = {}
    for line in (etcd.get("/peak/svc/" + SVC) or "").splitlines():
        f = line.split()
        if f[:1] != ["ep"]:
            continue
        for blk in f[2:]:
            start, log2 = (int(x) for x in blk.split("/"))
            for s in range(start, start + (1 << log2)):
                owners[s] = f[1]
    return owners


def endpoints_of(addrs, owners):
    """The endpoints whose slices the addresses lie in (an address outside the service's
    prefix or in no stored block counts as '?')."""
    out = set()
    for a in addrs:
        if a not in NET:
            out.add("?")
            continue
        idx = (int(a) >> (128 - SLICE)) & ((1 << (SLICE - NET.prefixlen)) - 1)
        out.add(owners.get(idx, "?"))
    return out


def run(a, tmp):
    Path(tmp, "peak.yaml").write_text(CONFIG)
    e = etcdproc.Etcd(os.path.join(tmp, "etcd"))
    procs, res = [], {"changes": a.changes, "poll_ms": a.poll_ms}
    try:
        e.wait()
        csock = os.path.join(tmp, "c.sock")
        clog = os.path.join(tmp, "controller.log")
        c = cplib.controller(os.path.join(tmp, "peak.yaml"), e.url, clog, "--control", csock)
        procs.append(c)
        wait_for(lambda: "leading (store etcd)" in readlog(clog) or c.poll() is not None,
                 a.timeout, what="controller leading")
        assert c.poll() is None, readlog(clog)
        reps = [Replica(tmp, f"dns{i}", e.url) for i in range(2)]
        procs += [r.proc for r in reps]
        wait_for(lambda: all("dns: etcd: following " in readlog(r.log) for r in reps),
                 a.timeout, what="both replicas follow the store")
        wait_for(lambda: all(len(r.aaaa() or []) == 3 for r in reps), a.timeout,
                 what="both replicas answer the probe")
        answered, applied, rows = [], [], []
        for k in range(a.changes):
            cmd, want = CYCLE[k % len(CYCLE)]
            n0 = [readlog(r.log).count(APPLIED) for r in reps]
            reply = unix_command(csock, cmd)
            t_ack, w_ack = time.monotonic(), time.time()
            if not reply.endswith("ok\n"):
                raise RuntimeError(f"{cmd}: the controller replied {reply!r}")
            pending = list(reps)
            while pending:  # every replica answers the new state (as many endpoints)
                pending = [r for r in pending if len(r.aaaa() or []) != len(want)]
                if not pending:
                    break
                if time.monotonic() - t_ack > a.timeout:
                    raise TimeoutError(f"change {k} ({cmd}): not in both replicas within "
                                       f"{a.timeout} s")
                time.sleep(a.poll_ms / 1000)
            answered.append((time.monotonic() - t_ack) * 1000)
            # each replica's applied line for this change (logged before it answers it)
            wait_for(lambda: all(readlog(r.log).count(APPLIED) > n for r, n in zip(reps, n0)),
                     a.timeout, step=0.01, what=f"change {k}: the replicas' applied lines")
            stamps = []
            for r, n in zip(reps, n0):
                lines = [x for x in readlog(r.log).splitlines() if APPLIED in x]
                stamps.append(log_time(lines[n]))
            lag = (max(stamps) - w_ack) * 1000 if None not in stamps else None
            if lag is not None:
                applied.append(max(lag, 0.0))
            owners = stored_owners(e)
            seen = [endpoints_of(r.aaaa() or [], owners) for r in reps]
            status = [r.status() for r in reps]
            same = seen[0] == seen[1] == want and status[0] == status[1]
            rows.append({"change": cmd, "answered_ms": round(answered[-1], 1),
                         "applied_ms": round(lag, 1) if lag is not None else None,
                         "endpoints": [sorted(s) for s in seen], "identical": same})
            if not same:
                raise RuntimeError(f"change {k} ({cmd}): the replicas differ: answers "
                                   f"{seen} (want {sorted(want)}), status {status}")
        res["rows"] = rows
        res["identical"] = all(r["identical"] for r in rows)
        for name, v in (("answered", answered), ("applied", applied)):
            res[f"{name}_p50_ms"] = round(pct(v, 50), 1) if v else None
            res[f"{name}_p99_ms"] = round(pct(v, 99), 1) if v else None
            res[f"{name}_max_ms"] = round(max(v), 1) if v else None
        res["within_100ms"] = sum(1 for x in answered if x <= 100)
        progress(f"{a.changes} changes, both replicas identical after each: answered "
                 f"p50 {res['answered_p50_ms']} ms, p99 {res['answered_p99_ms']} ms (max "
                 f"{res['answered_max_ms']}); applied p50 {res['applied_p50_ms']} ms, p99 "
                 f"{res['applied_p99_ms']} ms; {res['within_100ms']} of {a.changes} "
                 f"answered within 100 ms of the acknowledgment")
    finally:
        cplib.stop(procs, e)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="8 changes")
    ap.add_argument("--poll-ms", type=float, default=1.0,
                    help="pause between two rounds of queries, ms")
    ap.add_argument("--timeout", type=float, default=10.0, help="bound of each step, s")
    ap.add_argument("--keep", metavar="DIR", help="keep the logs in DIR")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                  "dns-replicas.json"))
    a = ap.parse_args()
    if a.quick:
        a.changes = 8
    if not shutil.which(etcdproc.ETCD):
        print(f"replicas.py: {etcdproc.ETCD} missing (apt-get install etcd-server)",
              file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="peak-replicas-")
    try:
        res = run(a, tmp)
    except (TimeoutError, RuntimeError, AssertionError) as ex:
        cplib.show_logs(tmp)  # the logs say why
        print(f"replicas.py: {ex}", file=sys.stderr)
        return 1
    finally:
        cplib.keep_logs(tmp, a.keep)
        shutil.rmtree(tmp, ignore_errors=True)
    res["command"] = " ".join(["bench/controlplane/replicas.py", *sys.argv[1:]])
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
