"""libnss_peak.so.2 with unmodified programs (getent, Python, curl, wget) in a namespace whose
nsswitch.conf says `hosts: files peak dns` (topology in conftest.py): SSA names resolve to
the address the service's rule gives this host, and the pod sees that destination and this
host's source; other names resolve through the next module as before; a silent DNS server
costs at most the module's timeout."""
import collections
import os
import re
import subprocess
import time

import pytest
from conftest import CLIENT, MODULE, PEAK, PORT, RULE_ADDR, sanitizer_env, wait_until
from peaktest import K

API = "api.svc.example"


def getent(net, db, name, **kw):
    r = net.run("getent", db, name, **kw)
    return r.returncode, [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def test_the_rule_address_is_what_libpeak_computes(net):
    """The address the tests expect is the spec's, and libpeak's own resolver agrees."""
    out = net.run(PEAK, "ssa", "compute", "--prefix", "2001:db8:5::/64", "--descriptor",
                  f"v=ssa1; slice=78; select=src; host=src; key={K}", "--source", CLIENT,
                  module=False)
    assert out.stdout.strip() == RULE_ADDR, out
    out = net.run(PEAK, "resolve", API + ".", module=False)
    assert out.returncode == 0, out
    assert out.stdout.split()[:3] == [RULE_ADDR, "from", CLIENT], out


def test_getent_ahosts_gives_the_rule_address(net):
    # ahosts: getaddrinfo(AF_UNSPEC), the module's gethostbyname4_r
    rc, addrs = getent(net, "ahosts", API)
    assert rc == 0 and addrs and set(addrs) == {RULE_ADDR}, addrs
    # ahostsv6: getaddrinfo(AF_INET6), gethostbyname3_r
    rc, addrs = getent(net, "ahostsv6", API)
    assert rc == 0 and set(addrs) == {RULE_ADDR}, addrs
    # hosts: gethostbyname2(AF_INET6) first
    r = net.run("getent", "hosts", API + ".")
    assert r.returncode == 0 and r.stdout.split()[:2] == [RULE_ADDR, API], r


def test_without_the_module_the_name_gets_the_steered_aaaa(net):
    """The same name where glibc finds no module (no LD_LIBRARY_PATH; meson sets one to the
    build directory): the dns module's
    steered AAAA, not the rule's address, so the tests above do see the module's answer."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    rc, addrs = getent(net, "ahostsv6", API, env=env)
    assert rc == 0 and addrs and RULE_ADDR not in addrs, addrs


def test_python_getaddrinfo_reaches_the_pod(net):
    code = (
        "import socket\n"
        f"ai = socket.getaddrinfo('{API}', {PORT}, type=socket.SOCK_STREAM)\n"
        "fam, _, _, _, sa = ai[0]\n"
        "s = socket.create_connection(sa[:2], timeout=5)\n"
        "s.sendall(b'hello\\n')\n"
        "print(sa[0], s.makefile().readline().strip())\n")
    r = net.run("/usr/bin/python3", "-c", code, env=net.env_py)
    assert r.returncode == 0, r
    # peak serve answers a non-HTTP line with 'ID DESTINATION SOURCE' as it saw them
    assert r.stdout.split() == [RULE_ADDR, "pod-a", RULE_ADDR, CLIENT], r


# curl and wget hang in setlocale() at start when libasan is preloaded, with or without this
# module (`LD_PRELOAD=libasan.so.8 curl http://127.0.0.1:1/` never returns here): under ASan
# they are left to the plain build, and getent and Python cover the sanitized module.
no_asan_preload = pytest.mark.skipif(bool(sanitizer_env(MODULE)),
                                     reason="curl and wget deadlock with libasan preloaded")


@no_asan_preload
def test_curl_reaches_the_pod(net):
    r = net.run("curl", "-sS", "-D", "-", "-o", "/dev/null", "--max-time", "10",
                f"http://{API}:{PORT}/")
    assert r.returncode == 0, r
    h = dict(re.findall(r"(?im)^(X-Peak-[A-Za-z-]+):\s*(\S+)", r.stdout))
    assert h == {"X-Peak-Endpoint": "pod-a", "X-Peak-Destination": RULE_ADDR,
                 "X-Peak-Source": CLIENT}, r.stdout


@no_asan_preload
def test_wget_reaches_the_pod(net):
    r = net.run("wget", "-S", "-O", "/dev/null", "--tries=1", "--timeout=10",
                f"http://{API}:{PORT}/")
    assert r.returncode == 0, r
    h = dict(re.findall(r"(?im)^\s*(X-Peak-[A-Za-z-]+):\s*(\S+)", r.stderr))
    assert h.get("X-Peak-Destination") == RULE_ADDR and h.get("X-Peak-Source") == CLIENT, r


def test_names_without_a_descriptor_resolve_as_before(net):
    # files first, as before
    rc, addrs = getent(net, "ahostsv6", "legacy-files.test")
    assert rc == 0 and set(addrs) == {"2001:db8:aa:bb::77"}, addrs
    # a name with an AAAA and no _ssa descriptor: the module says NOTFOUND, dns answers
    for db in ("ahosts", "ahostsv6"):
        rc, addrs = getent(net, db, "ns1.svc.example")
        assert rc == 0 and set(addrs) == {"2001:db8:53::1"}, (db, addrs)
    # IPv4 (gethostbyname): never the module's
    r = net.run("getent", "ahostsv4", API)
    assert RULE_ADDR not in r.stdout, r
    # a name that does not exist: not found, quickly, i.e. on the answer, not after the
    # module's timeout. That timeout is 30 s for this lookup, so the bound below sits far
    # from both the answer (milliseconds) and the timeout, where a loaded machine running
    # ASan (whose start alone is seconds under load) cannot reach it.
    slow = net.tmp / "nss-slow.conf"
    slow.write_text("timeout 30000\n")
    t0 = time.monotonic()
    rc, addrs = getent(net, "ahosts", "nosuch.svc.example",
                       env={**net.env, "PEAK_NSS_CONF": str(slow)}, timeout=60)
    took = time.monotonic() - t0
    print(f"a name that does not exist: not found after {took:.2f} s")
    assert rc == 2 and not addrs
    assert took < 15, took


def test_threads_share_one_resolver(net):
    """Many threads at once (one process): every answer is the rule's."""
    code = (
        "import socket, concurrent.futures as cf\n"
        "def one(i):\n"
        f"    n = ('{API}', 'ns1.svc.example')[i % 2]\n"
        "    return n, sorted({a[4][0] for a in socket.getaddrinfo(n, 80, socket.AF_INET6)})\n"
        "with cf.ThreadPoolExecutor(8) as ex:\n"
        "    for n, a in ex.map(one, range(200)):\n"
        "        print(n, *a)\n")
    r = net.run("/usr/bin/python3", "-c", code, timeout=60, env=net.env_py)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert len(lines) == 200
    assert set(lines) == {f"{API} {RULE_ADDR}", "ns1.svc.example 2001:db8:53::1"}, set(lines)


def timed(net, *cmd):
    t0 = time.monotonic()
    r = net.run(*cmd)
    return r, time.monotonic() - t0


# A DNS server that answers nothing and records what it got: each datagram's bytes (hex),
# one line each, in argv[1]; a datagram "mark N" from the test is written as "mark N" after
# everything that came before it on the same path (the test's way to wait for the log).
SILENT = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(('2001:db8:aa:bb::2', 53))
with open(sys.argv[1], 'a') as log:
    while True:
        d = s.recv(4096)
        log.write((d.decode() if d.startswith(b'mark ') else d.hex()) + '\\n')
        log.flush()
"""


class Silent:
    """The silent server in the pod's namespace; queries() says what it got since the last
    call (each query's bytes and how many times they came)."""

    def __init__(self, net):
        self.net, self.log, self.n, self.seen = net, net.tmp / "silent.log", 0, 0
        self.p = net.start("/usr/bin/python3", "-c", SILENT, str(self.log), ns=net.pod)
        wait_until("the silent server", lambda: net.listening(net.pod, 53, True))

    def queries(self):
        self.n += 1
        self.net.run("/usr/bin/python3", "-c", "import socket; socket.socket(socket.AF_INET6, "
                     f"socket.SOCK_DGRAM).sendto(b'mark {self.n}', ('2001:db8:aa:bb::2', 53))",
                     module=False, check=True)
        lines = wait_until(f"mark {self.n}", lambda: (lambda t: f"mark {self.n}" in t and t)(
            self.log.read_text()) if self.log.exists() else False).splitlines()
        got = [ln for ln in lines[self.seen:] if not ln.startswith("mark ")]
        self.seen = len(lines)
        return collections.Counter(got)

    def stop(self):
        self.p.kill()
        self.p.wait()


def test_a_silent_dns_server_costs_at_most_the_timeout(net):
    """The DNS server is a socket that never answers. With the module alone in
    nsswitch.conf the lookup fails after the module's timeout (500 ms in nss.conf), one
    attempt (each query sent once), not after the library's default attempts; with `files
    peak dns` the module adds its one attempt to what the dns module alone sends. Asserted
    are the queries the server got and that the timeout was waited out (a lower bound);
    the seconds beyond it are printed, except for threads, whose bound is half of what
    waiting in turn would take."""
    silent = Silent(net)
    resolv = "nameserver 2001:db8:aa:bb::2\noptions timeout:1 attempts:1\n"
    try:
        net.write_etc("hosts: files peak", resolv)
        # what starting getent costs here (ASan included): a name the module turns down at once
        # (the least of two runs: the machine is shared, and noise only adds)
        base = min(timed(net, "getent", "ahostsv6", "nosuchhost")[1] for _ in range(2))
        silent.queries()
        for db in ("ahosts", "ahostsv6"):
            r, t = timed(net, "getent", db, "silent.svc.example")
            assert r.returncode == 2, r
            q = silent.queries()
            print(f"{db}, the module alone: {t - base:.2f} s beyond getent's start, "
                  f"{len(q)} queries, sent {sorted(q.values())} times")
            # the module did wait for the server (its timeout), with one attempt: each of its
            # queries once (the library's defaults, 2 attempts, would send each twice)
            assert t >= 0.45, (db, t, base)
            assert q and set(q.values()) == {1}, (db, q)
        # threads of one process at once: none waits for the others' timeouts in turn
        code = (
            "import socket, time, concurrent.futures as cf\n"
            "def one(i):\n"
            "    t0 = time.monotonic()\n"
            "    try:\n"
            "        socket.getaddrinfo(f'silent{i}.svc.example', 80, socket.AF_INET6)\n"
            "    except socket.gaierror:\n"
            "        pass\n"
            "    return time.monotonic() - t0\n"
            "with cf.ThreadPoolExecutor(8) as ex:\n"
            "    print(max(ex.map(one, range(8))))\n")
        r = net.run("/usr/bin/python3", "-c", code, env=net.env_py)
        assert r.returncode == 0, r
        print(f"8 threads at once: the slowest took {float(r.stdout):.2f} s")
        # in turn would be 8 x 0.5 s: the bound is half of that, far from the 0.5 s each
        # takes and from what a loaded machine adds to it
        assert float(r.stdout) < 2.0, r.stdout
        silent.queries()
        # the whole chain: the module adds its one attempt to what the dns module alone
        # sends (each query once: its own attempt, not resolv.conf's)
        net.write_etc("hosts: files dns", resolv)
        r, t_dns = timed(net, "getent", "ahostsv6", "silent.svc.example")
        assert r.returncode == 2, r
        q_dns = silent.queries()
        net.write_etc("hosts: files peak dns", resolv)
        r, t = timed(net, "getent", "ahostsv6", "silent.svc.example")
        assert r.returncode == 2, r
        q = silent.queries()
        print(f"files dns: {t_dns:.2f} s, {len(q_dns)} queries; files peak dns: {t:.2f} s, "
              f"{len(q)} queries, sent {sorted(q.values())} times")
        assert q_dns and set(q.values()) == {1}, q
        assert sum(q.values()) > sum(q_dns.values()), (q, q_dns)
    finally:
        net.write_etc("hosts: files peak dns", "nameserver ::1\noptions timeout:1 attempts:1\n")
        silent.stop()


NSS_CALL = os.environ.get("NSS_CALL", "build/tests/nss_call")
SUCCESS, NOTFOUND, TRYAGAIN = 1, 0, -2
ERANGE, NETDB_INTERNAL, HOST_NOT_FOUND = 34, -1, 1


def nss_call(net, *args):
    r = net.run(NSS_CALL, os.path.abspath(MODULE), *map(str, args))
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    return tuple(map(int, lines[0].split())), lines[1:]


def test_entry_points_as_glibc_calls_them(net):
    """What getaddrinfo never shows: every buffer size from 0 up either fits (SUCCESS) or
    asks for a larger one (TRYAGAIN, ERANGE, NETDB_INTERNAL, so glibc grows it), misaligned
    buffers included (UBSan checks the accesses); a tuple the caller preallocates; the
    hostent of gethostbyname3_r; AF_INET and gethostbyname_r are not found."""
    ok = None
    for n in range(0, 160, 3):
        st, out = nss_call(net, 4, API, n, n % 7)
        assert st[0] in (SUCCESS, TRYAGAIN), (n, st)
        if st[0] == TRYAGAIN:
            assert st[1:] == (ERANGE, NETDB_INTERNAL) and ok is None, (n, st)
        else:
            ok = ok or n
            assert out == [f"{RULE_ADDR} name {API}"], (n, out)
    assert ok, "no buffer size fitted"
    st, out = nss_call(net, 4, API + ".", 512, 1, "prealloc")
    assert st[0] == SUCCESS and out == [f"{RULE_ADDR} name {API}"], (st, out)
    for fn in (3, 2):
        st, out = nss_call(net, fn, API, 512, 3)
        assert st[0] == SUCCESS and out[:2] == [f"name {API}", RULE_ADDR], (fn, st, out)
        st, out = nss_call(net, fn, API, 20, 3)
        assert st == (TRYAGAIN, ERANGE, NETDB_INTERNAL), (fn, st)
        st, out = nss_call(net, fn, API, 512, 0, "inet")
        assert st[0] == NOTFOUND and st[2] == HOST_NOT_FOUND, (fn, st)
    st, out = nss_call(net, 1, API, 512, 0)
    assert st[0] == NOTFOUND, st
    st, _ = nss_call(net, 4, "ns1.svc.example", 512, 0)
    assert st[0] == NOTFOUND and st[2] == HOST_NOT_FOUND, st


def test_hop_services_need_a_secret_only_root_may_read(net):
    """nss.conf's secret-file gives hop services their address (peak resolve's, for the same
    secret); a secret file others may read is refused: the module says not found, and the
    name resolves through dns (its steered AAAA) as for a program without the secret."""
    conf = net.conf.read_text()
    try:
        net.conf.write_text(conf + f"secret-file {net.secret}\n")
        for _ in range(3):  # the address changes every 30 s epoch: ask both in one epoch
            want = net.run(PEAK, "resolve", "hop.svc.example.", "--secret-file",
                           str(net.secret), module=False).stdout.split()[:1]
            rc, addrs = getent(net, "ahostsv6", "hop.svc.example")
            again = net.run(PEAK, "resolve", "hop.svc.example.", "--secret-file",
                            str(net.secret), module=False).stdout.split()[:1]
            if want == again:
                break
        assert rc == 0 and want and set(addrs) == set(want), (addrs, want)
        assert want[0].startswith("2001:db8:9:0:"), want
        st, out = nss_call(net, 4, "hop.svc.example", 512, 0)
        assert st[0] == SUCCESS and out[0].split()[0] in (want[0], again[0]), (st, out)
        net.secret.chmod(0o644)
        st, out = nss_call(net, 4, "hop.svc.example", 512, 0)
        assert st[0] == NOTFOUND and st[2] == HOST_NOT_FOUND, (st, out)
        rc, addrs = getent(net, "ahostsv6", "hop.svc.example")  # the steered AAAA
        assert rc == 0 and addrs and want[0] not in addrs and again[0] not in addrs, addrs
    finally:
        net.secret.chmod(0o600)
        net.conf.write_text(conf)


def filter_stats(net):
    out = subprocess.run(["nsenter", f"--net=/run/netns/{net.pod}", PEAK, "filter", "stats",
                          "--dev", "v1"], capture_output=True, text=True, timeout=10).stdout
    return {ln.split()[0]: int(ln.split()[1]) for ln in out.splitlines() if ln.split()}


def test_the_filter_passes_what_the_module_resolves(net):
    """With the XDP filter on the pod's link enforcing select=src/host=src, unmodified
    programs still get through (their packets conform), and an address of the range that
    breaks the rule is dropped."""
    # nsenter switches only the network namespace: 'ip netns exec' would hide /sys/fs/bpf
    pf = ["nsenter", f"--net=/run/netns/{net.pod}", PEAK, "filter"]
    r = subprocess.run([*pf, "attach", "--dev", "v1", "--config", str(net.config)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    try:
        test_python_getaddrinfo_reaches_the_pod(net)
        rc, _ = getent(net, "ahosts", API)
        assert rc == 0
        code = ("import socket\n"
                "try:\n"
                "    socket.create_connection(('2001:db8:5::1', %d), timeout=1.5)\n"
                "    print('connected')\n"
                "except OSError:\n"
                "    print('dropped')\n" % PORT)
        r = net.run("/usr/bin/python3", "-c", code, env=net.env_py)
        assert r.stdout.strip() == "dropped", r
        st = filter_stats(net)
        assert st.get("reject_slice", 0) + st.get("reject_host", 0) > 0, st
        assert st.get("assumed_good", 0) + st.get("known_good", 0) > 0, st
    finally:
        subprocess.run([*pf, "detach", "--dev", "v1"], capture_output=True, timeout=30)


def test_select_obj_and_odd_names_fall_through(net):
    """select=obj needs an object key, which a host name lookup has not: the module says not
    found and dns gives the AAAA. Names the resolver cannot even send are not found either."""
    st, _ = nss_call(net, 4, "obj.svc.example", 512, 0)
    assert st[0] == NOTFOUND and st[2] == HOST_NOT_FOUND, st
    rc, addrs = getent(net, "ahostsv6", "obj.svc.example")
    assert rc == 0 and addrs and all(a.startswith("2001:db8:8:") for a in addrs), addrs
    for name in ("a..b.example", "x" * 64 + ".example", "localhost", "."):
        st, _ = nss_call(net, 4, name, 512, 0)
        assert st[0] == NOTFOUND, (name, st)


def test_only_the_entry_points_are_exported():
    out = subprocess.run(["nm", "-D", "--defined-only", MODULE], capture_output=True,
                         text=True, check=True).stdout
    assert sorted(ln.split()[-1] for ln in out.splitlines() if ln.split()) == [
        "_nss_peak_gethostbyname2_r", "_nss_peak_gethostbyname3_r",
        "_nss_peak_gethostbyname4_r", "_nss_peak_gethostbyname_r"], out
    out = subprocess.run(["readelf", "-d", MODULE], capture_output=True, text=True).stdout
    assert "Library soname: [libnss_peak.so.2]" in out, out
