"""'make install' into a temporary DESTDIR (README "Installing"), then what it installed:

- the file list, exactly; an operator's /etc/peak/peak.yaml is never overwritten;
- the systemd units pass 'systemd-analyze verify' with nothing to say, and each one's
  'systemd-analyze security --offline' figure is the one README "Installing" gives;
- each daemon started exactly as its unit's ExecStart line says (its variables expanded as
  systemd would with no /etc/default file, the paths under the DESTDIR, /run and /var/lib
  directories made as RuntimeDirectory/StateDirectory would), as the unit's user and with only
  the unit's capabilities (setpriv), in a network namespace of its own, with NOTIFY_SOCKET at a
  datagram socket of the test's (what Type=notify gives it): it sends READY=1 from its main
  process (NotifyAccess=main) once it answers its ready condition, RELOADING=1 with a current
  MONOTONIC_USEC then READY=1 around each SIGHUP (ExecReload) with a reload logged, the same
  with a STATUS= that says so around a SIGHUP whose configuration is refused (still serving),
  and STOPPING=1 on SIGTERM, then exits 0;
- the bash completion offers every command, sub-command and nested sub-command ('peak filter
  signature add') and every option of the --help at each level (bash itself runs it).

Root: network namespaces, setpriv. A 'peak' system user is made for the test when the machine
has none (what the sysusers.d entry makes at install), and removed after."""
import glob
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time

import pytest

