"""peak dns against independent clients (dnspython, kdig, dig): every record kind and
protocol behaviour, malformed input, steering, live control, reloads."""
import ipaddress
import os
import random
import re
import signal
import socket
import struct
import subprocess
import time

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from conftest import K, PEAK, Server

CORPUS = os.path.join(os.path.dirname(__file__), "..", "fuzz", "corpus", "dns")
DESC = f"v=ssa1; slice=78; select=src; host=src; key={K}"


def compute(source, desc=DESC, prefix="2001:db8:5::/64", *extra):
    p = subprocess.run([PEAK, "ssa", "compute", "--prefix", prefix, "--descriptor", desc,
                        "--source", source, *extra], capture_output=True, text=True, check=True)
    return p.stdout.strip()


def ecs(net):
    n = ipaddress.ip_network(net)
    return [dns.edns.ECSOption(str(n.network_address), n.prefixlen)]


# ---- record kinds ----

def test_soa_and_ns_at_apex(server):
    r = server.query("svc.example.", "SOA")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.flags & dns.flags.AA and not r.flags & dns.flags.RA
    soa = r.answer[0][0]
    assert (soa.mname.to_text(), soa.rname.to_text(), soa.serial, soa.minimum) == \
        ("ns1.svc.example.", "hostmaster.svc.example.", 7, 20)
    r = server.query("svc.example.", "NS")
    assert sorted(x.target.to_text() for x in r.answer[0]) == \
        ["ns1.svc.example.", "ns2.elsewhere.example."]
    glue = r.find_rrset(r.additional, dns.name.from_text("ns1.svc.example."),
                        dns.rdataclass.IN, dns.rdatatype.AAAA)
    assert glue[0].address == "2001:db8:53::1"
    r = server.query("ns1.svc.example.", "AAAA")
    assert r.answer[0][0].address == "2001:db8:53::1"


def test_apl_equals_config_dnspython_and_kdig(server):
    r = server.query("api.svc.example.", "APL")
    assert r.answer[0].ttl == 3600
    assert r.answer[0][0].to_text() == "2:2001:db8:5::/64"
    r = server.query("big.svc.example.", "APL", use_edns=0, payload=4096)
    items = r.answer[0][0].items
    assert [f"{i.address}/{i.prefix}" for i in items] == \
        [str(ipaddress.ip_network(f"2001:db8:7:{i:x}::/64")) for i in range(60)]
    out = subprocess.run(["kdig", f"@::1", "-p", str(server.port), "+short", "api.svc.example.",
                          "APL"], capture_output=True, text=True, timeout=10).stdout
    assert out.strip() == "2:2001:db8:5::/64"


def test_txt_descriptor(server):
    r = server.query("_ssa.api.svc.example.", "TXT")
    assert r.answer[0].ttl == 1800
    assert b"".join(r.answer[0][0].strings).decode() == DESC
    out = subprocess.run(["dig", "@::1", "-p", str(server.port), "+short", "_ssa.api.svc.example.",
                          "TXT"], capture_output=True, text=True, timeout=10).stdout
    assert out.strip() == f'"{DESC}"'


def test_aaaa_follows_rule_for_client_subnet(server):
    rng = random.Random(5)
    for _ in range(20):
        net = f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::/64"
        r = server.query("api.svc.example.", "AAAA", use_edns=0, options=ecs(net))
        got = [a.address for a in r.answer[0]]
        assert got == [compute(net.split("/")[0] + "1")]
        opt = r.options[0]
        assert (opt.address, opt.srclen, opt.scopelen) == (net.split("/")[0], 64, 64)
    # kdig's own +subnet
    out = subprocess.run(["kdig", "@::1", "-p", str(server.port), "+short",
                          "+subnet=2001:db8:aa:bb::/64", "api.svc.example.", "AAAA"],
                         capture_output=True, text=True, timeout=10).stdout
    assert out.strip() == "2001:db8:5:0:a94a:ac01:8d:78fe"  # the SPEC.md vector


def test_aaaa_from_transport_source(server):
    r = server.query("api.svc.example.", "AAAA")  # from ::1, no ECS
    assert [a.address for a in r.answer[0]] == [compute("::1")]
    # fanout: one answer per fanout index, as the rule gives them (answers: 3, fanout: 4)
    r = server.query("big.svc.example.", "AAAA", use_edns=0, options=ecs("2001:db8:aa:bb::/64"))
    prefixes = [f"--prefix=2001:db8:7:{i:x}::/64" for i in range(60)]
    d = f"v=ssa1; slice=70; select=src; host=src; fanout=4; key={K}"
    want = []
    for i in range(3):
        p = subprocess.run([PEAK, "ssa", "compute", *prefixes, "--descriptor", d, "--source",
                            "2001:db8:aa:bb::1", "--index", str(i)],
                           capture_output=True, text=True, check=True)
        want.append(p.stdout.strip())
    assert [a.address for a in r.answer[0]] == want


