"""PEAK-direct (issue 16): the content-type map peak dns publishes at _types.NAME, and
'peak h3 upload NAME --peak' reaching each type's pod straight, with no ingress."""
import os
import subprocess
import sys

import dns.rdatatype
import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from conftest import PEAK, wait_for  # noqa: E402
import peaktest  # noqa: E402

ZONE = """zone:
  name: svc.example.
  ns: [{name: ns1.svc.example., address: "2001:db8:53::1"}]
  ttl: {txt: 60}
services:
"""

SERVICES = """  - name: audio.svc.example.
    prefixes: ["2001:db8:a1::/64"]
    slice: 72
    select: src
    host: src
    key: 000102030405060708090a0b0c0d0e0f
    types:
      audio/*: "@"
      video/*: video.svc.example.
      text/plain: "video.svc.example.#notes"
  - name: video.svc.example.
    prefixes: ["2001:db8:a2::/64"]
    slice: 72
    select: src
    host: src
    key: 0f0e0d0c0b0a09080706050403020100
"""


@pytest.fixture
def dns_server(tmp_path):
    s = peaktest.Server(tmp_path, config=ZONE + SERVICES)
    yield s
    s.stop()


def txt(server, name):
    r = server.query(name, "TXT")
    return r.rcode(), [b"".join(rr.strings).decode() for rrs in r.answer for rr in rrs
                       if rrs.rdtype == dns.rdatatype.TXT]


def test_dns_publishes_the_type_map_beside_the_descriptor(dns_server):
    rc, recs = txt(dns_server, "_types.audio.svc.example.")
    assert rc == 0
    assert recs == ["v=types1; audio/*=@; video/*=video.svc.example.; "
                    "text/plain=video.svc.example.#notes"]
    # the descriptor is where it was, and a service with no map has no _types name
    rc, recs = txt(dns_server, "_ssa.audio.svc.example.")
    assert recs and recs[0].startswith("v=ssa1;")
    rc, recs = txt(dns_server, "_types.video.svc.example.")
    assert rc == 3 and recs == []  # NXDOMAIN