PEAK = os.path.abspath(os.environ.get("PEAK_BIN", "build/peak"))
BUILD = os.path.dirname(PEAK)
SRC = os.environ.get("PEAK_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
PREFIX = "/usr/local"
UNITDIR = "usr/local/lib/systemd/system"
# the daemons that reload on SIGHUP (ExecReload=) first; the others ignore SIGHUP and have none
RELOADING = ["peak-dns.service", "peak-controller.service", "peak-agent@.service"]
UNITS = RELOADING + ["peak-overlay@.service", "peak-h3-backend@.service",
                     "peak-h3-ingress@.service", "peak-store@.service"]
# what README "Installing" calls each template's instance
INSTANCE = {"peak-agent@.service": "NODE", "peak-overlay@.service": "SITE",
            "peak-h3-backend@.service": "NAME", "peak-h3-ingress@.service": "NAME",
            "peak-store@.service": "ID"}


def wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def make_install(destdir):
    return subprocess.run(["make", "-C", SRC, "--no-print-directory", "install-only",
                           f"BUILD={BUILD}", f"DESTDIR={destdir}"],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def root():
    # readable by the unprivileged user the daemons run as (tmp_path's parents are 0700)
    d = tempfile.mkdtemp(prefix="peak-install-")
    os.chmod(d, 0o755)
    try:
        r = make_install(d)
        assert r.returncode == 0, r.stdout + r.stderr
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def libdir(root):
    hits = glob.glob(os.path.join(root, "usr/local/lib/*/libnss_peak.so.2")) + \
        glob.glob(os.path.join(root, "usr/local/lib/libnss_peak.so.2"))
    assert len(hits) == 1, hits
    return os.path.relpath(os.path.dirname(hits[0]), root)


def man_pages():
    """The pages the help text calls for: peak, peak-CMD, peak-CMD-SUB for commands whose
    help sends to 'peak CMD COMMAND --help'."""
    out = ["peak"]
    for cmd in commands(helptext()):
        out.append(f"peak-{cmd}")
        text = helptext(cmd)
        if f"Run 'peak {cmd} COMMAND --help'" in text:
            out += [f"peak-{cmd}-{w}" for w in commands(text)]
    return out


def commands(text):
    return re.findall(r"^  ([a-z][a-z0-9-]*) ", text.split("Commands:", 1)[1], re.M)


def test_file_list(root):
    lib = libdir(root)
    headers = sorted(os.listdir(os.path.join(SRC, "include/peak")))
    want = {
        "etc/peak/peak.yaml",
        "usr/local/bin/peak",
        f"{lib}/libnss_peak.so.2",
        f"{lib}/libpeak.a",
        f"{lib}/libpeakclient.a",
        f"{lib}/libpeaksys.a",
        f"{lib}/pkgconfig/peak.pc",
        "usr/local/lib/sysusers.d/peak.conf",
        "usr/local/share/bash-completion/completions/peak",
        "usr/local/share/peak/grafana/peak.json",
        *(f"{UNITDIR}/{u}" for u in UNITS),
        *(f"usr/local/include/peak/{h}" for h in headers),
        *(f"usr/local/share/man/man1/{m}.1" for m in man_pages()),
    }
    got = set()
    for d, _, files in os.walk(root):
        got |= {os.path.relpath(os.path.join(d, f), root) for f in files}
    assert got == want
    assert "peak.h" in headers
    assert os.access(os.path.join(root, "usr/local/bin/peak"), os.X_OK)
    ver = subprocess.run([os.path.join(root, "usr/local/bin/peak"), "--version"],
                         capture_output=True, text=True)
    assert ver.returncode == 0 and ver.stdout.startswith("peak ")
    pc = open(os.path.join(root, lib, "pkgconfig/peak.pc")).read()
    assert "prefix=/usr/local" in pc and "-lpeakclient" in pc
    for u in UNITS:
        text = open(os.path.join(root, UNITDIR, u)).read()
        assert "@BINDIR@" not in text, u
        assert re.search(r"^ExecStart=/usr/local/bin/peak ", text, re.M), u
        if u in RELOADING:
            assert re.search(r"^ExecReload=kill -HUP \$MAINPID$", text, re.M), u
        else:
            assert "ExecReload=" not in text, u
        assert re.search(r"^Type=notify\nNotifyAccess=main$", text, re.M), u


def test_config_is_never_overwritten(root):
    conf = os.path.join(root, "etc/peak/peak.yaml")
    with open(conf, "a") as f:
        f.write("# an operator's edit\n")
    try:
        r = make_install(root)
        assert r.returncode == 0, r.stdout + r.stderr
        assert open(conf).read().endswith("# an operator's edit\n")
    finally:
        shutil.copy(os.path.join(SRC, "examples/peak.yaml"), conf)


def unit_fields(root, unit):
    """{key: [values]} of the unit's [Service] and [Unit] lines."""
    out = {}
    for line in open(os.path.join(root, UNITDIR, unit)):
        m = re.match(r"^(\w+)=(.*)$", line.rstrip("\n"))
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def test_units_verify(root, tmp_path):
    # verify checks that ExecStart's binary exists: point the copies at the staged one
    for u in UNITS:
        text = open(os.path.join(root, UNITDIR, u)).read()
        (tmp_path / u).write_text(text.replace(f"{PREFIX}/bin/peak",
                                               os.path.join(root, "usr/local/bin/peak")))
    names = [str(tmp_path / u).replace("@.service", "@node1.service") for u in UNITS]
    # Documentation=man:... is looked up with man(1): in the staged pages
    env = dict(os.environ, MANPATH=os.path.join(root, "usr/local/share/man"))
    r = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60, env=env)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_readme_gives_each_units_security_exposure(root, tmp_path):
    """README "Installing" states each unit's 'systemd-analyze security --offline=yes' figure:
    it must be the one the installed unit gets."""
    readme = open(os.path.join(SRC, "README.md")).read()
    for u in UNITS:
        text = open(os.path.join(root, UNITDIR, u)).read()
        name = u.replace("@.service", "@node1.service")
        (tmp_path / name).write_text(text.replace(f"{PREFIX}/bin/peak",
                                                  os.path.join(root, "usr/local/bin/peak")))
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(tmp_path / name)],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", r.stdout)
        assert m, r.stdout + r.stderr
        shown = u.split(".")[0].replace("@", "@" + INSTANCE.get(u, ""))
        row = re.search(rf"^\| `{re.escape(shown)}` \|.*\| "
                        r"(\d+\.\d) (\w+) \|$", readme, re.M)
        assert row, u
        assert row.groups() == m.groups(), (u, row.groups(), m.groups())


