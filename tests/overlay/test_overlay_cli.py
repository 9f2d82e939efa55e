"""peak overlay's command line without a network: --help, key generation, --check of good
and bad configurations (errors name FILE:LINE, exit status 2), and no secret on output."""
import os
import subprocess

PEAK = os.environ.get("PEAK_BIN", "build/peak")


def run(*args):
    return subprocess.run([PEAK, "overlay", *args], capture_output=True, text=True, timeout=20)


def keys(tmp, name):
    path = tmp / f"{name}.key"
    assert run("--genkey", str(path)).returncode == 0
    assert (path.stat().st_mode & 0o777) == 0o600
    pub = run("--pubkey", str(path))
    assert pub.returncode == 0 and len(pub.stdout.strip()) == 64
    return path, pub.stdout.strip()


def config(tmp, key, peer_pub, extra="", prefixes="[fd00:b::/64]"):
    path = tmp / f"c{len(list(tmp.glob('c*.yaml')))}.yaml"
    path.write_text(f"address: fd00:a::1\n{extra}gateway:\n  listen: 0.0.0.0:51820\n"
                    f"  private-key-file: {key}\n  peers:\n    - name: b\n"
                    f"      public-key: {peer_pub}\n      prefixes: {prefixes}\n")
    return path


def test_help_and_usage():
    r = run("--help")
    assert r.returncode == 0 and "--config FILE" in r.stdout
    assert run().returncode == 2
    assert run("--config").returncode == 2
    assert run("--bogus").returncode == 2


def test_genkey_refuses_to_overwrite(tmp_path):
    path, _ = keys(tmp_path, "a")
    before = path.read_text()
    assert run("--genkey", str(path)).returncode == 1
    assert path.read_text() == before


def test_check_good_and_bad(tmp_path):
    a, _ = keys(tmp_path, "a")
    _, pb = keys(tmp_path, "b")
    r = run("--config", str(config(tmp_path, a, pb)), "--check")
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    secret = a.read_text().strip()
    assert secret not in r.stdout + r.stderr
    cases = [
        (config(tmp_path, a, pb, prefixes="[fd00:b::1/64]"), ":8: prefixes"),
        (config(tmp_path, a, pb, extra="mtu: 9000\n"), ":2: mtu"),
        (config(tmp_path, a, pb, extra="bogus: 1\n"), ":2: unknown key 'bogus'"),
        (config(tmp_path, a, "zz" * 32), ":7: public-key"),
        (config(tmp_path, tmp_path / "missing.key", pb), "private-key-file"),
    ]
    for path, want in cases:
        r = run("--config", str(path), "--check")
        assert r.returncode == 2 and want in r.stderr, (want, r.stderr)
    # our own public key as a peer's is refused
    _, pa = keys(tmp_path, "a2")
    a2 = tmp_path / "a2.key"
    r = run("--config", str(config(tmp_path, a2, pa)), "--check")
    assert r.returncode == 2 and "unusable public key" in r.stderr