def test_nxdomain_nodata_and_empty_nonterminal(server):
    r = server.query("nope.svc.example.", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.AA
    assert r.authority[0].rdtype == dns.rdatatype.SOA and r.authority[0].ttl == 20
    r = server.query("api.svc.example.", "MX")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    r = server.query("deep.svc.example.", "A")  # an empty non-terminal: NODATA
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority
    r = server.query("x.api.svc.example.", "AAAA")
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_refused_outside_zone_other_class_and_transfers(server):
    assert server.query("example.org.", "A").rcode() == dns.rcode.REFUSED
    assert server.query("vc.example.", "A").rcode() == dns.rcode.REFUSED
    q = dns.message.make_query("svc.example.", "TXT", rdclass="CH")
    assert dns.query.udp(q, "::1", port=server.port, timeout=2).rcode() == dns.rcode.REFUSED
    assert server.query("svc.example.", "AXFR", tcp=True).rcode() == dns.rcode.REFUSED


def test_notimp_for_other_opcodes(server):
    for op in (dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS):
        q = dns.message.make_query("svc.example.", "SOA")
        q.set_opcode(op)
        r = dns.query.udp(q, "::1", port=server.port, timeout=2)
        assert r.rcode() == dns.rcode.NOTIMP and r.opcode() == op


def test_case_preserved_and_no_recursion(server):
    q = dns.message.make_query("ApI.SvC.ExAmPlE.", "APL")
    q.flags |= dns.flags.RD
    wire = q.to_wire()
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(wire, ("::1", server.port))
        resp = s.recv(4096)
    assert b"\x03ApI\x03SvC\x07ExAmPlE\x00" in resp
    r = dns.message.from_wire(resp)
    assert r.flags & dns.flags.RD and not r.flags & dns.flags.RA and r.flags & dns.flags.AA


def test_any_is_minimal(server):
    for name, rdtype in (("svc.example.", dns.rdatatype.SOA),
                         ("api.svc.example.", dns.rdatatype.APL),
                         ("_ssa.api.svc.example.", dns.rdatatype.TXT)):
        r = server.query(name, "ANY")
        assert len(r.answer) == 1 and r.answer[0].rdtype == rdtype


def test_edns_buffer_truncation_and_tcp(server):
    # 60 prefixes: about 800 bytes, over 512
    r = server.query("big.svc.example.", "APL")  # no EDNS: 512
    assert r.flags & dns.flags.TC and not r.answer
    r = server.query("big.svc.example.", "APL", use_edns=0, payload=600)
    assert r.flags & dns.flags.TC and not r.answer and r.edns == 0
    r = server.query("big.svc.example.", "APL", use_edns=0, payload=1232)
    assert not r.flags & dns.flags.TC and len(r.answer[0][0].items) == 60
    assert len(r.to_wire()) <= 1232
    r = server.query("big.svc.example.", "APL", tcp=True)
    assert not r.flags & dns.flags.TC and len(r.answer[0][0].items) == 60
    out = subprocess.run(["dig", "@::1", "-p", str(server.port), "+noedns", "big.svc.example.",
                          "APL"], capture_output=True, text=True, timeout=10).stdout
    assert "Truncated, retrying in TCP mode" in out and "ANSWER: 1" in out


def test_badvers(server):
    q = dns.message.make_query("svc.example.", "SOA")
    q.use_edns(edns=1)  # (use_edns=1 in make_query means True, i.e. version 0)
    r = dns.query.udp(q, "::1", port=server.port, timeout=2)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0 and not r.answer


def send_raw(port, data, timeout=0.3):
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("::1", port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def test_malformed_corpus_formerr_or_silence(server):
    hdr = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    cases = [open(os.path.join(CORPUS, f), "rb").read() for f in sorted(os.listdir(CORPUS))
             if f.startswith("bad-")]
    cases += [b"", b"\x00", hdr[:11], hdr, hdr + b"\x03abc", hdr + b"\xc0\x0c\x00\x01\x00\x01",
              hdr + b"\x00\x00\x01\x00\x01" + b"junk"]
    rng = random.Random(7)
    cases += [bytes([rng.randrange(256) & (0x7f if i == 2 else 0xff) for i in range(300)])
              for _ in range(20)]  # random bytes with QR clear
    for data in cases:
        resp = send_raw(server.port, data)
        if resp is None:
            continue
        # read the header by hand: dnspython refuses some opcodes we echo
        assert resp[:2] == data[:2] and resp[2] & 0x80, (data.hex(), resp.hex())
        assert resp[3] & 0xf in (dns.rcode.FORMERR, dns.rcode.NOTIMP), (data.hex(), resp.hex())
    # a response (QR set) gets no answer at all
    q = dns.message.make_query("svc.example.", "SOA")
    q.flags |= dns.flags.QR
    assert send_raw(server.port, q.to_wire()) is None
    # and the server still serves
    assert server.query("svc.example.", "SOA").rcode() == dns.rcode.NOERROR
    assert server.metrics()["peak_dns_dropped_total"] >= 1


def test_tcp_several_queries_then_idle_close(server):
    with socket.create_connection(("::1", server.port), timeout=3) as s:
        msgs = []
        for i, name in enumerate(["svc.example.", "api.svc.example.", "nope.svc.example."]):
            q = dns.message.make_query(name, "SOA" if i == 0 else "APL", id=100 + i)
            w = q.to_wire()
            msgs.append(struct.pack("!H", len(w)) + w)
        s.sendall(b"".join(msgs))  # pipelined
        buf = b""
        got = []
        while len(got) < 3:
            buf += s.recv(4096)
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                got.append(dns.message.from_wire(buf[2:2 + n]))
                buf = buf[2 + n:]
        assert [m.id for m in got] == [100, 101, 102]
        assert got[2].rcode() == dns.rcode.NXDOMAIN
        t0 = time.time()
        s.settimeout(10)  # a server that never closes fails here (socket.timeout)
        assert s.recv(10) == b""  # closed by the server after --tcp-idle 1
        # not before the idle time (a lower bound only: a loaded machine adds to it)
        idle = time.time() - t0
        print(f"idle connection closed after {idle:.2f} s")
        assert idle > 0.5, idle


# ---- steering ----

def steered(server, service):
    m = server.metrics()
    pat = re.compile(r'peak_dns_steered_answers_total\{service="%s",endpoint="([^"]+)"\}' %
                     re.escape(service))
    return {pat.match(k).group(1): v for k, v in m.items() if pat.match(k)}


def udp_loop(port, wires, timeout=5.0):
    """Sends each query and waits for its answer; returns the answers."""
    out = []
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for w in wires:
            s.sendto(w, ("::1", port))
            out.append(s.recv(4096))
    return out


def test_steering_shares_follow_weights(server):
    before = steered(server, "web.deep.svc.example.")
    rng = random.Random(11)
    wires = []
    for i in range(10000):
        net = f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::/64"
        q = dns.message.make_query("web.deep.svc.example.", "AAAA", use_edns=0, options=ecs(net),
                                   id=i % 65536)
        wires.append(q.to_wire())
    answers = udp_loop(server.port, wires)
    assert all(dns.message.from_wire(a).answer for a in answers)
    after = steered(server, "web.deep.svc.example.")
    counts = {e: after[e] - before.get(e, 0) for e in after}
    total = sum(counts.values())
    assert total == 10000
    for e, w in (("w1", 1), ("w2", 2), ("w3", 3), ("w4", 4)):
        assert abs(counts[e] / total - w / 10) < 0.02, counts
    # every answer lies in the service prefix, in the slices of the endpoint counted
    for a in answers[:200]:
        addr = dns.message.from_wire(a).answer[0][0].address
        assert ipaddress.ip_address(addr) in ipaddress.ip_network("2001:db8:6::/64")


def ctl_raw(path, line):
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            data += b
    return data.decode(), time.perf_counter() - t0


def test_mark_down_stops_answers_once_acknowledged(server):
    """Once the control socket has answered 'ok', no answer names the endpoint. How fast
    the reply comes is a benchmark figure (about 5 ms on an idle machine), not asserted
    here: a 10 ms bound failed at 18 ms under ASan on a loaded 2-core machine."""
    times = []
    for trial in range(5):
        reply, dt = ctl_raw(server.control, "health web.deep.svc.example. w4 down")
        assert reply.strip() == "ok"
        times.append(dt)
        before = steered(server, "web.deep.svc.example.")
        wires = [dns.message.make_query("web.deep.svc.example.", "AAAA", id=i).to_wire()
                 for i in range(300)]
        udp_loop(server.port, wires)
        after = steered(server, "web.deep.svc.example.")
        assert after["w4"] == before["w4"]  # not once after the reply
        assert sum(after.values()) - sum(before.values()) == 300
        reply, _ = ctl_raw(server.control, "health web.deep.svc.example. w4 up")
        assert reply.strip() == "ok"
    times.sort()
    print(f"control reply times: {times}")
    assert times[2] < 1.0, times  # a sanity bound only


def test_mark_down_moves_only_its_slices_for_src_rules(server):
    def slices():
        st = server.ctl("status").stdout
        return {m.group(1): int(m.group(2)) for m in
                re.finditer(r"^api\.svc\.example\. (\S+) \S+ weight=\d+ slices=(\d+)$", st, re.M)}
    assert slices() == {"pod-a": 5462, "pod-b": 5461, "pod-c": 5461}
    nets = [f"2001:db8:{i:x}:77::/64" for i in range(300)]
    first = {n: server.query("api.svc.example.", "AAAA", use_edns=0,
                             options=ecs(n)).answer[0][0].address for n in nets}
    before = steered(server, "api.svc.example.")
    assert server.ctl("health", "api.svc.example.", "pod-b", "down").returncode == 0
    after_s = slices()
    assert after_s["pod-b"] == 0 and after_s["pod-a"] + after_s["pod-c"] == 16384
    second = {n: server.query("api.svc.example.", "AAAA", use_edns=0,
                              options=ecs(n)).answer[0][0].address for n in nets}
    # the rule's address does not change: the slice moved, not the client
    assert first == second
    after = steered(server, "api.svc.example.")
    assert after["pod-b"] == before["pod-b"]


def test_weight_change_and_control_errors(server):
    r = server.ctl("weight", "web.deep.svc.example.", "w1", "0")
    assert r.returncode == 0 and r.stdout.strip() == "ok"
    st = server.ctl("status").stdout
    assert "web.deep.svc.example. w1 up weight=0 slices=0" in st
    assert server.ctl("reload").returncode == 0  # the file did not change w1's weight
    assert "web.deep.svc.example. w1 up weight=0 slices=0" in server.ctl("status").stdout
    server.config.write_text(server.config.read_text().replace(
        '"2001:db8:101::1", weight: 1', '"2001:db8:101::1", weight: 5'))
    assert server.ctl("reload").returncode == 0  # now it did: the file wins
    assert "web.deep.svc.example. w1 up weight=5" in server.ctl("status").stdout
    for args, why in ((["health", "web.deep.svc.example.", "nope", "down"], "no endpoint"),
                      (["health", "web.deep.svc.example.", "w1", "sideways"],
                       "expected 'health SERVICE ENDPOINT up|down'"),
                      (["weight", "web.deep.svc.example.", "w1", "-3"], "0..1000000"),
                      (["weight", "web.deep.svc.example.", "w1", "1000001"], "0..1000000"),
                      (["frobnicate"], "unknown command"),
                      (["map", "web.deep.svc.example."], "unknown command"),
                      (["health", "x..y", "w1", "up"], "expected 'health SERVICE")):
        r = server.ctl(*args)
        assert r.returncode == 2 and why in r.stdout, (args, r.stdout)  # refused: bad input
    r = subprocess.run([PEAK, "dns-ctl", "--control", str(server.dir / "none.ctl"), "status"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot reach" in r.stderr  # a run-time failure


# ---- reloads ----

def test_sighup_reload_and_refused_bad_config(server):
    text = server.config.read_text()
    server.config.write_text(text + """
  - name: new.svc.example.
    prefixes: [2001:db8:8::/64]
    slice: 72
    endpoints: [{id: n1, address: "2001:db8:103::1"}]
""")
    server.signal()
    deadline = time.time() + 10  # (a reload of an ASan build on a loaded machine)
    while server.query("new.svc.example.", "APL").rcode() != dns.rcode.NOERROR or \
            not server.query("new.svc.example.", "APL").answer:
        assert time.time() < deadline
        time.sleep(0.01)
    server.config.write_text(text.replace("slice: 78", "slice: 60"))
    server.signal()
    deadline = time.time() + 10
    while server.metrics().get('peak_dns_reloads_total{result="error"}', 0) < 1:
        assert time.time() < deadline
        time.sleep(0.02)
    assert "reload refused" in server.logtext() and "slice=60 is shorter" in server.logtext()
    assert server.query("new.svc.example.", "APL").answer  # the previous state still serves
    r = server.ctl("reload")
    assert r.returncode == 2 and "slice=60" in r.stdout


def test_sighup_under_dnsperf_loses_nothing(server, tmp_path):
    """20 reloads while dnsperf sends: no query lost. dnsperf runs until the reloads are done
    (SIGINT then: the queries in flight count as interrupted, not lost), not for a fixed time
    the reloads had to fit in (an ASan build on a loaded machine reloads slower); its rate
    leaves a slow build headroom, so a loss is the reloads' doing, not a full socket."""
    qf = tmp_path / "queries"
    qf.write_text("api.svc.example. AAAA\nsvc.example. SOA\n_ssa.api.svc.example. TXT\n"
                  "web.deep.svc.example. AAAA\nbig.svc.example. APL\nnope.svc.example. A\n")
    perf = subprocess.Popen(["dnsperf", "-s", "::1", "-p", str(server.port), "-d", str(qf),
                             "-l", "600", "-Q", "5000", "-c", "4", "-t", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def queries():
        return sum(v for k, v in server.metrics().items() if k.startswith("peak_dns_queries_total"))
    seen = []
    try:
        deadline = time.time() + 30
        while queries() < 1000:  # dnsperf is sending
            assert time.time() < deadline and perf.poll() is None, "dnsperf sent nothing"
            time.sleep(0.01)
        # each reload awaited before the next signal (SIGHUPs sent faster than the server
        # reads them merge into one: counting on a fixed gap raced, 17 of 20 on a loaded
        # machine)
        key = 'peak_dns_reloads_total{result="ok"}'
        done = server.metrics().get(key, 0)
        for _ in range(20):
            server.signal()
            deadline = time.time() + 10
            while server.metrics().get(key, 0) <= done and time.time() < deadline:
                time.sleep(0.01)
            assert server.metrics().get(key, 0) == done + 1
            done += 1
            seen.append(queries())
        assert perf.poll() is None, perf.communicate()[0]
    finally:
        perf.send_signal(signal.SIGINT)
        out, _ = perf.communicate(timeout=60)
    # the load went on across the reloads: the answered count never fell and rose over them
    # (two reloads may come closer together than two queries on a loaded machine)
    assert all(b >= a for a, b in zip(seen, seen[1:])) and seen[-1] > seen[0], seen
    sent = int(re.search(r"Queries sent:\s+(\d+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    print(f"20 reloads under dnsperf: {sent} queries sent, {lost} lost")
    assert sent >= 1000 and lost == 0, out


# ---- the command ----

def test_check_and_startup_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("zone: {name: z., ns: [{name: ns.z.}]}\nservices:\n  - {name: a.z., slice: 3}\n")
    r = subprocess.run([PEAK, "dns", "--config", str(bad), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and f"{bad}:3:" in r.stderr and "prefixes" in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text("zone: {name: z., ns: [{name: ns.z.}]}\nservices: []\n")
    r = subprocess.run([PEAK, "dns", "--config", str(good), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout == "ok\n"
    r = subprocess.run([PEAK, "dns", "--config", str(good), "--listen", "::1:53"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--listen" in r.stderr
    # a hop service whose secret file is missing: refused at start, with the reason
    hop = tmp_path / "hop.yaml"
    hop.write_text("zone: {name: z., ns: [{name: ns.z.}]}\nservices:\n"
                   "  - {name: h.z., prefixes: ['2001:db8:9::/64'], slice: 72, select: hop,\n"
                   f"     key: {K}, secret-file: {tmp_path}/missing}}\n")
    r = subprocess.run([PEAK, "dns", "--config", str(hop), "--listen", "[::1]:1"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "secret" in r.stderr


def test_hop_service_answers_with_current_epoch(tmp_path):
    secret = tmp_path / "hop.secret"
    secret.write_text("f0e0d0c0b0a090807060504030201000\n")
    cfg = ("zone: {name: z., ns: [{name: ns.z.}]}\nservices:\n"
           "  - {name: h.z., prefixes: ['2001:db8:9::/64'], slice: 72, select: hop, host: hop,\n"
           f"     period: 30, key: {K}, secret-file: {secret},\n"
           "     endpoints: [{id: e1, address: '2001:db8:1::1'}]}\n")
    s = Server(tmp_path, config=cfg)
    try:
        r = s.query("h.z.", "AAAA", use_edns=0, options=ecs("2001:db8:aa:bb::/64"))
        addr = r.answer[0][0].address
        d = f"v=ssa1; slice=72; select=hop; host=hop; period=30; key={K}"
        chk = subprocess.run([PEAK, "ssa", "check", "--prefix", "2001:db8:9::/64",
                              "--descriptor", d, "--source", "2001:db8:aa:bb::1",
                              "--destination", addr, "--secret-file", str(secret)],
                             capture_output=True, text=True)
        assert chk.stdout == "pass\n"
        assert "f0e0d0c0" not in s.logtext()
    finally:
        s.stop()
