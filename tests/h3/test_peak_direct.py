"""PEAK-direct (issue 16): the content-type map peak dns publishes at _types.NAME, and
'peak h3 upload NAME --peak' reaching each type's pod straight, with no ingress."""
import os
import subprocess
import sys

import dns.rdatatype
import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from conftest import PEAK  # noqa: E402
import peaktest  # noqa: E402
import directbed  # noqa: E402

CONFIG = directbed.CONFIG


def write(path, n, seed):
    path.write_bytes((seed.encode() * (n // len(seed) + 1))[:n])


@pytest.fixture
def dns_server(tmp_path):
    s = peaktest.Server(tmp_path, config=CONFIG)
    yield s
    s.stop()


def txt(server, name):
    r = server.query(name, "TXT")
    return r.rcode(), [b"".join(rr.strings).decode() for rrs in r.answer for rr in rrs
                       if rrs.rdtype == dns.rdatatype.TXT]


def test_dns_publishes_the_type_map_beside_the_descriptor(dns_server):
    rc, recs = txt(dns_server, "_types.audio.svc.example.")
    assert rc == 0
    assert recs == ["v=types1; audio/*=@; video/*=video.svc.example.#video; "
                    "text/plain=video.svc.example.#notes"]
    # the descriptor is where it was, and a service with no map has no _types name
    rc, recs = txt(dns_server, "_ssa.audio.svc.example.")
    assert recs and recs[0].startswith("v=ssa1;")
    rc, recs = txt(dns_server, "_types.video.svc.example.")
    assert rc == 3 and recs == []  # NXDOMAIN


def test_dns_refuses_a_bad_type_map(tmp_path):
    (tmp_path / "bad.yaml").write_text(CONFIG.replace('audio/*: "@"', 'audio/x*: "@"'))

    p = subprocess.run([PEAK, "dns", "--config", str(tmp_path / "bad.yaml"), "--check"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "'types'" in p.stderr + p.stdout


# ---- PEAK-direct through network namespaces (directbed.py draws the topology) ----


@pytest.fixture
def pods(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    bed = directbed.Bed(f"pd{os.getpid() % 10000}", tmp_path)
    try:
        yield bed.up()
    finally:
        bed.down()


def test_upload_reaches_each_types_pod_straight_with_no_ingress(tmp_path, pods):
    write(tmp_path / "a1.ogg", 300_000, "a1")
    write(tmp_path / "a2.opus", 70_000, "a2")
    write(tmp_path / "v1.mp4", 900_000, "v1")
    write(tmp_path / "n.txt", 5_000, "n")
    rc, streams, conns, out = pods.upload([f"{tmp_path / 'a1.ogg'}:audio/ogg",
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
    # video.svc.example. is select=obj: each entry's #KEY picks its slice, as an object key
    # picks it for 'peak resolve --object'
    by_key = {c.get("key"): c["address"] for c in conns}
    assert set(by_key) == {None, "video", "notes"}, out
    assert by_key["video"] != by_key["notes"], out
    for key in ("video", "notes"):
        r = subprocess.run(["ip", "netns", "exec", pods.name("c"), PEAK, "resolve",
                            "video.svc.example.", "--object", key, "--server",
                            f"[::1]:{pods.dns.port}"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        assert by_key[key] == f"[{r.stdout.split()[0]}]:4433", (key, r.stdout, out)


def test_a_type_with_no_entry_fails_and_the_others_go_through(tmp_path, pods):
    write(tmp_path / "a.ogg", 10_000, "a")
    write(tmp_path / "x.bin", 10_000, "x")
    rc, streams, conns, out = pods.upload([f"{tmp_path / 'a.ogg'}:audio/ogg",
                                           f"{tmp_path / 'x.bin'}:image/png"])
    assert rc == 1, out
    assert "no entry of audio.svc.example.'s map for type image/png" in out
    assert [s["backend"] for s in streams] == ["pod-audio"] and streams[0]["checksum"] == "ok"


def test_a_name_with_no_map_is_an_error(tmp_path, pods):
    write(tmp_path / "a.ogg", 1000, "a")
    argv = ["ip", "netns", "exec", pods.name("c"), PEAK, "h3", "upload", "video.svc.example.",
            "--peak", "--server", f"[::1]:{pods.dns.port}", "--port", "4433", "--ca",
            str(pods.ca), "--file", f"{tmp_path / 'a.ogg'}:audio/ogg"]
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


def test_connections_spread_a_types_files_over_several_connections(tmp_path, pods):
    """--connections 2: the video entry's three files go over two connections (the largest
    alone, the two others together), both to the one address its rule gives, from the one
    source; the single audio file keeps its one connection. Without --peak, the same option
    spreads the files over connections to the URL."""
    write(tmp_path / "a1.ogg", 300_000, "a1")
    for name, n in (("v1.mp4", 900_000), ("v2.mp4", 600_000), ("v3.mp4", 200_000)):
        write(tmp_path / name, n, name)
    files = [f"{tmp_path / 'a1.ogg'}:audio/ogg"] + [
        f"{tmp_path / n}:video/mp4" for n in ("v3.mp4", "v1.mp4", "v2.mp4")]
    rc, streams, conns, out = pods.upload(files, extra=("--connections", "2"))
    assert rc == 0, out
    assert sorted(s["file"] for s in streams) == ["a1.ogg", "v1.mp4", "v2.mp4", "v3.mp4"], out
    assert all(s["status"] == "201" and s["checksum"] == "ok" for s in streams), out
    assert "peak-direct: 3 connections, all ok" in out, out
    video = [c for c in conns if c["types"] == "video/mp4"]
    assert len(video) == 2 and len({(c["address"], c["source"]) for c in video}) == 1, out
    # each connection's streams follow its 'peak:' line: v1 alone, then v2 and v3 together
    parts, cur = [], None
    for line in out.splitlines():
        if line.startswith("peak: "):
            cur = []
            parts.append(cur)
        elif line.startswith("stream=") and cur is not None:
            cur.append(dict(kv.split("=", 1) for kv in line.split())["file"])
    assert sorted(sorted(p) for p in parts) == [["a1.ogg"], ["v1.mp4"], ["v2.mp4", "v3.mp4"]]

    argv = ["ip", "netns", "exec", pods.name("c"), PEAK, "h3", "upload",
            "https://[2001:db8:a2::1]:4433/", "--ca", str(pods.ca), "--connections", "3",
            "--timeout", "20000"] + [a for f in files[1:] for a in ("--file", f)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("upload: 1 streams, 1 ok") == 3, p.stdout
    assert "connections: 3, all ok" in p.stdout, p.stdout
