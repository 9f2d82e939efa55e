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


def test_dht_section(tmp_path):
    """The dht: section: a certificate from --certify passes --check; a wrong one, a
    missing key, bad values and an unreachable locator are refused with FILE:LINE."""
    a, pa = keys(tmp_path, "a")
    auth, _ = keys(tmp_path, "auth")
    auth_pub = run("--authority-pub", str(auth)).stdout.strip()
    site = run("--site-id", str(a)).stdout.strip()
    assert len(auth_pub) == 64 and len(site) == 128 and site.startswith(pa)
    cert = run("--certify", str(auth), "--site", site, "--prefix", "fd00:a::/64",
               "--prefix", "fd00:a:1::/48")
    assert cert.returncode == 0 and len(cert.stdout.strip()) == 128, cert.stderr
    cert = cert.stdout.strip()

    def conf(body, listen="0.0.0.0:51820"):
        path = tmp_path / f"d{len(list(tmp_path.glob('d*.yaml')))}.yaml"
        path.write_text(f"address: fd00:a::1\ngateway:\n  listen: {listen}\n"
                        f"  private-key-file: {a}\ndht:\n{body}")
        return path

    good = (f"  port: 4222\n  authority: {auth_pub}\n  certificate: {cert}\n"
            f"  prefixes: [fd00:a::/64, fd00:a:1::/48]\n  locator: 10.0.1.2:51820\n")
    r = run("--config", str(conf(good)), "--check")
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    # the locator defaults to a specific listen address
    r = run("--config", str(conf(good.replace("  locator: 10.0.1.2:51820\n", ""),
                                 listen="10.0.1.2:51820")), "--check")
    assert r.returncode == 0, r.stderr
    cases = [
        (good.replace("  locator: 10.0.1.2:51820\n", ""), ":5: dht: 'locator' is required"),
        (good.replace("fd00:a::/64, fd00:a:1::/48", "fd00:a:1::/48, fd00:a::/64"),
         "certificate: not the authority's signature"),
        (good.replace(cert, "00" * 64), "certificate: not the authority's signature"),
        (good.replace(f"  certificate: {cert}\n", ""), ":5: dht: 'port', 'authority'"),
        (good.replace(auth_pub, "xy" * 32), ":7: authority: want 64 hex digits"),
        (good + "  lookup: linear\n", ":11: lookup: want 'bsearch', 'walk' or 'lengths'"),
        (good + "  bootstrap: [somewhere]\n", ":11: bootstrap: want IPV4:PORT"),
        (good.replace("locator: 10.0.1.2:51820", "locator: 0.0.0.0:51820"),
         ":10: locator: 0.0.0.0 cannot be reached"),
        (good.replace("fd00:a::/64, ", "'::/0', "), ":9: prefixes: '::/0'"),
    ]
    for body, want in cases:
        r = run("--config", str(conf(body)), "--check")
        assert r.returncode == 2 and want in r.stderr, (want, r.stderr)
    # --certify's own errors
    assert run("--certify", str(auth), "--site", "00", "--prefix", "fd00::/8").returncode == 2
    assert run("--certify", str(auth), "--site", site).returncode == 2
