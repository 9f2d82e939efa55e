"""What the object store's regression tests (tests/regress/test_store_*) share: the store
service's configuration and one 'peak store serve' pod, started (and waited for) and
stopped by its own PID, optionally in a network namespace."""
import contextlib
import os
import random
import subprocess
import time

from peaktest import K, PEAK, stop_process


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
        return stop_process(self.proc) if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


PUT = """
import http.client, sys
c = http.client.HTTPConnection("2001:db8:104::1", 8080, timeout=10)
for i in range(int(sys.argv[1])):
    c.request("PUT", f"/o/k{i}", body=b"x" * 100)
    r = c.getresponse(); r.read()
    assert r.status == 201, r.status
"""


@contextlib.contextmanager
def repair_pair(tmp_path, tag, nobjects, extra=None):
    """Two pods with replicas: 2 in a namespace of their own (named tag, the PID and a random
    number), s1 on 2001:db8:104::1 and s2 on ::2 (port 8080, loopback); s1 started and given
    nobjects objects of 100 bytes over one connection, s2 made but not started (its start is
    a repair from s1). extra: {pod id: more options}. Yields (namespace, {id: StorePod});
    stops both and deletes the namespace after, then checks both exited 0."""
    ns = f"{tag}{os.getpid() % 10000}{random.randrange(1000)}"
    cfg = tmp_path / "store.yaml"
    cfg.write_text(store_config(2, replicas=2))
    pods = {pid: StorePod(cfg, pid, tmp_path / pid, f"[2001:db8:104::{pid[1]}]:8080",
                          tmp_path / f"{pid}.log", (extra or {}).get(pid, ()), netns=ns)
            for pid in ("s1", "s2")}
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for a in ("1", "2"):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"2001:db8:104::{a}/128", "dev",
                            "lo", "nodad"], check=True)
        pods["s1"].start()
        subprocess.run(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", PUT,
                        str(nobjects)], check=True, timeout=120)
        yield ns, pods
    finally:
        for pod in pods.values():
            pod.stop()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for pod in pods.values():
        assert pod.proc is None or pod.proc.returncode == 0, pod.logtext()