@pytest.fixture(scope="module")
def peak_user():
    """The 'peak' user and group the units name (sysusers.d/peak.conf), made when missing."""
    made = subprocess.run(["getent", "passwd", "peak"], capture_output=True).returncode != 0
    if made:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/var/lib/peak", "--shell", "/usr/sbin/nologin", "peak"],
                       check=True)
    try:
        yield
    finally:
        if made:
            subprocess.run(["userdel", "peak"], check=False)
            subprocess.run(["groupdel", "peak"], capture_output=True, check=False)


def command_line(root, unit, key, instance, rundir):
    """The unit's KEY= command as systemd would run it here: Environment= defaults, no
    EnvironmentFile (all optional), '$X' split into words, '${X}' one word, %i the instance;
    installed paths mapped into the DESTDIR and /run, /var/lib into rundir. An EnvironmentFile
    (optional or not) is read from the DESTDIR when the test wrote one there."""
    f = unit_fields(root, unit)
    env = dict(e.split("=", 1) for e in f.get("Environment", []))
    for path in f.get("EnvironmentFile", []):
        path = os.path.join(root, path.lstrip("-").replace("%i", instance).lstrip("/"))
        if os.path.exists(path):
            env.update(ln.split("=", 1) for ln in open(path).read().splitlines()
                       if "=" in ln and not ln.startswith("#"))
    words = []
    for w in shlex.split(f[key][0]):
        w = w.replace("%i", instance)
        m = re.fullmatch(r"\$(\w+)", w)
        if m:
            words += env.get(m.group(1), "").split()
            continue
        w = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), w)
        w = w.replace(f"{PREFIX}/bin/peak", os.path.join(root, "usr/local/bin/peak"))
        w = w.replace("/etc/peak/", os.path.join(root, "etc/peak") + "/")
        w = re.sub(r"^/(run|var/lib)/", lambda m: os.path.join(rundir, m.group(1)) + "/", w)
        words.append(w)
    return words


def setpriv(root, unit):
    """setpriv arguments for the unit's User=, Group= and capabilities."""
    f = unit_fields(root, unit)
    caps = " ".join(f.get("CapabilityBoundingSet", [""])).split()
    capset = ",".join(["-all"] + ["+" + c[4:].lower() for c in caps])
    args = ["setpriv", "--bounding-set", capset, "--inh-caps", capset]
    if "User" in f:
        args += ["--reuid", f["User"][0], "--regid", f["Group"][0], "--init-groups"]
        if caps:
            args += ["--ambient-caps", ",".join("+" + c[4:].lower() for c in caps)]
    if f.get("NoNewPrivileges") == ["yes"]:
        args.append("--no-new-privs")
    return args


def make_dirs(root, unit, instance, rundir):
    """RuntimeDirectory= and StateDirectory=, owned by the unit's user, as systemd makes them."""
    f = unit_fields(root, unit)
    user = f.get("User", ["root"])[0]
    for key, base in (("RuntimeDirectory", "run"), ("StateDirectory", "var/lib")):
        for name in f.get(key, []):
            d = os.path.join(rundir, base, name.replace("%i", instance))
            os.makedirs(d)
            mode = f.get(key + "Mode", ["0755"])[0]
            os.chmod(d, int(mode, 8))
            shutil.chown(d, user, f.get("Group", [user])[0])


# no dummy driver here: a veth pair, both ends in the namespace
DUMMY = ["ip link add d0 type veth peer name d1", "ip link set d1 up", "ip link set d0 up",
         "ip -6 addr add 2001:db8:100:1::1/64 dev d0 nodad",
         "ip -6 addr add 2001:db8:ff::1/64 dev d0 nodad"]


def ns_run(ns, cmd, **kw):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=10, **kw)


def dns_ready(ns, root, rundir):
    out = ns_run(ns, ["dig", "@::1", "+short", "+time=1", "+tries=1", "svc.example.", "SOA"])
    return "ns1.svc.example." in out.stdout


def controller_ready(ns, root, rundir):
    ctl = os.path.join(rundir, "run/peak-controller/control.sock")
    return os.path.exists(ctl) and ns_run(ns, [os.path.join(root, "usr/local/bin/peak"),
                                               "controller-ctl", "--control", ctl,
                                               "status"]).returncode == 0


