"""A standby controller (--store etcd) follows the stored state by the watch's events: one
read of the whole state at start, then each changed record applied to its service alone
(peak_controller_store_reads_total counts the whole reads, _store_changes_total the
records applied). Its copy equals what a fresh read gives (a controller started after the
changes), including values written by someone else (refused) and a deleted key; a standby
whose watch cannot resume past a compaction reads afresh once; taking the lead, a standby
whose copy is current adopts it with no read and moves nothing."""
import os
import re
import signal
import socket
import subprocess
import threading
import time

import ctlpeer
import etcdproc
import hapair
import peaktest
from ctlpeer import SVC

KEY = "/peak/svc/" + SVC
OTHER = "other.svc.example."
TTL_S = 2


def config():
    """The tests' service and a second one no change touches."""
    return ctlpeer.config() + f"""  - name: {OTHER}
    prefixes: [2001:db8:6::/64]
    slice: 72
    endpoints:
      - {{id: o-0, address: "2001:db8:100::10"}}
      - {{id: o-1, address: "2001:db8:100::11"}}
"""


def start(tmp, urls, mports, cfg_text=None):
    """hapair's start(name, cfg, port): a controller on urls with a control socket and
    metrics (its port in mports[name]), the configuration cfg_text (else config())."""
    def st(name, cfg, port):
        mports[name] = peaktest.free_port()
        if cfg is not None:
            cfg = cfg_text or config()
        return ctlpeer.Controller(
            str(tmp), cfg, ("--store", "etcd", "--etcd", urls[name] if isinstance(urls, dict)
                            else urls, "--listen", f"[::1]:{port}", "--control",
                            os.path.join(str(tmp), f"{name}.sock"), "--metrics",
                            f"[::1]:{mports[name]}"), name=name)
    return st


def counter(mport, name):
    m = re.search(rf"^peak_controller_store_{name}_total (\d+)$", ctlpeer.metrics(mport), re.M)
    assert m, name
    return int(m.group(1))


def status(tmp, name):
    p = subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control",
                        os.path.join(str(tmp), f"{name}.sock"), "status"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p
    return p.stdout


def services(text):
    """The status lines of the services (endpoint, health, weight, slices), sorted."""
    return sorted(line for line in text.splitlines()
                  if line.startswith((SVC, OTHER)))


def delete(etcd, key):
    etcd.call("/v3/kv/deleterange", {"key": etcdproc.b64(key)})


def test_standby_copy_after_changes_equals_a_fresh_read(tmp_path, etcd):
    mp = {}
    port, c1, c2 = hapair.pair(tmp_path, "etcd", (), start(tmp_path, etcd.url, mp))
    c3 = None
    try:
        assert ctlpeer.wait_until(lambda: counter(mp["c2"], "reads") == 1, 5)
        a = ctlpeer.Agent(port)
        a.read_map()
        changes = 0

        def applied():
            """Waits until the standby applied one more record from the watch."""
            nonlocal changes
            changes += 1
            assert ctlpeer.wait_until(lambda: counter(mp["c2"], "changes") >= changes, 5), \
                (changes, c2.log())

        for ep, state in (("pod-1", "down"), ("pod-2", "down"), ("pod-1", "up")):
            a.send(f"health {SVC} {ep} {state}\n")
            a.read_map()
            applied()
        p = subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control",
                            str(tmp_path / "c1.sock"), "weight", SVC, "pod-0", "3"],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, p
        a.read_map()
        applied()
        assert services(status(tmp_path, "c2")) == services(status(tmp_path, "c1"))
        # someone else's value: refused (the service then has no stored state), then
        # the key deleted, then the leader stores its state again
        etcd.put(KEY, "not a control line\n")
        applied()
        assert "refused" in c2.log()
        delete(etcd, KEY)
        applied()
        # a service this configuration does not have: nothing to apply
        etcd.put("/peak/svc/unknown.svc.example.", "map unknown.svc.example.\nend\n")
        a.send(f"health {SVC} pod-2 up\n")
        a.read_map()
        applied()
        assert counter(mp["c2"], "reads") == 1, c2.log()  # none per change
        # a fresh read: a controller started now
        c3 = start(tmp_path, etcd.url, mp)("c3", None, peaktest.free_port())
        assert counter(mp["c3"], "reads") == 1
        assert services(status(tmp_path, "c2")) == services(status(tmp_path, "c3"))
        assert services(status(tmp_path, "c2")) == services(status(tmp_path, "c1"))
        print(f"standby: {counter(mp['c2'], 'changes')} records applied, 1 read")
        a.close()
    finally:
        c1.stop()
        assert c2.stop() == 0
        if c3:
            assert c3.stop() == 0


def test_takeover_keeps_a_current_copy_and_moves_nothing(tmp_path, etcd):
    """The leader dies (SIGKILL) after changes the standby followed: the standby checks
    that its copy is current and leads with it, with no read and no write."""
    mp = {}
    port, c1, c2 = hapair.pair(tmp_path, "etcd", (),
                               start(tmp_path, etcd.url, mp, ctlpeer.config()))
    try:
        live, a = ctlpeer.agent_down_pod1(port)
        assert ctlpeer.wait_until(lambda: counter(mp["c2"], "changes") >= 1, 5)
        rev = etcd.mod_revision(KEY)
        c1.proc.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        c1.proc.wait(5)
        m, a2 = ctlpeer.connect_map(port, t0 + TTL_S + 5)
        assert m == live, "the new leader moved slices"
        assert "(the standby's copy, current)" in c2.log(), c2.log()
        assert counter(mp["c2"], "reads") == 1
        a2.send(f"health {SVC} pod-1 down\n")  # what the agent reports after its hello
        assert ctlpeer.wait_until(lambda: "pod-1 down" in status(tmp_path, "c2"), 5)
        assert etcd.mod_revision(KEY) == rev  # the stored state was the live one
        a2.close()
        a.close()
    finally:
        c1.stop()
        assert c2.stop() == 0


