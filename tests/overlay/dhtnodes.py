"""Independent OpenDHT nodes for the overlay's beds: Debian's `dhtnode`, one process each in a
namespace, driven through its command line on stdin (`x` quits it)."""
import os
import re
import select
import subprocess
import time

from ovbed import nsx, wait_for


def start(ns, port, network, bootstrap=None, wait=True, answers=False):
    """Starts a dhtnode on UDP port in namespace ns (bootstrapping through "ADDR:PORT" if
    given); wait: until its port is bound; answers: its output kept for put(). Returns its
    Popen ('ip netns exec' execs, so the pid is dhtnode's)."""
    args = ["ip", "netns", "exec", ns, "dhtnode", "-n", str(network), "-p", str(port)]
    if bootstrap:
        args += ["-b", bootstrap]
    p = subprocess.Popen(args, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE if answers else subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, text=True)
    if wait:
        wait_bound(ns, [port])
    return p


def put(p, key, value, timeout=60.0):
    """Puts the text value under key (an InfoHash in hex) through dhtnode p (started with
    answers=True), again after each "Put: failure" (no node took it yet), until it says
    "Put: success": the value is stored on the DHT's nodes and a get from now on finds it."""
    fd, buf = p.stdout.fileno(), b""
    deadline = time.monotonic() + timeout
    while True:
        p.stdin.write(f"p {key} {value}\n")
        p.stdin.flush()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"dhtnode: no 'Put: success' for {key} in {timeout} s")
            if select.select([fd], [], [], min(left, 0.5))[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError("dhtnode ended")
                buf += chunk
                m = re.search(rb"Put: (success|failure)", buf)
                if m:
                    buf = buf[m.end():]
                    break
        if m.group(1) == b"success":
            return
        time.sleep(0.2)


def wait_bound(ns, ports, timeout=60.0):
    """Waits until every UDP port in ports is bound in namespace ns."""
    want = [f":{p} " for p in ports]
    wait_for(f"dhtnode on {list(ports)} bound",
             lambda: all(w in nsx(ns, "ss", "-uln").stdout for w in want), timeout=timeout)


def stop(p):
    """Asks a dhtnode to quit; kills it if it does not within 5 s."""
    try:
        p.communicate("x\n", timeout=5)
    except (subprocess.TimeoutExpired, BrokenPipeError, ValueError):
        p.kill()
        p.wait()