def agent_ready(ns, root, rundir):
    # node1's slice routes (PEAK's protocol 0xa5) via its endpoints
    return "via 2001:db8:100:1::" in ns_run(ns, ["ip", "-6", "route", "show", "proto",
                                                   "165"]).stdout


class Notify:
    """The service manager's end of sd_notify: a unix datagram socket at path (writable by the
    daemon's user) that tells each datagram's sender (SO_PASSCRED), as systemd's does."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        os.chmod(path, 0o666)

    def next(self, proc, timeout=10.0):
        """(sender pid, {VAR: value}) of the next datagram; None if the daemon exits or
        sends nothing in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = proc.poll() is not None  # what it sent before exiting is still read
            self.sock.settimeout(0.1)
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                if exited:
                    return None
                continue
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            return pid, dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        return None

    def close(self):
        self.sock.close()


DAEMONS = {
    # unit: (instance, ready condition, what a reload logs)
    "peak-dns.service": ("", dns_ready, "dns: reloaded"),
    "peak-controller.service": ("", controller_ready, "configuration reloaded"),
    "peak-agent@.service": ("node1", agent_ready, "agent: reloaded"),
}


def tun_as_udev_makes_it(rundir, cmd):
    """cmd in a mount namespace of its own whose /dev/net/tun has the mode udev gives it on
    Debian (0666, 50-udev-default.rules), whatever the mode on this machine (0600 in some
    containers): a device node made in rundir, bound over it."""
    node = os.path.join(rundir, "tun")
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
    os.chmod(node, 0o666)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /dev/net/tun && exec "$@"', node, *cmd]


class Started:
    """A daemon started as its unit says (module docstring), in namespace ns, its output in
    log; stopped, and the namespace and directories removed, by stop()."""

    def __init__(self, root, unit, instance, tmp_path):
        self.ns = f"in{os.getpid() % 10000}u{UNITS.index(unit)}"
        self.rundir = tempfile.mkdtemp(prefix="peak-unit-")
        os.chmod(self.rundir, 0o755)
        self.logpath = tmp_path / "daemon.log"
        self.log = open(self.logpath, "w+")
        self.proc = self.notify = None
        try:
            self.notify = Notify(os.path.join(self.rundir, "notify"))
            subprocess.run(["ip", "netns", "add", self.ns], check=True)
            ns_run(self.ns, ["ip", "link", "set", "lo", "up"], check=True)
            for c in DUMMY:
                ns_run(self.ns, c.split(), check=True)
            make_dirs(root, unit, instance, self.rundir)
            if unit_fields(root, unit).get("ExecStartPre"):
                r = ns_run(self.ns, setpriv(root, unit) +
                           command_line(root, unit, "ExecStartPre", instance, self.rundir))
                assert r.returncode == 0, r.stdout + r.stderr
            cmd = setpriv(root, unit) + command_line(root, unit, "ExecStart", instance,
                                                     self.rundir)
            cmd = ["ip", "netns", "exec", self.ns, *cmd]
            if "/dev/net/tun rw" in unit_fields(root, unit).get("DeviceAllow", []):
                cmd = tun_as_udev_makes_it(self.rundir, cmd)
            # unshare, 'ip netns exec' and setpriv exec the next program: proc.pid is the
            # daemon's
            self.proc = subprocess.Popen(cmd,
                                         stdout=self.log, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, NOTIFY_SOCKET=self.notify.path))
        except BaseException:
            self.stop()
            raise

    def text(self):
        self.log.flush()
        return self.logpath.read_text()

    def expect(self, var):
        """The next datagram, from the daemon's main process, which sets var=1."""
        msg = self.notify.next(self.proc)
        assert msg and msg[0] == self.proc.pid and msg[1].get(var) == "1", (msg, self.text())
        return msg[1]

    def sigterm_exits_0(self):
        """systemctl stop: STOPPING=1, then exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        self.expect("STOPPING")
        assert self.proc.wait(timeout=10) == 0, self.text()

    def stop(self):
        if self.notify:
            self.notify.close()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        shutil.rmtree(self.rundir, ignore_errors=True)


@pytest.mark.parametrize("unit", list(DAEMONS))
def test_daemon_as_its_unit_says(root, peak_user, unit, tmp_path):
    instance, ready, reloaded = DAEMONS[unit]
    d = Started(root, unit, instance, tmp_path)
    ns, rundir, proc, text = d.ns, d.rundir, d.proc, d.text
    try:
        # Type=notify: READY=1 from the main process, and then it serves
        assert d.expect("READY").get("STATUS")
        assert ready(ns, root, rundir), text()
        for i in range(1, 3):
            before = time.monotonic_ns() // 1000
            proc.send_signal(signal.SIGHUP)  # ExecReload=kill -HUP $MAINPID
            msg = d.expect("RELOADING")
            after = time.monotonic_ns() // 1000
            assert before <= int(msg["MONOTONIC_USEC"]) <= after, (before, msg, after)
            d.expect("READY")
            assert text().count(reloaded) >= i, text()
            assert proc.poll() is None, text()
        assert ready(ns, root, rundir), text()
        # a refused reload ends too (READY=1, or 'systemctl reload' would wait for its
        # timeout), and says so in STATUS=
        conf = os.path.join(root, "etc/peak/peak.yaml")
        good = open(conf).read()
        try:
            with open(conf, "w") as f:
                f.write("services: [\n")
            proc.send_signal(signal.SIGHUP)
            d.expect("RELOADING")
            assert re.search(r"refused|error", d.expect("READY").get("STATUS", "")), text()
        finally:
            with open(conf, "w") as f:
                f.write(good)
        assert ready(ns, root, rundir), text()
        d.sigterm_exits_0()
    finally:
        d.stop()


def put_file(root, path, text, group=None, mode=0o644):
    """A file the operator puts into the installed tree (path under /), removed by the
    caller; group-readable by 'group' (chgrp, 0640) for the unit's user when given."""
    path = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if group:
        shutil.chown(path, "root", group)
        mode = 0o640
    os.chmod(path, mode)
    return path


