"""Regression: the DNS bench smoke run (tests/bench) failed on a fresh machine: NSD and Knot
were not in scripts/deps.sh, so bench/dns/run.sh tried apt-get inside the test's network
namespace, which has no route out. Every package a bench or test script installs or names
as missing must be in deps.sh, which 'make test' runs first, with the network."""
import os
import re

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def deps_packages():
    text = open(os.path.join(ROOT, "scripts", "deps.sh")).read()
    pkgs = set()
    for m in re.finditer(r'PKGS="([^"]*)"', text):
        pkgs.update(w for w in m.group(1).split() if w != "$PKGS")
    return pkgs


def wanted_packages():
    """(file, package) for every 'apt-get install ...' a bench/test script runs or asks for."""
    out = []
    for top in ("bench", "tests"):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if not f.endswith((".sh", ".py")) or f == os.path.basename(__file__):
                    continue
                path = os.path.join(d, f)
                for line in open(path, errors="replace"):
                    for m in re.finditer(r"apt-get install((?: +-{1,2}[\w-]+)*)((?: +[a-z0-9][\w.+-]*)+)", line):
                        for p in m.group(2).split():
                            out.append((os.path.relpath(path, ROOT), p))
    return out


def test_every_installed_package_is_a_dependency():
    have = deps_packages()
    assert "nsd" in have and "knot" in have
    want = wanted_packages()
    assert any(p == "nsd" for _, p in want), "the scan no longer sees bench/dns/run.sh"
    missing = sorted({(f, p) for f, p in want if p not in have})
    assert not missing, f"packages installed by scripts but not in scripts/deps.sh: {missing}"
