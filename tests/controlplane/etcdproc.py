"""One etcd member on loopback for a test: a temporary data dir, free client and peer
ports, stopped by its own PID. get/put/keys speak the v3 JSON gateway the controller uses
(keys and values base64), independently of the C code. With netns, the member runs on that
network namespace's loopback (and the test's requests go there)."""
import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import peaktest

ETCD = os.environ.get("ETCD_BIN", "/usr/bin/etcd")


def b64(s):
    return base64.b64encode(s if isinstance(s, bytes) else s.encode()).decode()


class Etcd:
    """One member; with cluster (name -> peer URL) and name, a member of that cluster."""

    def __init__(self, datadir, name="t", port=None, peer=None, cluster=None, token=None,
                 netns=None):
        os.makedirs(datadir, exist_ok=True)
        self.port = port or peaktest.free_port()
        peer = peer or peaktest.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        purl = f"http://127.0.0.1:{peer}"
        cluster = cluster or {name: purl}
        self.logf = open(os.path.join(datadir, "etcd.log"), "w")
        self.netns = netns
        self.proc = subprocess.Popen(
            [*(["ip", "netns", "exec", netns] if netns else []), ETCD,
             "--name", name, "--data-dir", os.path.join(datadir, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
             "--initial-cluster", ",".join(f"{n}={u}" for n, u in cluster.items()),
             "--initial-cluster-token", token or f"peak-{os.getpid()}-{peer}",
             "--log-level", "warn"],
            stdout=self.logf, stderr=subprocess.STDOUT)

    def wait(self, timeout=20):
        """Until the member answers a linearizable read (so the cluster has a quorum)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("/v3/kv/range", {"key": b64("x")})
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                assert self.proc.poll() is None, "etcd exited: " + self.log_tail()
                assert time.monotonic() < deadline, f"etcd did not answer in {timeout} s"
                time.sleep(0.05)

    def log_tail(self, n=20):
        """The last n lines of the member's log."""
        self.logf.flush()
        with open(self.logf.name, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def call(self, path, body):
        if self.netns:
            import agentns  # tests/cluster: runs the request inside the namespace
            return agentns.in_netns(self.netns, lambda: self._call(path, body))
        return self._call(path, body)

    def _call(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def put(self, key, value):
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def get(self, key):
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None

    def mod_revision(self, key):
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return int(kvs[0]["mod_revision"]) if kvs else 0

    def keys(self, prefix="/peak/"):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        kvs = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
        return {base64.b64decode(kv["key"]).decode():
                base64.b64decode(kv.get("value", "")).decode()
                for kv in kvs.get("kvs", [])}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def cluster(datadir, n=3):
    """n members on loopback, all answering; stop each with .stop()."""
    ports = [(peaktest.free_port(), peaktest.free_port()) for _ in range(n)]
    peers = {f"m{i}": f"http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports)}
    token = f"peak-{os.getpid()}-{ports[0][1]}"
    members = [Etcd(os.path.join(datadir, f"m{i}"), f"m{i}", c, p, peers, token)
               for i, (c, p) in enumerate(ports)]
    try:
        for m in members:
            m.wait()
    except BaseException:
        for m in members:
            m.stop()
        raise
    return members


def bed(cls, tag, tmp_path, peak, **kw):
    """A fixture's body: a testbed of class cls (tag plus the test's PID) up for the test
    and down after it, whatever happened; skipped without root or etcd."""
    import pytest
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not os.path.exists(ETCD):
        pytest.skip("etcd is not installed (scripts/deps.sh installs etcd-server)")
    t = cls(f"{tag}{os.getpid() % 10000}", str(tmp_path), peak, **kw)
    try:
        t.up()
        yield t
    finally:
        t.down()