def tls_files(root, name, made):
    """/etc/peak/h3/NAME.pem and NAME.key, a self-signed ECDSA certificate for localhost."""
    key = os.path.join(root, f"etc/peak/h3/{name}.key")
    os.makedirs(os.path.dirname(key), mode=0o755, exist_ok=True)
    made.append(key)
    subprocess.run(["certtool", "--generate-privkey", "--key-type", "ecdsa", "--outfile", key],
                   check=True, capture_output=True, timeout=30)
    shutil.chown(key, "root", "peak")
    os.chmod(key, 0o640)
    tmpl = put_file(root, f"/etc/peak/h3/{name}.tmpl",
                    'cn = "localhost"\nip_address = "::1"\nexpiration_days = 2\ntls_www_server\n')
    made.append(tmpl)
    pem = os.path.join(root, f"etc/peak/h3/{name}.pem")
    made.append(pem)
    subprocess.run(["certtool", "--generate-self-signed", "--load-privkey", key, "--template",
                    tmpl, "--outfile", pem], check=True, capture_output=True, timeout=30)
    os.chmod(pem, 0o644)


def setup_overlay(root, made):
    """/etc/peak/overlay/site1.yaml and its key (genkey's mode 0600, then group peak)."""
    key = os.path.join(root, "etc/peak/overlay/site1.key")
    os.makedirs(os.path.dirname(key), mode=0o755, exist_ok=True)
    made.append(key)
    subprocess.run([PEAK, "overlay", "--genkey", key], check=True, capture_output=True)
    shutil.chown(key, "root", "peak")
    os.chmod(key, 0o640)
    made.append(put_file(root, "/etc/peak/overlay/site1.yaml",
                         "tun: ov0\naddress: fd00:a::1\ngateway:\n  listen: 0.0.0.0:51820\n"
                         f"  private-key-file: {key}\n"))


