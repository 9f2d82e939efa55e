"""peak h3 ingress --sniff (issue 16, beyond the published design): requests with no
content-type or application/octet-stream are routed by the magic numbers of their body's first
bytes, forwarded with the type found; the qlog's routing event and the metrics say so.

    peak h3 upload --(QUIC)--> peak h3 ingress --sniff --> peak h3 backend audio/* (HTTP/2)
                                                       --> peak h3 backend video/* (HTTP/3)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from conftest import free_tcp_port, upload  # noqa: E402
from test_ingress import scrape  # noqa: E402

OGG = b"OggS\x00\x02" + b"\x00" * 20
MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "


def body(tmp_path, name, head, n):
    (tmp_path / name).write_bytes(head + bytes(range(256)) * (n // 256))


def test_sniffed_routes_qlog_and_metrics(tmp_path, certs, backend_factory, ingress_factory):
    audio = backend_factory(types="audio/*", ident="audio", extra=("--proto", "h2"))
    video = backend_factory(types="video/*", ident="video")
    mport = free_tcp_port()
    qdir = tmp_path / "q"
    qdir.mkdir()
    ing = ingress_factory([f"audio/*=h2://[::1]:{audio.port}",
                           f"video/*=h3://[::1]:{video.port}"],
                          extra=("--sniff", "--metrics", f"127.0.0.1:{mport}",
                                 "--qlog", str(qdir)))
    body(tmp_path, "a.ogg", OGG, 300_000)
    body(tmp_path, "v.mp4", MP4, 100_000)
    body(tmp_path, "w.wav", WAV, 50)           # shorter than the sniffing window
    body(tmp_path, "t.txt", b"plain words ", 1000)
    rc, streams, out, err = upload(ing.url, [str(tmp_path / "a.ogg"), str(tmp_path / "v.mp4"),
                                             f"{tmp_path / 'w.wav'}:application/octet-stream",
                                             str(tmp_path / "t.txt"),
                                             f"{tmp_path / 'a.ogg'}:video/mp4"], certs)
    assert rc == 1, out + err  # t.txt: nothing known, no content-type: 400
    by = {(s["file"], s["type"]): s for s in streams}
    for key, backend in ((("a.ogg", "-"), "audio"), (("v.mp4", "-"), "video"),
                         (("w.wav", "application/octet-stream"), "audio")):
        assert by[key]["status"] == "201" and by[key]["checksum"] == "ok", by[key]
        assert by[key]["backend"] == backend, by[key]
    assert by[("t.txt", "-")]["status"] == "400"
    # a labelled request is routed by its label, not its bytes
    assert by[("a.ogg", "video/mp4")]["backend"] == "video"
    m = scrape(mport)
    assert m['peak_h3_ingress_sniffed_total{ingress="ingress",route="audio/*"}'] == 2
    assert m['peak_h3_ingress_sniffed_total{ingress="ingress",route="video/*"}'] == 1
    assert m['peak_h3_ingress_sniffed_total{ingress="ingress",route="none"}'] == 1
    assert ing.stop() == 0
    (server,) = [f for f in qdir.iterdir() if f.name.endswith("-server.sqlog")]
    recs = [json.loads(r) for r in server.read_text().split("\x1e") if r.strip()]
    routing = [r["data"] for r in recs if r.get("name") == "http:routing"]
    sniffed = {(d["content_type"], d["sniffed"]): d for d in routing if "sniffed" in d}
    assert sniffed[(None, "audio/ogg")]["why"] == "OggS at 0"
    assert sniffed[(None, "audio/ogg")]["route"] == "audio/*"
    assert sniffed[(None, "video/mp4")]["upstream"] == f"[::1]:{video.port}"
    assert sniffed[("application/octet-stream", "audio/wav")]["why"] == "RIFF WAVE at 0"
    assert sniffed[(None, None)]["why"] == "no known signature"
    assert [d for d in routing if d["content_type"] == "video/mp4" and "sniffed" not in d]


def test_without_sniff_untyped_is_400(tmp_path, certs, backend_factory, ingress_factory):
    audio = backend_factory(types="audio/*", ident="audio")
    ing = ingress_factory([f"audio/*=h3://[::1]:{audio.port}"])
    body(tmp_path, "a.ogg", OGG, 1000)
    rc, streams, out, err = upload(ing.url, [str(tmp_path / "a.ogg")], certs)
    assert rc == 1 and streams[0]["status"] == "400", out + err
    assert ing.stop() == 0
