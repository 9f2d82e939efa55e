"""The peak command as a user runs it: every subcommand, its --help, the SPEC.md vectors,
exit codes, one-line errors for bad input; APL output cross-checked with dnspython."""
import os
import re
import subprocess

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.wire
import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")
SRC = os.environ.get("PEAK_SRC", ".")
K = "000102030405060708090a0b0c0d0e0f"
S = "f0e0d0c0b0a090807060504030201000"
SOURCE = "2001:db8:aa:bb::1"


def peak(*args, check=None):
    p = subprocess.run([PEAK, *args], capture_output=True, text=True, timeout=60)
    if check is not None:
        assert p.returncode == check, (args, p.returncode, p.stdout, p.stderr)
    return p


def one_line_error(p):
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("peak "), lines[0]
    return lines[0]


VECTORS = [
    ("slice=78; select=src; host=src", [], "2001:db8:5:0:a94a:ac01:8d:78fe"),
    ("slice=78; select=src; host=src; fanout=4", ["--index", "3"], "2001:db8:5:0:a5:2379:4097:c03"),
    ("slice=78; select=obj; host=src", ["--object", "videos/cat.mp4"],
     "2001:db8:5:0:a7b:4da0:eb5d:78fb"),
    ("slice=78; select=obj; host=src", ["--object", "videos/cat.mp4", "--replica", "1"],
     "2001:db8:5:0:e9ef:75ef:c305:fbf5"),
    ("slice=78; select=hop; host=hop; period=30", ["--time", "1767225600", "--secret", S],
     "2001:db8:5:0:94fa:aa89:ed7e:ea37"),
    ("slice=78; select=src; host=src; pow=12; nonce=16", [], "2001:db8:5:0:a949:8d:78fe:1541"),
]


@pytest.mark.parametrize("desc,extra,want", VECTORS)
def test_spec_vectors(desc, extra, want):
    d = f"v=ssa1; key={K}; {desc}"
    p = peak("ssa", "compute", "--prefix", "2001:db8:5::/64", "--descriptor", d,
             "--source", SOURCE, *extra, check=0)
    assert p.stdout == want + "\n"
    extra_check = [a for i, a in enumerate(extra)
                   if extra[i] not in ("--object", "--replica", "--index")
                   and (i == 0 or extra[i - 1] not in ("--object", "--replica", "--index"))]
    p = peak("ssa", "check", "--prefix", "2001:db8:5::/64", "--descriptor", d,
             "--source", SOURCE, "--destination", want, *extra_check, check=0)
    assert p.stdout == "pass\n"


def test_hop_secret_file(tmp_path):
    f = tmp_path / "secret"
    f.write_text(S + "\n")
    d = f"v=ssa1; key={K}; slice=78; select=hop; host=hop; period=30"
    p = peak("ssa", "compute", "--prefix", "2001:db8:5::/64", "--descriptor", d, "--source",
             SOURCE, "--time", "1767225600", "--secret-file", str(f), check=0)
    assert p.stdout.strip() == "2001:db8:5:0:94fa:aa89:ed7e:ea37"
    assert S not in p.stdout + p.stderr
    f.write_text("nothex")
    err = one_line_error(peak("ssa", "compute", "--prefix", "2001:db8:5::/64", "--descriptor",
                              d, "--source", SOURCE, "--secret-file", str(f)))
    assert "32 hex digits" in err and "nothex" not in err


SPEC_D = f"v=ssa1; key={K}; slice=78; select=src; host=src"


@pytest.mark.parametrize("src,dst,out", [
    ("2001:db8:aa:bc::1", "2001:db8:5:0:a94a:ac01:8d:78fe", "reject: slice\n"),
    (SOURCE, "2001:db8:5::1", "reject: slice\n"),
    (SOURCE, "2001:db8:5:0:a94a:ac01:8d:78ff", "reject: host\n"),
    (SOURCE, "2001:db8:7::1", "outside\n"),
])
def test_check_rejects(src, dst, out):
    p = peak("ssa", "check", "--prefix", "2001:db8:5::/64", "--descriptor", SPEC_D,
             "--source", src, "--destination", dst, check=1)
    assert p.stdout == out


def test_check_fanout_and_pow():
    d = f"v=ssa1; key={K}; slice=78; select=src; host=src; fanout=4"
    p = peak("ssa", "check", "--prefix", "2001:db8:5::/64", "--descriptor", d, "--source",
             SOURCE, "--destination", "2001:db8:5:0:a5:2379:4097:c04", check=1)
    assert p.stdout == "reject: fanout\n"
    d = f"v=ssa1; key={K}; slice=78; select=src; host=src; pow=12; nonce=16"
    p = peak("ssa", "check", "--prefix", "2001:db8:5::/64", "--descriptor", d, "--source",
             SOURCE, "--destination", "2001:db8:5:0:a949:8d:78fe:0", check=1)
    assert p.stdout == "reject: pow\n"


