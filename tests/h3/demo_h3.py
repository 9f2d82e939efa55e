#!/usr/bin/python3
"""make demo-h3: the same uploads through the HTTP/3 ingress and through PEAK-direct, on the
cluster testbed (h3bed.py over tests/integration/testbed.py: the controller assigns the
slices of an audio and a video service, the agents route them to one 'peak h3 backend' pod
each, BIRD carries the routes to the router, 'peak dns' publishes the descriptors and the
type map; an ingress host runs 'peak h3 ingress' routing to the services' addresses).
It prints the controller's assignment, the agents' and the router's routes, then for each
system per stream the backend reached, the checksum check and the time, and the whole
upload's time; then it removes the ingress host (its daemon stopped, its namespace
deleted) and runs PEAK-direct again, and shows the ingress path failing. Everything is torn
down at the end, also on Ctrl-C or SIGTERM. Needs root."""
import ipaddress
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h3bed  # noqa: E402

PEAK = os.path.abspath(os.environ.get(
    "PEAK_BIN", os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../build/peak")))

FILES = [("a1.ogg", 200_000, "audio/ogg"), ("a2.ogg", 200_000, "audio/ogg"),
         ("a3.opus", 200_000, "audio/opus"), ("a4.opus", 200_000, "audio/opus"),
         ("v1.mp4", 4_000_000, "video/mp4"), ("v2.webm", 4_000_000, "video/webm")]


def progress(t0, what):
    print(f"[{time.monotonic() - t0:5.1f} s] {what}", flush=True)


def run(bed, files, peak):
    t0 = time.monotonic()
    rc, streams, conns, out = bed.upload(files, peak=peak)
    return rc, streams, conns, out, time.monotonic() - t0


def show(title, rc, streams, conns, out, dt):
    print(f"\n== {title} ==")
    for c in conns:
        print(f"  connection: {c['types']} -> {c['service']} at {c['address']} "
              f"from {c['source']} ({c['rule']})")
    print(f"  {'file':<10} {'type':<11} {'status':<6} {'backend':<8} {'checksum':<9} "
          f"{'time ms':>8}")
    for s in streams:
        print(f"  {s['file']:<10} {s['type']:<11} {s['status']:<6} {s['backend']:<8} "
              f"{s['checksum']:<9} {float(s['time_ms']):>8.1f}")
    print(f"  exit {rc}; the whole command {dt * 1000:.0f} ms (resolution, handshakes, uploads)",
          flush=True)
    if rc != 0:
        print(out)
    return rc == 0


def cluster_state(bed):
    """Prints the controller's assignment (controller-ctl status), each agent's slice routes
    and the routes BIRD gave the router, per service."""
    p = subprocess.run([PEAK, "controller-ctl", "--control", os.path.join(bed.dir, "ctl.sock"),
                        "status"], capture_output=True, text=True, timeout=10)
    print("\nthe controller's assignment (peak controller-ctl status):")
    for line in (p.stdout + p.stderr).strip().splitlines():
        if line != "ok":  # (controller-ctl's end of answer)
            print("  " + line)
    nets = {k: ipaddress.ip_network(p) for k, p in h3bed.PREFIXES.items()}
    for i in (1, 2):
        routes = [ipaddress.ip_network(d) for d in bed.node_routes(i)]
        for k, net in nets.items():
            mine = sorted(str(r) for r in routes if r.subnet_of(net))
            if mine:
                shown = ", ".join(mine) if len(mine) <= 3 else f"{mine[0]} ... {mine[-1]}"
                print(f"node{i}'s agent routes {k}.svc.example. to pod {bed.pod_id(i, 1)}: "
                      f"{len(mine)} route(s) in table 100 ({shown})")
    via = {}
    for dst, gw in bed.router_routes():
        for k, net in nets.items():
            if ipaddress.ip_network(dst).subnet_of(net):
                via.setdefault((k, gw), []).append(dst)
    for (k, gw), dsts in sorted(via.items()):
        print(f"the router learned by BGP: {k}.svc.example. via node {gw} "
              f"({', '.join(sorted(dsts)) if len(dsts) <= 3 else f'{len(dsts)} routes'})")


def main():
    if os.geteuid() != 0:
        sys.exit("demo-h3 needs root (network namespaces)")
    # SIGTERM tears down like Ctrl-C
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix="peak-demo-h3-")
    sock = os.path.join(work, "ctl.sock")
    bed = h3bed.H3Bed(f"pdh{os.getpid() % 10000}", work, PEAK, ingress=True,
                      ctl_args=["--control", sock])
    ok = True
    try:
        print(f"demo-h3: the cluster testbed with an audio and a video pod and an ingress "
              f"host; logs in {work}", flush=True)
        ca = h3bed.make_certs(work)
        progress(t0, "certificates made (a CA, one certificate for the pods and the ingress)")
        bed.up()
        progress(t0, "namespaces up; BIRD, peak dns, the controller, 2 agents and the pods "
                 "started")
        if not bed.wait_converged(30):
            sys.exit("the router never routed both services' slices (see bird-*.log, "
                     "agent-n*.log)")
        progress(t0, "the router routes both services' slices (BGP from the agents)")
        for i in (1, 2):
            if not bed.wait_log(f"h3-{i}1.log", "listening on", 10):
                sys.exit(f"pod {bed.pod_id(i, 1)} never listened (see h3-{i}1.log)")
        cluster_state(bed)
        ups = bed.start_ingress(ca)
        for k, a in ups.items():
            print(f"the ingress host resolves {k}.svc.example. to {a} (from "
                  f"{h3bed.INGRESS}) and routes {k}/* there")
        progress(t0, "the ingress's two upstreams are up")
        files = []
        for name, size, ctype in FILES:
            with open(os.path.join(work, name), "wb") as f:
                f.write((name.encode() * (size // len(name) + 1))[:size])
            files.append(f"{os.path.join(work, name)}:{ctype}")

        ok &= show(f"through the ingress (one connection to the ingress host {h3bed.INGRESS}, "
                   "HTTP/3 to the pods' service addresses)", *run(bed, files, peak=False))
        ok &= show(f"PEAK-direct from {h3bed.SOURCE} (one connection per map entry, "
                   "straight to the pods)", *run(bed, files, peak=True))
        bed.remove_ingress_host()
        print(f"\nthe ingress host removed (its daemon stopped, namespace {bed.ing()} deleted)",
              flush=True)
        ok &= show("PEAK-direct with the ingress host gone", *run(bed, files, peak=True))
        rc, _, _, out = bed.upload(files[:1], peak=False, extra=["--timeout", "2000"])
        why = (out.strip().splitlines() or ["no output"])[-1]
        print(f"\nthe ingress path with the ingress host gone: exit {rc} "
              f"({'fails, as it must' if rc else 'UNEXPECTED: it worked'}: {why})")
        ok &= rc != 0
    except KeyboardInterrupt:
        print("\ninterrupted: tearing the testbed down", flush=True)
        ok = False
    finally:
        # a second Ctrl-C must not cut the teardown short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bed.down()
    print(f"\ndemo-h3: {'ok' if ok else 'FAILED'} in {time.monotonic() - t0:.1f} s "
          "(testbed torn down)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
