"""One etcd member on loopback for a test: a temporary data dir, free client and peer
ports, stopped by its own PID. get/put/keys speak the v3 JSON gateway the controller uses
(keys and values base64), independently of the C code."""
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
    def __init__(self, datadir):
        os.makedirs(datadir, exist_ok=True)
        self.port, peer = peaktest.free_port(), peaktest.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        purl = f"http://127.0.0.1:{peer}"
        self.logf = open(os.path.join(datadir, "etcd.log"), "w")
        self.proc = subprocess.Popen(
            [ETCD, "--name", "t", "--data-dir", os.path.join(datadir, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
             "--initial-cluster", f"t={purl}", "--log-level", "warn"],
            stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.call("/v3/kv/range", {"key": b64("x")})
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                assert self.proc.poll() is None, "etcd exited"
                assert time.monotonic() < deadline, "etcd did not answer in 20 s"
                time.sleep(0.05)

    def call(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def put(self, key, value):
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def get(self, key):
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None

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
