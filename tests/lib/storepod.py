"""What the object store's regression tests (tests/regress/test_store_*) share: the store
service's configuration and one 'peak store serve' pod, started (and waited for) and
stopped by its own PID, optionally in a network namespace."""
import subprocess
import time

from peaktest import K, PEAK


def store_config(npods=1, replicas=1):
    """The store service (2001:db8:8::/64, slice 72, select=obj, host=src, port 8080) with
    endpoints s1..sNPODS at 2001:db8:104::i, and the rule's replicas."""
    rep = f"    replicas: {replicas}\n" if replicas != 1 else ""
    eps = "".join(f'      - {{id: s{i}, address: "2001:db8:104::{i}"}}\n'
                  for i in range(1, npods + 1))
    return f"""
zone:
  name: svc.example.
  ns:
    - {{name: ns1.svc.example., address: "2001:db8:53::1"}}
  soa: {{primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 7, minimum: 20}}
services:
  - name: store.svc.example.
    prefixes: [2001:db8:8::/64]
    slice: 72
    select: obj
    host: src
    port: 8080
    key: {K}
{rep}    endpoints:
{eps}"""


def wait_for(cond, what, timeout=30):
    """Polls cond until it holds; fails the test after timeout seconds."""
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class StorePod:
    """'peak store serve --config CONFIG --id ID --data DIR --listen LISTEN [EXTRA...]',
    logging to LOG, in namespace netns if given. start() waits for its 'serving' line;
    stop() ends it by its PID (SIGTERM, then SIGKILL after 10 s) and returns its exit
    status. Usable as a context manager (started on entry, stopped on exit)."""

    def __init__(self, config, pod_id, data, listen, log, extra=(), netns=None):
        self.config, self.id, self.data, self.listen = config, pod_id, data, listen
        self.log, self.extra, self.netns = log, list(extra), netns
        self.proc = None

    def start(self, timeout=20):
        cmd = [PEAK, "store", "serve", "--config", str(self.config), "--id", self.id,
               "--data", str(self.data), "--listen", self.listen, *self.extra]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while "serving" not in self.logtext():
            assert self.proc.poll() is None and time.time() < deadline, self.logtext()
            time.sleep(0.02)
        return self

    def logtext(self):
        with open(self.log) as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
