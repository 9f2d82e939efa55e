"""The Debian packages (debian/, README "Installing"): 'dpkg-buildpackage -b -us -uc' on a copy
of the tree succeeds, 'dpkg -c' lists exactly what 'make install' installs with PREFIX=/usr
(split into peak, libnss-peak and libpeak-dev), lintian reports no error or warning, and
installing starts nothing (no unit enabled or started by the maintainer scripts; the user is
made by adduser). libnss-peak's scripts never write /etc/nsswitch.conf; its prerm says so when
the hosts line still lists 'peak' at removal (run against such a file, bind-mounted over
/etc/nsswitch.conf in a mount namespace of its own).

A full build (about 1.5 minutes on 2 cores): run in the plain build's 'install' suite only."""
import hashlib
import os
import shutil
import subprocess
import tempfile

import re

import pytest

from test_install import SRC, UNITS, man_pages

LIB = "usr/lib/x86_64-linux-gnu"


def tree_files(src):
    if os.path.isdir(os.path.join(src, ".git")) or os.path.isfile(os.path.join(src, ".git")):
        out = subprocess.run(["git", "-C", src, "ls-files", "-co", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout.split("\n")
        return [f for f in out if f and not f.startswith("build")]
    out = []
    for d, dirs, files in os.walk(src):
        dirs[:] = [x for x in dirs if not (d == src and x.startswith("build"))]
        out += [os.path.relpath(os.path.join(d, f), src) for f in files]
    return out


@pytest.fixture(scope="module")
def debs():
    if not shutil.which("dh"):
        pytest.fail("debhelper is missing (scripts/deps.sh installs it)")
    top = tempfile.mkdtemp(prefix="peak-deb-")
    try:
        tree = os.path.join(top, "peak")
        for f in tree_files(SRC):
            if os.path.isfile(os.path.join(SRC, f)):
                os.makedirs(os.path.dirname(os.path.join(tree, f)), exist_ok=True)
                shutil.copy2(os.path.join(SRC, f), os.path.join(tree, f))
        r = subprocess.run(["dpkg-buildpackage", "-b", "-us", "-uc"], cwd=tree,
                           capture_output=True, text=True, timeout=1200,
                           env=dict(os.environ, DEB_BUILD_OPTIONS="parallel=2"))
        assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def listing(deb):
    out = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True,
                         check=True).stdout
    names = subprocess.run(["tar", "-t"], input=out, capture_output=True, check=True)
    return {n[2:] for n in names.stdout.decode().split("\n") if n and not n.endswith("/")}


def test_packages_hold_what_make_install_installs(debs):
    peak = {
        "etc/peak/peak.yaml", "usr/bin/peak",
        *(f"usr/lib/systemd/system/{u}" for u in UNITS),
        "usr/lib/sysusers.d/peak.conf", "usr/share/bash-completion/completions/peak",
        "usr/share/peak/grafana/peak.json",
        "usr/share/doc/peak/changelog.gz", "usr/share/doc/peak/copyright",
        *(f"usr/share/man/man1/{m}.1.gz" for m in man_pages()),
    }
    dev = {
        *(f"usr/include/peak/{h}" for h in os.listdir(os.path.join(SRC, "include/peak"))),
        f"{LIB}/libpeak.a", f"{LIB}/libpeakclient.a", f"{LIB}/libpeaksys.a",
        f"{LIB}/pkgconfig/peak.pc",
        "usr/share/doc/libpeak-dev/changelog.gz", "usr/share/doc/libpeak-dev/copyright",
    }
    nss = {
        f"{LIB}/libnss_peak.so.2", "usr/share/doc/libnss-peak/README.Debian",
        "usr/share/doc/libnss-peak/changelog.gz", "usr/share/doc/libnss-peak/copyright",
    }
    assert listing(os.path.join(debs, "peak_0.1.0_amd64.deb")) == peak
    assert listing(os.path.join(debs, "libnss-peak_0.1.0_amd64.deb")) == nss
    assert listing(os.path.join(debs, "libpeak-dev_0.1.0_amd64.deb")) == dev
    # the units name the installed binary
    unit = subprocess.run(["dpkg-deb", "--fsys-tarfile",
                           os.path.join(debs, "peak_0.1.0_amd64.deb")], capture_output=True,
                          check=True).stdout
    text = subprocess.run(["tar", "-xO", "./usr/lib/systemd/system/peak-dns.service"],
                          input=unit, capture_output=True, check=True).stdout.decode()
    assert "ExecStart=/usr/bin/peak dns " in text


def test_installing_starts_nothing(debs, tmp_path):
    subprocess.run(["dpkg-deb", "-e", os.path.join(debs, "peak_0.1.0_amd64.deb"),
                    str(tmp_path / "ctl")], check=True)
    scripts = "".join((tmp_path / "ctl" / f).read_text()
                      for f in ("postinst", "prerm", "postrm")
                      if (tmp_path / "ctl" / f).exists())
    assert "adduser --system" in scripts
    for starts in ("deb-systemd-invoke", "systemctl start", "deb-systemd-helper enable"):
        assert starts not in scripts
    conffiles = (tmp_path / "ctl" / "conffiles").read_text().split()
    assert conffiles == ["/etc/peak/peak.yaml"]
    depends = subprocess.run(["dpkg-deb", "-f", os.path.join(debs, "peak_0.1.0_amd64.deb"),
                              "Depends"], capture_output=True, text=True, check=True).stdout
    assert "adduser" in depends


def field(deb, name):
    return subprocess.run(["dpkg-deb", "-f", deb, name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_nss_package_leaves_nsswitch_to_the_administrator(debs, tmp_path):
    deb = os.path.join(debs, "libnss-peak_0.1.0_amd64.deb")
    assert field(deb, "Multi-Arch") == "same"
    assert "libnss-peak" in field(os.path.join(debs, "peak_0.1.0_amd64.deb"), "Suggests")
    ctl = tmp_path / "ctl"
    subprocess.run(["dpkg-deb", "-e", deb, str(ctl)], check=True)
    scripts = {f: (ctl / f).read_text() for f in ("preinst", "postinst", "prerm", "postrm")
               if (ctl / f).exists()}
    assert "prerm" in scripts
    writes = re.compile(r"\b(sed|perl|awk|tee|mv|cp|ln|rm|install)\b[^;&|]*nsswitch"
                        r"|>>?\s*\S*nsswitch")
    for name, text in scripts.items():
        code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
        assert not writes.search(code), (name, text)
    # the prerm, against a hosts line that lists peak and one that does not
    for hosts, says in (("hosts: files peak [NOTFOUND=return] dns\n", True),
                        ("hosts: files mdns4_minimal dns # not peak\n", False)):
        conf = tmp_path / "nsswitch.conf"
        conf.write_text("passwd: files\n" + hosts)
        before = hashlib.sha256(conf.read_bytes()).hexdigest()
        r = subprocess.run(["unshare", "-m", "sh", "-c",
                            f"mount --bind {conf} /etc/nsswitch.conf && "
                            f"sh {ctl / 'prerm'} remove"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert ("still lists 'peak'" in r.stderr) == says, (hosts, r.stderr)
        assert hashlib.sha256(conf.read_bytes()).hexdigest() == before
    # and the package documents how to enable it
    doc = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True,
                         check=True).stdout
    readme = subprocess.run(["tar", "-xO", "./usr/share/doc/libnss-peak/README.Debian"],
                            input=doc, capture_output=True, check=True).stdout.decode()
    assert "hosts: files peak dns" in readme


def test_lintian_has_no_error_or_warning(debs):
    if not shutil.which("lintian"):
        pytest.fail("lintian is missing (scripts/deps.sh installs it)")
    r = subprocess.run(["lintian", "--fail-on", "error,warning", "peak_0.1.0_amd64.changes"],
                       cwd=debs, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [line for line in r.stdout.splitlines() if line[:2] in ("E:", "W:")], r.stdout
    # all three packages were checked
    for pkg in ("peak", "libnss-peak", "libpeak-dev"):
        assert f"{pkg}_0.1.0_amd64.deb" in open(os.path.join(debs, "peak_0.1.0_amd64.changes"))\
            .read(), pkg