def test_two_prefixes_rand():
    d = "v=ssa1; slice=72"
    seen = set()
    for _ in range(40):
        p = peak("ssa", "compute", "--prefix", "2001:db8:5::/64", "--prefix", "2001:db8:6::/64",
                 "--descriptor", d, "--source", SOURCE, check=0)
        seen.add(p.stdout.split(":")[2])
        a = p.stdout.strip()
        peak("ssa", "check", "--prefix", "2001:db8:5::/64", "--prefix", "2001:db8:6::/64",
             "--descriptor", d, "--source", SOURCE, "--destination", a, check=0)
    assert seen == {"5", "6"}  # both prefixes are used (2^-39 chance to fail)


@pytest.mark.parametrize("args,want", [
    (["--descriptor", SPEC_D, "--source", SOURCE], "--prefix is required"),
    (["--prefix", "2001:db8:5::/64", "--source", SOURCE], "--descriptor is required"),
    (["--prefix", "2001:db8:5::/64", "--descriptor", SPEC_D], "--source is required"),
    (["--prefix", "2001:db8:5::1/64", "--descriptor", SPEC_D, "--source", SOURCE], "--prefix"),
    (["--prefix", "2001:db8:5::/64", "--descriptor", "v=ssa1; slice=200", "--source", SOURCE],
     "bad value '200' for slice"),
    (["--prefix", "2001:db8:5::/64", "--descriptor", SPEC_D, "--source", "10.0.0.1"],
     "not an IPv6 address"),
    (["--prefix", "2001:db8:5::/64", "--descriptor", SPEC_D, "--source", SOURCE, "--index", "x"],
     "not a number"),
    (["--prefix", "2001:db8:5::/64", "--descriptor", SPEC_D, "--source", SOURCE, "--index", "1"],
     "not below fanout=1"),
    (["--prefix", "2001:db8:5::/64", "--descriptor", SPEC_D, "--source", SOURCE, "--bogus"],
     "unknown or incomplete option"),
    (["--prefix", "2001:db8:5::/64", "--descriptor", SPEC_D.replace("select=src", "select=obj"),
      "--source", SOURCE], "needs --object"),
    (["--prefix", "2001:db8:5::/64", "--descriptor", SPEC_D.replace("select=src", "select=hop"),
      "--source", SOURCE], "need --secret"),
    (["--prefix", "2001:db8:5::/48", "--prefix", "2001:db8:6::/64", "--descriptor", SPEC_D,
      "--source", SOURCE], "unequal length"),
])
def test_compute_bad_args(args, want):
    err = one_line_error(peak("ssa", "compute", *args))
    assert want in err, err


def test_check_bad_args():
    err = one_line_error(peak("ssa", "check", "--prefix", "2001:db8:5::/64", "--descriptor",
                              SPEC_D, "--source", SOURCE))
    assert "--destination is required" in err
    err = one_line_error(peak("ssa", "check", "--prefix", "2001:db8:5::/64", "--descriptor",
                              SPEC_D, "--source", SOURCE, "--destination", "zz"))
    assert "--destination" in err


@pytest.mark.parametrize("cmd", [[], ["ssa"], ["ssa", "compute"], ["ssa", "check"], ["apl"],
                                 ["plan"], ["dns"], ["dns-ctl"], ["resolve"], ["connect"],
                                 ["serve"], ["agent"], ["controller"], ["filter"]])
def test_help(cmd):
    p = peak(*cmd, "--help", check=0)
    assert p.stdout.startswith("usage: peak"), p.stdout
    assert p.stderr == ""


def test_usage_errors():
    assert peak().returncode == 2
    one_line_error_multi = peak("frobnicate")
    assert one_line_error_multi.returncode == 2
    assert "unknown command 'frobnicate'" in one_line_error_multi.stderr
    assert "unknown subcommand" in one_line_error(peak("ssa", "frob"))
    assert peak("--version", check=0).stdout.startswith("peak ")


@pytest.mark.parametrize("opt,val", [("--hc-interval", "5"), ("--hc-fast-interval", "0"),
                                     ("--hc-fast-interval", "x"), ("--hc-down", "0"),
                                     ("--hc-up", "101"), ("--app-load-dir", "/nonexistent")])
def test_agent_check_options_out_of_range(opt, val):
    err = one_line_error(peak("agent", "--config", "/nonexistent.yaml", "--node", "n1", opt, val))
    assert opt in err


# ---- APL ----

APL_TEXTS = [
    "2:2001:db8:5::/64",
    "1:192.168.32.0/21 !1:192.168.38.0/28 2:2001:db8::/32",
    "1:0.0.0.0/0 2:::/0",
    "2:2001:db8:5::/64 2:2001:db8:6::/64",
    "!2:fe80::/10 1:10.0.0.1/32",
]


