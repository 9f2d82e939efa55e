"""make demo-store: the object store in the namespace testbed of tests/store (conftest.py),
three pods with replicas=2 in the rule and a fourth that joins later.

  1. write 10,000 small objects (16 to 527 bytes) through peak_store_put_buf, with progress
  2. SIGKILL pod s1 and read every object back: reads go on from the other replica
     (failed reads counted), then start s1 again on its data
  3. pod s4 joins (--joined s4: the initial assignment plus assign_add, minimal movement)
     while a reader reads all objects round after round: s4 pulls its share from the old
     holders and reads a miss through; objects moved are counted in the data dirs against
     the minimum (the objects whose replica set now holds s4: those s4 does not answer 421
     for), and the reader's failures are counted

Prints each figure; exits 1 if a read failed or more than the minimum moved. Root only.
"""
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time
import pathlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from conftest import NAME, OBJECT_NAME, PORT, Net  # noqa: E402

N = int(os.environ.get("DEMO_OBJECTS", "10000"))
WRITERS = 6
BULK = os.environ.get("STORE_BULK", os.path.join(HERE, "..", "..", "build", "tests",
                                                   "store_bulk"))

HEAD_CODE = """
import http.client, sys
n, addr, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection(addr, port, timeout=10)
held = 0
for i in range(n):
    for attempt in range(3):
        try:
            c.request("HEAD", f"/o/obj-{i}")
            r = c.getresponse()
            r.read()
            break
        except (http.client.HTTPException, OSError):
            c.close()  # an idle connection the pod closed: again on a new one
            c = http.client.HTTPConnection(addr, port, timeout=10)
    else:
        raise SystemExit(f"HEAD obj-{i}: no answer")
    if r.status == 200:
        held += 1
    elif r.status != 421:
        raise SystemExit(f"HEAD obj-{i}: {r.status}")
print(held)
"""


def bulk(net, *args):
    return subprocess.Popen(["ip", "netns", "exec", net.cl, BULK, f"[::1]:{net.dns.port}",
                             str(PORT), NAME, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def relay(p, show=True):
    """Waits for a store_bulk, echoing its progress lines (and the first few failures);
    returns (ops, failed, seconds)."""
    shown = 0
    for line in p.stderr:
        if " done, " in line:
            if show:
                print("   ", line.rstrip(), flush=True)
        elif shown < 5:
            shown += 1
            print("    error:", line.rstrip(), flush=True)
    out = p.stdout.read().split()
    p.wait()
    return int(out[1]), int(out[3]), float(out[5])


def objects(pod):
    return {f for f in pod.files() if OBJECT_NAME.match(f)}


def wait_for(cond, what, timeout=120):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def main():
    if os.geteuid() != 0:
        print("demo-store: needs root (network namespaces)")
        return 2
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="peak-demo-store-"))
    net = Net(tmp, npods=4, replicas=2, late=1)
    bad = False
    try:
        net.up()
        print(f"testbed: 3 pods (s1-s3), replicas=2, peak dns in the client namespace; "
              f"logs in {tmp}")
        print(f"1. writing {N} objects ({WRITERS} writers; each pod fsyncs every object)")
        t0 = time.time()
        writers = [bulk(net, "put", f"{N * w // WRITERS}:{N * (w + 1) // WRITERS}")
                   for w in range(WRITERS)]
        while any(p.poll() is None for p in writers):
            time.sleep(2)
            copies = sum(len(objects(p)) for p in net.pods.values())
            print(f"    {copies // 2} of {N} written, {time.time() - t0:.0f} s", flush=True)
        ops = failed = 0
        for p in writers:
            o, f, _ = relay(p, show=False)
            ops, failed = ops + o, failed + f
        secs = time.time() - t0
        total = sum(len(objects(p)) for p in net.pods.values())
        print(f"   {ops} puts, {failed} failed, {secs:.1f} s ({ops / secs:.0f}/s); "
              f"{total} object files on 3 pods (2 copies each)")
        bad |= failed > 0

        print("2. SIGKILL s1, then read every object")
        s1 = net.pods["s1"]
        s1.stop(signal.SIGKILL)
        ops, failed, secs = relay(bulk(net, "get", str(N)))
        print(f"   reads with s1 down: {ops}, failed {failed}, {secs:.1f} s")
        bad |= failed > 0
        s1.start()

        print("3. s4 joins while a reader reads every object, round after round")
        before = {pid: objects(p) for pid, p in net.pods.items()}
        stop = tmp / "stop"
        reader = bulk(net, "get", str(N), str(stop))
        t0 = time.time()
        (s4,) = net.join()
        wait_for(lambda: "store: migration done" in s4.logtext(), "the migration")
        moved_s = time.time() - t0
        stop.write_text("")
        rops, rfailed, rsecs = relay(reader, show=False)
        moved = len(objects(s4))
        others = sum(len(objects(net.pods[p]) - before[p]) for p in ("s1", "s2", "s3"))
        held = int(subprocess.run(
            ["ip", "netns", "exec", net.cl, "/usr/bin/python3", "-c", HEAD_CODE, str(N),
             "2001:db8:104::4", str(PORT)], capture_output=True, text=True,
            timeout=300, check=True).stdout)
        m = s4.metrics()
        if os.environ.get("DEMO_DEBUG"):
            print(m)
        print(f"   objects moved to s4: {moved} (minimum: {held}, the objects whose replica "
              f"set holds s4; {held / (2 * N):.1%} of the {2 * N} copies); "
              f"moved between old pods: {others}")
        print(f"   bytes moved: {m['peak_store_repair_bytes_total']:.0f}; reads served "
              f"through during the move: {m['peak_store_migrate_readthrough_total']:.0f}")
        print(f"   move took {moved_s:.1f} s; reads during it: {rops}, failed {rfailed}")
        bad |= rfailed > 0 or moved != held or others != 0
        print("demo-store: " + ("FAILED" if bad else "ok"))
        return 1 if bad else 0
    finally:
        net.down()


if __name__ == "__main__":
    sys.exit(main())