def overlay_ready(ns, root, rundir):
    link = ns_run(ns, ["ip", "link", "show", "ov0"]).stdout
    ctl = os.path.join(rundir, "run/peak-overlay-site1/control.sock")
    return ",UP" in link and ns_run(ns, [PEAK, "overlay-ctl", "--control", ctl, "show",
                                         "counters"]).returncode == 0


def h3_get(ns, path="/healthz"):
    return ns_run(ns, [PEAK, "h3", "get", f"https://[::1]{path}", "--insecure", "--timeout",
                       "3000"])


def setup_backend(root, made):
    tls_files(root, "b1", made)


def backend_ready(ns, root, rundir):
    r = h3_get(ns)
    return r.returncode == 0 and "200" in r.stdout


def setup_ingress(root, made):
    tls_files(root, "i1", made)
    # an upstream nobody serves: the ingress answers on its own (400, 503)
    made.append(put_file(root, "/etc/default/peak-h3-ingress-i1",
                         "PEAK_H3_ROUTE=*/*=h3://[::1]:8443\nPEAK_H3_OPTS=--upstream-insecure\n"))


def ingress_ready(ns, root, rundir):
    return re.search(r"\b[45]\d\d\b", h3_get(ns, "/").stdout) is not None


STORE_CONFIG = """zone:
  name: svc.example.
  ns:
    - {name: ns1.svc.example., address: "2001:db8:53::1"}
  soa: {primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 1}
services:
  - name: store.svc.example.
    prefixes: [2001:db8:8::/64]
    slice: 72
    select: obj
    host: src
    port: 80
    key: 000102030405060708090a0b0c0d0e0f
    endpoints:
      - {id: s1, address: "2001:db8:100:1::1"}
      - {id: s2, address: "2001:db8:100:1::2"}
"""


def setup_store(root, made):
    """/etc/peak/peak.yaml with a select=obj service on port 80 (the example restored after)."""
    put_file(root, "/etc/peak/peak.yaml", STORE_CONFIG)


def store_ready(ns, root, rundir):
    # port 80 as the user peak; every key is s1's (404) or s2's (421)
    code = ns_run(ns, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                       "3", "http://[::1]:80/o/cat"]).stdout
    return code in ("404", "421") and os.path.isdir(
        os.path.join(rundir, "var/lib/peak-store/s1"))


LATER_DAEMONS = {
    # unit: (instance, what the operator puts in place, ready condition)
    "peak-overlay@.service": ("site1", setup_overlay, overlay_ready),
    "peak-h3-backend@.service": ("b1", setup_backend, backend_ready),
    "peak-h3-ingress@.service": ("i1", setup_ingress, ingress_ready),
    "peak-store@.service": ("s1", setup_store, store_ready),
}


@pytest.mark.parametrize("unit", list(LATER_DAEMONS))
def test_later_daemon_as_its_unit_says(root, peak_user, unit, tmp_path):
    """The daemons with no reload: READY=1 from the main process once it serves as the unit's
    user with only the unit's capabilities (TUN, port 443 or 80), then STOPPING=1 and exit 0
    at SIGTERM."""
    instance, setup, ready = LATER_DAEMONS[unit]
    made, d = [], None
    conf = os.path.join(root, "etc/peak/peak.yaml")
    example = open(conf).read()
    try:
        setup(root, made)
        d = Started(root, unit, instance, tmp_path)
        assert d.expect("READY").get("STATUS")
        assert wait_until(lambda: ready(d.ns, root, d.rundir), 5), d.text()
        d.sigterm_exits_0()
    finally:
        if d:
            d.stop()
        for f in made:
            if os.path.exists(f):
                os.unlink(f)
        with open(conf, "w") as f:
            f.write(example)


OPT_RE = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def helptext(*args):
    p = subprocess.run([PEAK, *args, "--help"], capture_output=True, text=True, timeout=10)
    return p.stdout + p.stderr