def dnspython_apl(hexdata):
    rd = dns.rdata.from_wire_parser(dns.rdataclass.IN, dns.rdatatype.APL,
                                    dns.wire.Parser(bytes.fromhex(hexdata)))
    return rd


@pytest.mark.parametrize("text", APL_TEXTS)
def test_apl_roundtrip_against_dnspython(text):
    hexdata = peak("apl", "encode", text, check=0).stdout.strip()
    # our bytes equal dnspython's encoding of the same text
    want = dns.rdata.from_text("IN", "APL", text).to_digestable()
    assert bytes.fromhex(hexdata) == want
    # dnspython reads our bytes back to the same text
    assert dnspython_apl(hexdata).to_text() == text
    # and we read dnspython's bytes back to the same text
    assert peak("apl", "decode", want.hex(), check=0).stdout.strip() == text


def test_apl_masks_host_bits():
    hexdata = peak("apl", "encode", "2:2001:db8::1/32", check=0).stdout.strip()
    assert hexdata == "0002200420010db8"
    # a wire item with bits past the prefix decodes masked
    assert peak("apl", "decode", "0002201020010db8000000000000000000000001",
                check=0).stdout.strip() == "2:2001:db8::/32"


def test_apl_unknown_family_generic():
    p = peak("apl", "decode", "00070883aabbcc", check=0)
    assert p.stdout.strip() == "\\# 7 00070883aabbcc"
    assert peak("apl", "encode", "\\# 7 00070883aabbcc", check=0).stdout.strip() == "00070883aabbcc"


@pytest.mark.parametrize("hexdata,why", [
    ("0002", "malformed"),
    ("0002400320", "malformed"),
    ("0002801120010db8000000000000000000000000", "malformed"),
    ("0002810220010db8", "malformed"),
    ("000240", "malformed"),
    ("0g", "not a hex digit"),
    ("000", "odd number"),
])
def test_apl_decode_errors(hexdata, why):
    assert why in one_line_error(peak("apl", "decode", hexdata))


@pytest.mark.parametrize("text,why", [
    ("3:1.2.3.4/8", "want"),
    ("2:2001:db8::/129", "bad address"),
    ("1:2001:db8::/32", "does not match family"),
    ("2:2001:db8::", "bad address"),
])
def test_apl_encode_errors(text, why):
    assert why in one_line_error(peak("apl", "encode", text))


# ---- plan ----

def test_plan_example():
    p = peak("plan", "--config", os.path.join(SRC, "examples/peak.yaml"), check=0)
    rows = re.findall(r"^  (pod-\w)\s+(\d+)\s+(\d+)\s+([\d.]+)%\s+(\d+)$", p.stdout, re.M)
    assert [r[0] for r in rows] == ["pod-a", "pod-b", "pod-c", "pod-d"]
    assert all(r[2] == "4096" and r[4] == "1" for r in rows)
    assert "max/min slices per weight 1.0000" in p.stdout
    assert "routes: 4 in all" in p.stdout


def test_plan_changes():
    p = peak("plan", "--config", os.path.join(SRC, "examples/peak.yaml"), "--remove", "pod-b",
             "--add", "pod-e", "--add", "pod-f:2", "--summary", check=0)
    assert "remove pod-b: 4096 slices moved" in p.stdout
    assert "the least possible is what it held: 4096" in p.stdout
    m = re.search(r"add pod-e \(weight 1\): (\d+) slices moved.*what it receives: (\d+)", p.stdout)
    assert m and m.group(1) == m.group(2) == "4096"
    m = re.search(r"add pod-f \(weight 2\): (\d+) slices moved.*what it receives: (\d+)", p.stdout)
    assert m and m.group(1) == m.group(2)
    assert "pod-a " not in p.stdout  # --summary: no per-endpoint lines


def test_plan_errors(tmp_path):
    ex = os.path.join(SRC, "examples/peak.yaml")
    assert "--config is required" in one_line_error(peak("plan"))
    assert "no such endpoint" in peak("plan", "--config", ex, "--remove", "nope").stderr
    assert peak("plan", "--config", ex, "--remove", "nope").returncode == 2
    assert "endpoint exists" in peak("plan", "--config", ex, "--add", "pod-a").stderr
    assert "no service" in peak("plan", "--config", ex, "--service", "x.svc.example.").stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(ex).read().replace("slice: 78", "slice: 78\n    colour: red"))
    err = one_line_error(peak("plan", "--config", str(bad)))
    assert f"{bad}:" in err and "unknown key 'colour'" in err
    assert "cannot open" in one_line_error(peak("plan", "--config", str(tmp_path / "none")))
