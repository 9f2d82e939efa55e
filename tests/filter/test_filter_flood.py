"""The filter and the class queue under a flood (root, bounded: a few seconds of packets):

  [pkq*-c] v0 2001:db8:aa:1::1/48           legitimate client (peak load, keep-alive)
           flooders: sources 2001:db8:bb::/48 (raw socket, spoofed)
     | veth v0 -- u0
  [pkq*-n] node: u0 2001:db8:aa:ffff::2/48   the filter (XDP + TC) on u0, forwarding
           p0 fd00:1::1/64                   the class queue on p0 (HTB at 8 Mbit/s)
     | veth p0 -- e0
  [pkq*-p] pod: e0 fd00:1::2/64, AnyIP 2001:db8:5::/64, peak serve :8080

Two floods at once: SYNs to random addresses of the service (they break its rule: dropped
by XDP) and SYNs that follow the rule from one source /64, far over the service's rate (classed
possibly bad and queued last). The link toward the pod is shaped below the flood's bandwidth,
so the queue is the bottleneck. The legitimate client's requests must keep completing, its
packets must go to the first band, and the possibly-bad band must be the one that drops."""
import json
import os
import random
import re
import subprocess
import time

import pytest

from test_filter_ns import pf, rule

PEAK = os.environ.get("PEAK_BIN", "build/peak")
OBJ = os.environ.get("FILTER_OBJ", "build/filter.bpf.o")
FLOOD = os.environ.get("FLOOD_BIN", "build/bench/flood")
K = "000102030405060708090a0b0c0d0e0f"
A = "2001:db8:aa:1::1"
BAD = "2001:db8:bb:1::1"  # the over-rate source /64 (any interface id of it)
CFG = f"""zone: {{name: svc.example., ns: [{{name: ns1.svc.example.}}]}}
services:
  - {{name: api.svc.example., prefixes: [2001:db8:5::/64], slice: 78, select: src, host: src,
     key: {K}, port: 8080, rate: 200, burst: 400,
     endpoints: [{{id: pod, address: "fd00:1::2"}}]}}
"""


def ip(*a):
    subprocess.run(["ip", *a], check=True, capture_output=True)


