"""peak overlay --check of the part-2 sections (resiliency:, anycast:) without a network: good
ones pass, bad ones are refused with FILE:LINE and exit status 2."""
import hashlib

from test_overlay_cli import keys, run


def conf(tmp, key, pb, pc, extra, c_prefixes="[fd00:c::/64, fd00:ac::/64]"):
    path = tmp / f"p2-{len(list(tmp.glob('p2-*.yaml')))}.yaml"
    path.write_text(f"address: fd00:a::1\ngateway:\n  listen: 0.0.0.0:51820\n"
                    f"  private-key-file: {key}\n  peers:\n"
                    f"    - name: b\n      public-key: {pb}\n"
                    f"      prefixes: [fd00:b::/64, fd00:ac::/64]\n"
                    f"    - name: c\n      public-key: {pc}\n      prefixes: {c_prefixes}\n"
                    + extra)
    return path


ANY = "anycast:\n  - prefix: fd00:ac::/64\n    sites: [b, c]\n"


def test_resiliency_and_anycast_sections(tmp_path):
    a, _ = keys(tmp_path, "a")
    # peers' public keys: any 32 bytes but a few low-order points (no key generation: each
    # run of the ASan build takes a second on a loaded machine)
    pb, pc = (hashlib.sha256(n).hexdigest() for n in (b"b", b"c"))
    for good in ("resiliency:\n  dead-ms: 300\n  budget: 400\n" + ANY,
                 "resiliency:\n  degraded-pct: 0\n", "resiliency:\n  degraded-pct: 100\n"
                 "  late-ms: 10\n"):
        r = run("--config", str(conf(tmp_path, a, pb, pc, good)), "--check")
        assert (r.returncode, r.stdout) == (0, "ok\n"), (good, r.stderr)
    cases = [
        ("resiliency:\n  dead-ms: 100\n", ":13: dead-ms: 100 is outside 300..10000"),
        ("resiliency:\n  budget: 50\n", ":13: budget: 50 is outside 400..100000"),
        ("resiliency:\n  degraded-pct: 4\n", ":13: degraded-pct: want 0 (off) or 5..100"),
        ("resiliency:\n  degraded-pct: 101\n", ":13: degraded-pct: 101 is outside 0..100"),
        ("resiliency:\n  late-ms: 9\n", ":13: late-ms: 9 is outside 10..10000"),
        ("resiliency:\n  late-ms: x\n", ":13: late-ms: 'x' is not a number"),
        (ANY, "anycast: needs 'resiliency'"),
        ("resiliency: {}\nanycast:\n  - prefix: fd00:ac::/64\n    sites: [b]\n",
         ":15: sites: want 2..16 peers"),
        ("resiliency: {}\nanycast:\n  - prefix: fd00:ac::1/64\n    sites: [b, c]\n",
         ":14: prefix: 'fd00:ac::1/64' is not an IPv6 prefix"),
        ("resiliency: {}\nanycast:\n  - prefix: fd00:ac::/64\n    sites: [b, z]\n",
         "anycast fd00:ac::/64: 'z' is not a configured peer"),
    ]
    for extra, want in cases:
        r = run("--config", str(conf(tmp_path, a, pb, pc, extra)), "--check")
        assert r.returncode == 2 and want in r.stderr, (extra, want, r.stderr)
    # a site that does not list the prefix: its answers would be dropped
    r = run("--config", str(conf(tmp_path, a, pb, pc, "resiliency: {}\n" + ANY,
                                 c_prefixes="[fd00:c::/64]")), "--check")
    assert r.returncode == 2 and "peer 'c' does not list it" in r.stderr, r.stderr
