"""HTTP/3 tests: certificates made here with certtool, 'peak h3 backend' on ::1 with a port the
kernel picks (read back from its log), stopped by its own PID."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")

CA_TMPL = 'cn = "peak h3 test CA"\nca\ncert_signing_key\nexpiration_days = 2\n'
SRV_TMPL = ('cn = "localhost"\ndns_name = "localhost"\nip_address = "::1"\n'
            'ip_address = "127.0.0.1"\ntls_www_server\nsigning_key\nencryption_key\n'
            'expiration_days = 2\n')


def certtool(*args):
    subprocess.run(["certtool", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A CA and a server certificate for localhost, ::1 and 127.0.0.1 (ECDSA P-256)."""
    d = tmp_path_factory.mktemp("certs")
    (d / "ca.tmpl").write_text(CA_TMPL)
    (d / "srv.tmpl").write_text(SRV_TMPL)
    certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", str(d / "ca.key"))
    certtool("--generate-self-signed", "--load-privkey", str(d / "ca.key"), "--template",
             str(d / "ca.tmpl"), "--outfile", str(d / "ca.pem"))
    certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", str(d / "srv.key"))
    certtool("--generate-certificate", "--load-privkey", str(d / "srv.key"),
             "--load-ca-certificate", str(d / "ca.pem"), "--load-ca-privkey", str(d / "ca.key"),
             "--template", str(d / "srv.tmpl"), "--outfile", str(d / "srv.pem"))
    # a CA that signed nothing here: trusting it alone must fail the handshake
    certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", str(d / "other.key"))
    certtool("--generate-self-signed", "--load-privkey", str(d / "other.key"), "--template",
             str(d / "ca.tmpl"), "--outfile", str(d / "other.pem"))
    return d


GOPATH = "/usr/share/gocode"
QUICGO = os.path.join(GOPATH, "src/github.com/lucas-clemente/quic-go/http3")


def go_build(tmp_path_factory, name):
    """Builds tests/h3/interop/NAME.go against Debian's quic-go, offline (GOPATH mode, no
    module proxy); skips when golang-go or the quic-go package is missing. Returns the binary."""
    if not shutil.which("go") or not os.path.isdir(QUICGO):
        pytest.skip("golang-go and golang-github-lucas-clemente-quic-go-dev are not installed")
    out = tmp_path_factory.mktemp(name) / name
    src = os.path.join(os.path.dirname(__file__), "interop", name + ".go")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOPROXY="off")
    p = subprocess.run(["go", "build", "-o", str(out), src], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return out


def free_tcp_port():
    """A TCP port free on 127.0.0.1 now (for --metrics)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_ns(suffix):
    """For a fixture (yield from): a network namespace named for the PID and suffix, lo up,
    and a list for the processes the test starts in it; they are killed, then the namespace
    deleted, at the end. Yields (name, procs)."""
    name = f"rg{os.getpid() % 10000}{suffix}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    procs = []
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        yield name, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", name], timeout=30)


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Server:
    """A 'peak h3' server (argv) on [::1]; .port is the port it bound (read from its log)."""

    def __init__(self, logpath, argv, what):
        self.logpath = logpath
        self.log = open(self.logpath, "w+")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

        def bound():
            if self.proc.poll() is not None:
                raise AssertionError(f"peak h3 {what} exited: " + self.logtext())
            m = re.search(r"listening on \[::1\]:(\d+)", self.logtext())
            return m and int(m.group(1))
        self.port = wait_for(bound, 10, f"the {what} to listen")
        self.url = f"https://[::1]:{self.port}/upload"

    def logtext(self):
        if not self.log.closed:
            self.log.flush()
        return self.logpath.read_text()

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        finally:
            self.log.close()


class Backend(Server):
    """One 'peak h3 backend' on [::1]:0 (or the --listen in extra)."""

    def __init__(self, tmp, certs, types="audio/*,video/mp4", ident="b1", extra=()):
        listen = [] if "--listen" in extra else ["--listen", "[::1]:0"]
        super().__init__(tmp / f"backend-{ident}.log",
                         [PEAK, "h3", "backend", *listen, "--cert", str(certs / "srv.pem"),
                          "--key", str(certs / "srv.key"), "--type", types, "--id", ident,
                          *extra], "backend")


@pytest.fixture
def backend_factory(tmp_path, certs):
    started = []

    def make(**kw):
        b = Backend(tmp_path, certs, **kw)
        started.append(b)
        return b
    yield make
    for b in started:
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()


def upload(url, files, certs, extra=(), timeout=60):
    """Runs 'peak h3 upload'; returns (exit status, stream lines as dicts, stdout, stderr)."""
    argv = [PEAK, "h3", "upload", url, "--ca", str(certs / "ca.pem"), *extra]
    for f in files:
        argv += ["--file", f]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    streams = [dict(kv.split("=", 1) for kv in line.split())
               for line in p.stdout.splitlines() if line.startswith("stream=")]
    return p.returncode, streams, p.stdout, p.stderr


class Ingress(Server):
    """One 'peak h3 ingress' on [::1]:0 in front of the given routes; ready once every
    upstream passed its first health check."""

    def __init__(self, tmp, certs, routes, extra=(), ident="in", wait_up=True):
        argv = [PEAK, "h3", "ingress", "--listen", "[::1]:0", "--cert", str(certs / "srv.pem"),
                "--key", str(certs / "srv.key"), "--upstream-ca", str(certs / "ca.pem")]
        for r in routes:
            argv += ["--route", r]
        super().__init__(tmp / f"ingress-{ident}.log", [*argv, *extra], "ingress")
        if wait_up:
            n = int(re.search(r"(\d+) upstreams", self.logtext()).group(1))
            wait_for(lambda: len(set(re.findall(r"upstream (\S+) up\b", self.logtext()))) == n,
                     20, "every upstream up")


@pytest.fixture
def ingress_factory(tmp_path, certs):
    started = []

    def make(routes, **kw):
        i = Ingress(tmp_path, certs, routes, **kw)
        started.append(i)
        return i
    yield make
    for i in started:
        if i.proc.poll() is None:
            i.proc.kill()
            i.proc.wait()