def complete(root, *words):
    """What bash offers for 'peak WORDS' (the last word being completed), with the installed
    completion file sourced."""
    comp = os.path.join(root, "usr/local/share/bash-completion/completions/peak")
    script = (f"source {shlex.quote(comp)}\n"
              f"COMP_WORDS=(peak {' '.join(shlex.quote(w) for w in words)})\n"
              f"COMP_CWORD={len(words)}\n"
              "_peak\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_completion_offers_every_option_of_every_help(root):
    top = helptext()
    cmds = commands(top)
    assert len(cmds) > 10 and "dns" in cmds and "agent" in cmds
    assert set(cmds) <= complete(root, "")
    assert complete(root, "contr") == {"controller", "controller-ctl"}
    # a control client's command comes after its --control PATH; the path itself is a file
    assert {"status", "health", "weight", "reload"} <= complete(root, "dns-ctl", "--control",
                                                                 "/run/x.sock", "")
    assert complete(root, "dns-ctl", "--control", "") == set()
    seen = set()
    for cmd in cmds:
        text = helptext(cmd)
        assert text.startswith("usage: peak "), cmd
        assert set(OPT_RE.findall(text)) <= complete(root, cmd, "--"), cmd
        # the sub-commands its usage lines name
        words = set(re.findall(rf"peak {re.escape(cmd)} ([a-z][a-z0-9-]*)", text))
        assert words <= complete(root, cmd, ""), cmd
        if f"Run 'peak {cmd} COMMAND --help'" in text:
            sub = commands(text)
            assert sub and set(sub) <= complete(root, cmd, ""), cmd
            for w in sub:
                opts = set(OPT_RE.findall(helptext(cmd, w)))
                assert opts and opts <= complete(root, cmd, w, "--"), (cmd, w)
        else:
            for w in words:
                assert set(OPT_RE.findall(text)) <= complete(root, cmd, w, "--"), (cmd, w)
        for w in words | set(commands(text) if "Commands:" in text else []):
            nested_levels(root, [cmd, w], seen)
    # the walk below reached the third level where it exists
    assert {"filter signature add", "filter signature del", "filter signature list"} <= seen
    assert complete(root, "filter", "signature", "") == {"add", "del", "list"}
    assert complete(root, "filter", "signature", "add", "--dev", "eth0", "") == set()


def nested_levels(root, path, seen):
    """Every level under PATH that PATH's usage lines name ('peak filter signature add'):
    bash offers its word after PATH and, after it, every option of its own --help."""
    usage = helptext(*path).split("\n\n", 1)[0]
    below = set(re.findall(rf"^(?:usage:|      ) peak {re.escape(' '.join(path))} "
                           r"([a-z][a-z0-9-]*)\b", usage, re.M))
    if not below:
        return
    assert below <= complete(root, *path, ""), (path, below)
    for w in below:
        seen.add(" ".join(path + [w]))
        opts = set(OPT_RE.findall(helptext(*path, w)))
        assert opts <= complete(root, *path, w, "--"), (path, w)
        nested_levels(root, path + [w], seen)


def test_man_pages_render_clean_and_name_every_option(root):
    mandir = os.path.join(root, "usr/local/share/man/man1")
    pages = man_pages()
    assert len(pages) > 15
    for name in pages:
        path = os.path.join(mandir, name + ".1")
        r = subprocess.run(["groff", "-ww", "-man", "-Tutf8", path], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and r.stderr == "", (name, r.stderr)
        # man's own check, as a reader's 'man peak-dns' formats it
        r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING=""))
        assert r.returncode == 0 and r.stderr == "", (name, r.stderr)
        # the ascii device for the options' hyphens (utf8 shows \- as U+2212); it lacks
        # glyphs such as the section sign, hence no -ww here
        shown = subprocess.run(["groff", "-man", "-Tascii", path], capture_output=True,
                               text=True, timeout=30).stdout
        shown = re.sub(r".\x08", "", shown)  # overstrike bold and underline
        args = name.split("-", 1)[1].split("-") if name != "peak" else []
        # 'peak-dns-ctl' is the command dns-ctl, 'peak-h3-get' is h3's get
        words = [name[5:]] if name != "peak" and name[5:] in commands(helptext()) else args
        text = helptext(*words)
        want = set(OPT_RE.findall(text))
        got = set(OPT_RE.findall(shown))
        assert want <= got, (name, want - got)
        assert f"{name} - " in shown, name