class Relay:
    """A TCP relay on 127.0.0.1 to target_port whose connections the test cuts (each one
    closed, new ones refused) and restores: a standby's link to etcd, and only its."""

    def __init__(self, target_port):
        self.target = target_port
        self.ls = socket.create_server(("127.0.0.1", 0))
        self.ls.settimeout(0.1)
        self.port = self.ls.getsockname()[1]
        self.up = True
        self.stopped = False
        self.socks = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.ls.accept()
            except (socket.timeout, OSError):
                continue
            if not self.up:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks += [c, u]
            for x, y in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(x, y), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.up = False
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.socks = []

    def restore(self):
        self.up = True

    def close(self):
        self.stopped = True
        self.cut()
        self.t.join(5)
        self.ls.close()


def test_standby_past_a_compaction_reads_afresh_once(tmp_path, etcd):
    """The standby's link to etcd is cut while the leader stores changes and the history
    is compacted past the standby's revision: the resumed watch is refused (compacted), so
    the standby reads the whole state once, and holds what a fresh read holds."""
    relay = Relay(etcd.port)
    mp = {}
    urls = {"c1": etcd.url, "c2": f"http://127.0.0.1:{relay.port}", "c3": etcd.url}
    port, c1, c2 = hapair.pair(tmp_path, "etcd", (), start(tmp_path, urls, mp))
    c3 = None
    try:
        a = ctlpeer.Agent(port)
        a.read_map()
        a.send(f"health {SVC} pod-1 down\n")
        a.read_map()
        assert ctlpeer.wait_until(lambda: counter(mp["c2"], "changes") >= 1, 5)
        relay.cut()
        try:
            # (a request failed: the standby knows its link is gone)
            assert ctlpeer.wait_until(lambda: urls["c2"] in c2.log(), 5), c2.log()
            for ep, state in (("pod-1", "up"), ("pod-2", "down")):
                a.send(f"health {SVC} {ep} {state}\n")
                a.read_map()
            assert ctlpeer.wait_until(lambda: "pod-2 down" in (etcd.get(KEY) or ""), 5)
            rev = int(etcd.call("/v3/kv/range", {"key": etcdproc.b64("x")})
                      ["header"]["revision"])
            etcd.call("/v3/kv/compaction", {"revision": str(rev), "physical": True})
        finally:
            relay.restore()
        assert ctlpeer.wait_until(lambda: counter(mp["c2"], "reads") == 2, 10), c2.log()
        assert ("etcd: history compacted past revision" in c2.log() or
                "required revision has been compacted" in c2.log()), c2.log()
        c3 = start(tmp_path, urls, mp)("c3", None, peaktest.free_port())
        st = services(status(tmp_path, "c2"))
        assert st == services(status(tmp_path, "c3"))
        assert f"{SVC} pod-2 down weight 1 slices 0" in st, st
        # and it follows the changes after it again, with no read
        n = counter(mp["c2"], "changes")
        a.send(f"health {SVC} pod-2 up\n")
        a.read_map()
        assert ctlpeer.wait_until(lambda: counter(mp["c2"], "changes") > n, 5)
        assert counter(mp["c2"], "reads") == 2
        a.close()
    finally:
        c1.stop()
        assert c2.stop() == 0
        if c3:
            assert c3.stop() == 0
        relay.close()


def many(n):
    """n services of two endpoints each (more than one page of a load: 100 keys)."""
    out = [ctlpeer.config().split("services:")[0] + "services:"]
    for i in range(n):
        out += [f"  - name: s{i}.svc.example.", f"    prefixes: [2001:db8:{i + 16:x}::/64]",
                "    slice: 72", "    endpoints:",
                f'      - {{id: a, address: "2001:db8:100::{2 * i + 1:x}"}}',
                f'      - {{id: b, address: "2001:db8:100::{2 * i + 2:x}"}}']
    return "\n".join(out) + "\n"


def test_standby_reads_a_state_of_many_pages(tmp_path, etcd):
    """250 services: the standby's one read at start comes in pages (100 keys a request,
    at one revision) and holds every service as the leader does; a change to a service of
    the last page is followed with no read."""
    mp = {}
    port, c1, c2 = hapair.pair(tmp_path, "etcd", (), start(tmp_path, etcd.url, mp, many(250)))
    try:
        assert ctlpeer.wait_until(lambda: len(etcd.keys("/peak/svc/")) == 250, 10)
        assert counter(mp["c2"], "reads") == 1
        st = status(tmp_path, "c2")
        assert st == status(tmp_path, "c1")
        assert st.count(" up weight 1 slices 128") == 500, st
        p = subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control",
                            str(tmp_path / "c1.sock"), "weight", "s249.svc.example.", "a",
                            "3"], capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, p
        assert ctlpeer.wait_until(lambda: counter(mp["c2"], "changes") >= 1, 5)
        assert ctlpeer.wait_until(lambda: status(tmp_path, "c2") == status(tmp_path, "c1"), 5)
        assert counter(mp["c2"], "reads") == 1
    finally:
        c1.stop()
        assert c2.stop() == 0