def test_dns_refuses_a_bad_type_map(tmp_path):
    bad = SERVICES.replace('audio/*: "@"', 'audio/x*: "@"')
    (tmp_path / "bad.yaml").write_text(ZONE + bad)

    p = subprocess.run([PEAK, "dns", "--config", str(tmp_path / "bad.yaml"), "--check"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "'types'" in p.stderr + p.stdout


# ---- PEAK-direct through network namespaces ----
#
#   [c] client: peak dns on ::1, peak h3 upload audio.svc.example. --peak
#     | fd00:a1::1/64 ---- fd00:a1::2/64 [a] audio pod: AnyIP 2001:db8:a1::/64,
#     |                                       peak h3 backend --listen [::]:4433 --id pod-audio
#     | fd00:a2::1/64 ---- fd00:a2::2/64 [v] video pod: AnyIP 2001:db8:a2::/64,
#                                             peak h3 backend --listen [::]:4433 --id pod-video
# Routes stand in for the agents: the client's namespace routes each service prefix to its
# pod. No ingress anywhere: each type's stream reaches its pod's slice address straight.

SVC_CERT_TMPL = ('cn = "audio.svc.example"\ndns_name = "audio.svc.example"\n'
                 'dns_name = "video.svc.example"\ntls_www_server\nsigning_key\n'
                 'encryption_key\nexpiration_days = 2\n')


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def pods(tmp_path, certs):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    tag = f"pd{os.getpid() % 10000}"
    names = {k: f"{tag}{k}" for k in "cav"}
    procs = []
    try:
        for n in names.values():
            ip("netns", "add", n)
            ip("-n", n, "link", "set", "lo", "up")
        for k, net in (("a", "a1"), ("v", "a2")):
            ip("link", "add", f"{tag}{k}0", "netns", names["c"], "type", "veth", "peer",
               "name", f"{tag}{k}1", "netns", names[k])
            ip("-n", names["c"], "addr", "add", f"fd00:{net}::1/64", "dev", f"{tag}{k}0",
               "nodad")
            ip("-n", names[k], "addr", "add", f"fd00:{net}::2/64", "dev", f"{tag}{k}1", "nodad")
            ip("-n", names["c"], "link", "set", f"{tag}{k}0", "up")
            ip("-n", names[k], "link", "set", f"{tag}{k}1", "up")
            ip("-n", names["c"], "-6", "route", "add", f"2001:db8:{net}::/64", "via",
               f"fd00:{net}::2")
            ip("-n", names[k], "-6", "route", "add", "default", "via", f"fd00:{net}::1")
            ip("-n", names[k], "-6", "route", "add", "local", f"2001:db8:{net}::/64", "dev",
               "lo")
        # a certificate for the service names (clients check the service, not the address)
        (tmp_path / "svc.tmpl").write_text(SVC_CERT_TMPL)
        subprocess.run(["certtool", "--generate-privkey", "--key-type", "ecdsa", "--outfile",
                        str(tmp_path / "svc.key")], check=True, capture_output=True, timeout=60)
        subprocess.run(["certtool", "--generate-certificate", "--load-privkey",
                        str(tmp_path / "svc.key"), "--load-ca-certificate",
                        str(certs / "ca.pem"), "--load-ca-privkey", str(certs / "ca.key"),
                        "--template", str(tmp_path / "svc.tmpl"), "--outfile",
                        str(tmp_path / "svc.pem")], check=True, capture_output=True, timeout=60)
        for k, types, ident in (("a", "audio/*", "pod-audio"),
                                ("v", "video/*,text/plain", "pod-video")):
            log = open(tmp_path / f"{ident}.log", "w+")
            procs.append((subprocess.Popen(
                ["ip", "netns", "exec", names[k], PEAK, "h3", "backend", "--listen",
                 "[::]:4433", "--cert", str(tmp_path / "svc.pem"), "--key",
                 str(tmp_path / "svc.key"), "--type", types, "--id", ident],
                stdout=log, stderr=subprocess.STDOUT), log, tmp_path / f"{ident}.log"))
        for p, log, path in procs:
            def listening():
                log.flush()
                assert p.poll() is None, path.read_text()
                return "listening on" in path.read_text()
            wait_for(listening, 10, "a backend to listen")
        dnss = peaktest.Server(tmp_path, config=ZONE + SERVICES, netns=names["c"])
        try:
            yield names, dnss
        finally:
            dnss.stop()
    finally:
        for p, log, _ in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            log.close()
        for n in names.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=30)


def write(path, n, seed):
    path.write_bytes((seed.encode() * (n // len(seed) + 1))[:n])


def direct(names, dnss, certs, files, extra=()):
    argv = ["ip", "netns", "exec", names["c"], PEAK, "h3", "upload", "audio.svc.example.",
            "--peak", "--server", f"[::1]:{dnss.port}", "--port", "4433", "--ca",
            str(certs / "ca.pem"), "--timeout", "20000", *extra]
    for f in files:
        argv += ["--file", f]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    streams = [dict(kv.split("=", 1) for kv in line.split())
               for line in p.stdout.splitlines() if line.startswith("stream=")]
    conns = [dict(kv.split("=", 1) for kv in line.split()[1:])
             for line in p.stdout.splitlines() if line.startswith("peak: ")]
    return p.returncode, streams, conns, p.stdout + p.stderr


def test_upload_reaches_each_types_pod_straight_with_no_ingress(tmp_path, pods, certs):
    names, dnss = pods
    write(tmp_path / "a1.ogg", 300_000, "a1")
    write(tmp_path / "a2.opus", 70_000, "a2")
    write(tmp_path / "v1.mp4", 900_000, "v1")
    write(tmp_path / "n.txt", 5_000, "n")
    rc, streams, conns, out = direct(
        names, dnss, certs, [f"{tmp_path / 'a1.ogg'}:audio/ogg",
                             f"{tmp_path / 'a2.opus'}:Audio/Opus; rate=48000",
                             f"{tmp_path / 'v1.mp4'}:video/mp4",
                             f"{tmp_path / 'n.txt'}:text/plain"])
    assert rc == 0, out
    by_file = {s["file"]: s for s in streams}
    assert set(by_file) == {"a1.ogg", "a2.opus", "v1.mp4", "n.txt"}, out
    assert all(s["status"] == "201" and s["checksum"] == "ok" for s in streams), out
    assert by_file["a1.ogg"]["backend"] == by_file["a2.opus"]["backend"] == "pod-audio", out
    assert by_file["v1.mp4"]["backend"] == by_file["n.txt"]["backend"] == "pod-video", out
    # one connection per map entry, each to a slice address of its service, from the source
    # the rule was computed for
    assert len(conns) == 3, out
    for c in conns:
        pfx = "[2001:db8:a1:" if c["service"] == "audio.svc.example." else "[2001:db8:a2:"
        assert c["address"].startswith(pfx), out
        assert c["source"] == ("fd00:a1::1" if pfx.endswith("a1:") else "fd00:a2::1"), out
    assert {c["types"] for c in conns} == {"audio/ogg,Audio/Opus", "video/mp4", "text/plain"}
    assert any(c.get("key") == "notes" for c in conns), out


def test_a_type_with_no_entry_fails_and_the_others_go_through(tmp_path, pods, certs):
    names, dnss = pods
    write(tmp_path / "a.ogg", 10_000, "a")
    write(tmp_path / "x.bin", 10_000, "x")
    rc, streams, conns, out = direct(names, dnss, certs, [f"{tmp_path / 'a.ogg'}:audio/ogg",
                                                         f"{tmp_path / 'x.bin'}:image/png"])
    assert rc == 1, out
    assert "no entry of audio.svc.example.'s map for type image/png" in out
    assert [s["backend"] for s in streams] == ["pod-audio"] and streams[0]["checksum"] == "ok"


def test_a_name_with_no_map_is_an_error(tmp_path, pods, certs):
    names, dnss = pods
    write(tmp_path / "a.ogg", 1000, "a")
    argv = ["ip", "netns", "exec", names["c"], PEAK, "h3", "upload", "video.svc.example.",
            "--peak", "--server", f"[::1]:{dnss.port}", "--port", "4433", "--ca",
            str(certs / "ca.pem"), "--file", f"{tmp_path / 'a.ogg'}:audio/ogg"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "content-type map" in p.stderr, p.stdout + p.stderr


def test_peak_options_need_peak_and_typed_files(tmp_path):
    (tmp_path / "a").write_bytes(b"a")
    for argv in (["https://[::1]:1/", "--server", "::1", "--file", f"{tmp_path / 'a'}:a/b"],
                 ["audio.svc.example.", "--peak", "--file", str(tmp_path / "a")],
                 ["audio.svc.example.", "--peak", "--port", "0", "--file",
                  f"{tmp_path / 'a'}:a/b"]):
        p = subprocess.run([PEAK, "h3", "upload", *argv], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 2, (argv, p.stderr)