@pytest.fixture
def net(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("network namespaces and BPF need root")
    if not os.access(FLOOD, os.X_OK):
        pytest.skip("the flood generator is not built")
    tag = f"pkq{os.getpid() % 10000}{random.randrange(100)}"
    c, n, p = tag + "-c", tag + "-n", tag + "-p"
    serve = None
    try:
        for ns in (c, n, p):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", c, "link", "add", "v0", "type", "veth", "peer", "name", "u0", "netns", n)
        ip("-n", n, "link", "add", "p0", "type", "veth", "peer", "name", "e0", "netns", p)
        ip("-n", c, "addr", "add", A + "/48", "dev", "v0", "nodad")
        ip("-n", n, "addr", "add", "2001:db8:aa:ffff::2/48", "dev", "u0", "nodad")
        ip("-n", n, "addr", "add", "fd00:1::1/64", "dev", "p0", "nodad")
        ip("-n", p, "addr", "add", "fd00:1::2/64", "dev", "e0", "nodad")
        for ns, dev in ((c, "v0"), (n, "u0"), (n, "p0"), (p, "e0")):
            ip("-n", ns, "link", "set", dev, "up")
        ip("netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        ip("-n", c, "-6", "route", "add", "2001:db8:5::/64", "via", "2001:db8:aa:ffff::2")
        ip("-n", n, "-6", "route", "add", "2001:db8:5::/64", "via", "fd00:1::2")
        ip("-n", n, "-6", "route", "add", "2001:db8:bb::/48", "via", A)
        ip("-n", p, "-6", "route", "add", "default", "via", "fd00:1::1")
        ip("-n", p, "-6", "route", "add", "local", "2001:db8:5::/64", "dev", "lo")
        serve = subprocess.Popen(["ip", "netns", "exec", p, PEAK, "serve", "--port", "8080",
                                  "--id", "pod"], stderr=subprocess.PIPE, text=True)
        serve.stderr.readline()
        (tmp_path / "peak.yaml").write_text(CFG)
        r = pf(n, "attach", "--dev", "u0", "--config", str(tmp_path / "peak.yaml"), "--object",
               OBJ)
        assert r.returncode == 0, r.stderr
        deadline = time.time() + 10  # fresh links: the first packets may be lost to ND
        while subprocess.run(["ip", "netns", "exec", c, "curl", "-s", "--max-time", "1",
                              f"http://[{rule(A)}]:8080/"], capture_output=True).returncode:
            assert time.time() < deadline, "the pod never answered"
        yield c, n, p
    finally:
        if serve:
            serve.kill()
            serve.wait()
        pf(n, "detach", "--dev", "u0")  # its pins outlive the namespace otherwise
        for ns in (c, n, p):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def load(c, seconds):
    r = subprocess.run(["ip", "netns", "exec", c, PEAK, "load", f"[{rule(A)}]:8080", "--rate",
                        "400", "--clients", "4", "--duration", str(seconds), "--timeout",
                        "2000", "--json"], capture_output=True, text=True, timeout=seconds + 30)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def bands(n):
    """Per class of the queue on p0 (1 known good, 2 assumed, 3 possibly bad): (packets sent,
    packets dropped) of its leaf pfifo."""
    out = subprocess.run(["tc", "-n", n, "-s", "qdisc", "show", "dev", "p0"],
                         capture_output=True, text=True, check=True).stdout
    got = {}
    for m in re.finditer(r"qdisc pfifo (\w+): parent 5045:(\d).*?\n Sent \d+ bytes (\d+) pkt "
                         r"\(dropped (\d+)", out, re.S):
        got[int(m.group(2))] = (int(m.group(3)), int(m.group(4)))
    assert sorted(got) == [1, 2, 3], out
    return got


def stats(n):
    out = pf(n, "stats", "--dev", "u0").stdout
    return {ln.split()[0]: int(ln.split()[1]) for ln in out.splitlines()}


def test_legitimate_traffic_survives_the_flood(net):
    c, n, p = net
    r = pf(n, "queue", "--dev", "p0", "--rate", "8mbit")
    assert r.returncode == 0, r.stderr
    alone = load(c, 2)
    # what the server answered within the run is its speed (a loaded machine leaves more
    # unfinished at the end): the accounting is asserted, not a share answered
    assert alone["failed"] == 0 and alone["ok"] > 0, alone
    assert alone["ok"] + alone["unfinished"] == alone["sent"], alone
    b0, s0 = bands(n), stats(n)
    pps, secs = 15000, 3.5  # each: 15000 x 74-byte SYNs = 8.9 Mbit/s, over the shaped link
    floods = [subprocess.Popen(["ip", "netns", "exec", c, FLOOD, *aim, "--port", "8080", "--pps",
                                str(pps), "--seconds", str(secs), "--sources", src],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for aim, src in ((["--prefix", "2001:db8:5::/64"], "2001:db8:bb::/48"),
                               (["--dst", rule(BAD)], "2001:db8:bb:1::/64"))]
    try:
        # the load starts once the flood reaches the filter (was a fixed 0.5 s sleep)
        deadline = time.time() + 10
        while sum(stats(n)[k] - s0[k] for k in ("reject_slice", "reject_host")) < 1000:
            assert time.time() < deadline and all(f.poll() is None for f in floods), \
                "the flood never reached the filter"
            time.sleep(0.05)
        under = load(c, 2.5)
    finally:
        sent = [json.loads(f.communicate(timeout=30)[0])["sent"] for f in floods]
    b1, s1 = bands(n), stats(n)
    d = {k: s1[k] - s0[k] for k in s1}
    print(f"legit p99 {alone['latency_us']['p99']:.0f} us alone, "
          f"{under['latency_us']['p99']:.0f} us under {sum(sent) / secs:.0f} SYN/s; "
          f"ok {under['ok']}/{under['sent']}; filter {d}; bands {b0} -> {b1}")
    # the legitimate client kept being served: no request failed or timed out (2 s), and
    # every one is accounted for. How much slower it got is a figure for bench/filter (the
    # flood generators take both cores here: a p99 of 108 ms against a 20 ms bound failed a
    # CI run on an otherwise idle machine), and the share answered by the run's end is the
    # machine's speed; the queue's counters below show the priority that kept it served.
    assert under["failed"] == 0 and under["ok"] > 0, under
    assert under["ok"] + under["unfinished"] == under["sent"], under
    # the flood was what the test says: rule breakers dropped at XDP, the rest classed
    assert d["reject_slice"] + d["reject_host"] >= 0.9 * sent[0]
    assert d["possibly_bad"] >= 0.9 * sent[1] - 400  # all but the burst
    assert d["known_good"] >= under["ok"]  # each request at least one known-good packet
    # the queue: known good in band 1, possibly bad in band 3, which alone dropped
    grew = {k: (b1[k][0] - b0[k][0], b1[k][1] - b0[k][1]) for k in b1}
    assert grew[1][0] >= under["ok"] and grew[1][1] == 0, grew
    assert grew[3][0] > 0, grew
    # band 3 drops once the possibly-bad flood alone outruns the 8 Mbit/s link; a flood
    # generator slowed by a loaded machine may not, and then nothing need drop
    bad_bps = sent[1] * 74 * 8 / secs
    print(f"possibly-bad flood: {bad_bps / 1e6:.1f} Mbit/s")
    if bad_bps > 1.1 * 8e6:
        assert grew[3][1] > 0, grew
    assert grew[2][1] == 0, grew


def test_queue_errors_and_removal(net):
    c, n, p = net
    r = pf(n, "queue", "--dev", "p0", "--rate", "fast")
    assert r.returncode == 1 and "rate 'fast' is not a number" in r.stderr
    r = pf(n, "queue", "--dev", "nope0", "--rate", "1mbit")
    assert r.returncode == 1 and "tc failed" in r.stderr
    r = pf(n, "queue", "--dev", "p0", "--remove", "--rate", "1mbit")
    assert r.returncode == 2 and "--remove takes no other" in r.stderr
    r = pf(n, "queue", "--dev", "p0")
    assert r.returncode == 2 and "needs --rate" in r.stderr
    r = pf(n, "queue", "--dev", "p0", "--rate", "1gbit", "--bad-limit", "10")
    assert r.returncode == 0, r.stderr
    out = subprocess.run(["tc", "-n", n, "qdisc", "show", "dev", "p0"], capture_output=True,
                         text=True).stdout
    assert "htb 5045: root" in out and "parent 5045:3 limit 10p" in out, out
    out = subprocess.run(["tc", "-n", n, "class", "show", "dev", "p0"], capture_output=True,
                         text=True).stdout
    assert "class htb 5045:1 parent 5045:10 leaf 5046: prio 0 rate 1Gbit ceil 1Gbit" in out, out
    assert "class htb 5045:3 parent 5045:10 leaf 5048: prio 2 rate 10Mbit ceil 1Gbit" in out, out
    assert pf(n, "queue", "--dev", "p0", "--remove").returncode == 0
    out = subprocess.run(["tc", "-n", n, "qdisc", "show", "dev", "p0"], capture_output=True,
                         text=True).stdout
    assert "5045" not in out
