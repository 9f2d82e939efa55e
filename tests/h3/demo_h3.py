#!/usr/bin/python3
"""make demo-h3: the same uploads through the HTTP/3 ingress and through PEAK-direct, on
PEAK-direct's namespace bed (directbed.py: a client that also routes, an audio pod and a
video pod on AnyIP prefixes, an ingress host, peak dns). For each system it prints per
stream the backend reached, the checksum check and the time, then the whole upload's time;
then it stops the ingress and runs PEAK-direct again, to show it needs no ingress host.
Everything is torn down at the end, also on Ctrl-C. Needs root."""
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import directbed  # noqa: E402

FILES = [("a1.ogg", 200_000, "audio/ogg"), ("a2.ogg", 200_000, "audio/ogg"),
         ("a3.opus", 200_000, "audio/opus"), ("a4.opus", 200_000, "audio/opus"),
         ("v1.mp4", 4_000_000, "video/mp4"), ("v2.webm", 4_000_000, "video/webm"),
         ("notes.txt", 2_000, "text/plain")]


def run(bed, files, peak):
    t0 = time.monotonic()
    rc, streams, conns, out = bed.upload(files, peak=peak)
    dt = time.monotonic() - t0
    return rc, streams, conns, out, dt


def show(title, rc, streams, conns, out, dt):
    print(f"\n== {title} ==")
    for c in conns:
        print(f"  connection: {c['types']} -> {c['service']}"
              f"{' key ' + c['key'] if 'key' in c else ''} at {c['address']} "
              f"from {c['source']} ({c['rule']})")
    print(f"  {'file':<10} {'type':<11} {'status':<6} {'backend':<10} {'checksum':<9} "
          f"{'time ms':>8}")
    for s in streams:
        print(f"  {s['file']:<10} {s['type']:<11} {s['status']:<6} {s['backend']:<10} "
              f"{s['checksum']:<9} {float(s['time_ms']):>8.1f}")
    print(f"  exit {rc}; the whole command {dt * 1000:.0f} ms (resolution, handshakes, uploads)")
    if rc != 0:
        print(out)
    return rc == 0


def main():
    if os.geteuid() != 0:
        sys.exit("demo-h3 needs root (network namespaces)")
    work = Path(tempfile.mkdtemp(prefix="peak-demo-h3-"))
    bed = directbed.Bed(f"dh{os.getpid() % 10000}", work, ingress=True)
    ok = True
    try:
        print(f"bringing up the bed in {work} ...")
        bed.up()
        files = []
        for name, size, ctype in FILES:
            (work / name).write_bytes((name.encode() * (size // len(name) + 1))[:size])
            files.append(f"{work / name}:{ctype}")
        ok &= show("through the ingress (one connection to the ingress host, "
                   "HTTP/3 to the pods)", *run(bed, files, peak=False))
        ok &= show("PEAK-direct (one connection per map entry, straight to the pods)",
                   *run(bed, files, peak=True))
        p = bed.procs[2][0]  # the ingress: stopped by its PID
        p.terminate()
        p.wait(timeout=10)
        ok &= show("PEAK-direct with the ingress stopped", *run(bed, files, peak=True))
        rc, *_ = bed.upload(files[:1], peak=False, extra=["--timeout", "2000"])
        print(f"\n(the ingress path with the ingress stopped: exit {rc})")
    finally:
        bed.down()
    print("\ndemo-h3:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
