"""make demo-h3 as a test (root): the demo runs on the cluster testbed (it prints the
controller's assignment of both services and the routes the agents installed and BGP
carried), every stream of the three runs (through the ingress, PEAK-direct, PEAK-direct with
the ingress host gone) reaches its type's pod with its checksum ok, and the ingress path
fails once the ingress host is gone; the testbed is torn down, also when the demo is
interrupted (SIGINT) while it builds."""
import os
import re
import signal
import subprocess

import pytest

from conftest import PEAK

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "demo_h3.py")
ROW = re.compile(r"^  (\S+)\s+(\w+/[\w.+-]+)\s+(\d+)\s+(\S+)\s+(\S+)\s+([\d.]+)$")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def start():
    p = subprocess.Popen(["/usr/bin/python3", DEMO], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, PEAK_BIN=os.path.abspath(PEAK)))
    return p, f"pdh{p.pid % 10000}-"  # the demo's namespaces (named by its PID)


def stop(p):
    if p.poll() is None:
        p.kill()
        p.wait()


def namespaces(tag):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(tag)]


def sections(out):
    """{title: [(file, type, status, backend, checksum), ...]} of the demo's upload tables."""
    res = {}
    for part in out.split("\n== ")[1:]:
        title, _, body = part.partition(" ==\n")
        res[title] = [ROW.match(line).groups()[:5] for line in body.splitlines()
                      if ROW.match(line)]
    return res


def test_demo_h3_on_the_cluster_testbed():
    p, tag = start()
    try:
        out, _ = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)  # the demo tears its testbed down on ^C
        out, _ = p.communicate(timeout=60)
        pytest.fail(f"the demo did not finish in 240 s:\n{out}")
    finally:
        stop(p)
    print(out)
    assert p.returncode == 0, out
    # the cluster: the controller assigned each service's 16 slices to its pod, the agents
    # routed them, BGP carried them to the router
    assert re.search(r"^  audio\.svc\.example\. n1p1 up weight 1 slices 16$", out, re.M), out
    assert re.search(r"^  video\.svc\.example\. n2p1 up weight 1 slices 16$", out, re.M), out
    assert re.search(r"^node1's agent routes audio\.svc\.example\. to pod n1p1: .*2001:db8:5:",
                     out, re.M), out
    assert re.search(r"^node2's agent routes video\.svc\.example\. to pod n2p1: .*2001:db8:6:",
                     out, re.M), out
    assert "the router learned by BGP: audio.svc.example. via node 2001:db8:ff:1::2" in out
    assert "the router learned by BGP: video.svc.example. via node 2001:db8:ff:2::2" in out
    # the ingress routes to the service addresses its own source resolves
    assert re.search(r"the ingress host resolves audio\.svc\.example\. to 2001:db8:5:\S+ "
                     r"\(from 2001:db8:ff:e::2\)", out), out
    secs = sections(out)
    titles = list(secs)
    assert len(titles) == 3, out
    assert titles[0].startswith("through the ingress") and titles[1].startswith("PEAK-direct")
    assert titles[2] == "PEAK-direct with the ingress host gone", titles
    for title, rows in secs.items():
        assert len(rows) == 6, (title, out)
        for f, ctype, status, backend, checksum in rows:
            want = "n1p1" if ctype.startswith("audio/") else "n2p1"
            assert (status, backend, checksum) == ("201", want, "ok"), (title, f, out)
    # PEAK-direct: one connection per service, straight to its slice address
    assert out.count("-> audio.svc.example. at [2001:db8:5:") == 2, out
    assert out.count("-> video.svc.example. at [2001:db8:6:") == 2, out
    m = re.search(r"the ingress path with the ingress host gone: exit (\d+) \(fails, as it must",
                  out)
    assert m and m.group(1) != "0", out
    assert re.search(r"demo-h3: ok in [\d.]+ s", out), out
    assert not namespaces(tag), namespaces(tag)


def test_demo_h3_interrupted_while_it_builds_tears_down():
    p, tag = start()
    try:
        # ^C once the namespaces exist and the daemons run, before the uploads
        lines = []
        for line in p.stdout:
            lines.append(line)
            if "namespaces up" in line:
                break
        assert namespaces(tag), "".join(lines)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    finally:
        stop(p)
    out = "".join(lines) + out
    assert p.returncode != 0, out
    assert "interrupted: tearing the testbed down" in out, out
    assert not namespaces(tag), (namespaces(tag), out)
