"""What bench/controlplane/scale.py and replicas.py share: the logs (read, millisecond stamps),
bounded waits, percentiles, a line on a control socket, the controller and `peak dns`
replicas on etcd started on loopback, and their end (each stopped by its own PID), with the
logs shown on a failure or kept in a directory."""
import calendar
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "controlplane"))

import etcdproc  # noqa: E402,F401  (the benches' etcd)
import peaktest  # noqa: E402

PEAK = os.environ.get("PEAK_BIN", os.path.join(ROOT, "build", "peak"))


def readlog(path):
    with open(path, errors="replace") as f:
        return f.read()


def log_time(line):
    """The wall time (s) of a log line ("2026-12-02T13:40:01.123Z info ..."), or None."""
    try:
        return calendar.timegm(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S")) + \
            int(line[20:23]) / 1000
    except (ValueError, IndexError):
        return None


def wait_for(fn, timeout, step=0.05, what="condition"):
    """fn's first true value, polled every step seconds; TimeoutError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(step)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] if v else None


def unix_command(path, line, until=None, timeout=10):
    """One command line on a control socket (what `peak controller-ctl` or `peak dns-ctl`
    sends); the reply until the peer closes (or, with until, until the reply ends with
    it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        if until is None:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while not (until and data.endswith(until)):
            d = s.recv(65536)
            if not d:
                break
            data += d
    return data.decode(errors="replace")


def controller(cfg, etcd_url, log, *args):
    """`peak controller --store etcd` on a free loopback port, its output in log."""
    return subprocess.Popen([PEAK, "controller", "--config", cfg, "--listen",
                             f"[::1]:{peaktest.free_port()}", "--store", "etcd", "--etcd",
                             etcd_url, *args], stdout=open(log, "w"), stderr=subprocess.STDOUT)


def replica(cfg, etcd_url, log, port, *args):
    """`peak dns --store etcd` (one UDP worker) on [::1]:port, its output in log."""
    return subprocess.Popen([PEAK, "dns", "--config", cfg, "--listen", f"[::1]:{port}",
                             "--threads", "1", *args, "--store", "etcd", "--etcd", etcd_url],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def stop(procs, etcd=None):
    """Stops the processes the bench started (SIGTERM, then SIGKILL after 10 s), then etcd."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if etcd:
        etcd.stop()


def show_logs(tmp):
    """The end of every log in tmp on stderr (why a run failed)."""
    for name in sorted(os.listdir(tmp)):
        if name.endswith(".log"):
            print(f"--- {name}\n{readlog(os.path.join(tmp, name))[-3000:]}", file=sys.stderr)


def keep_logs(tmp, keep):
    """Copies the logs of tmp to the directory keep (None: nothing)."""
    if not keep:
        return
    os.makedirs(keep, exist_ok=True)
    for name in os.listdir(tmp):
        if name.endswith(".log"):
            shutil.copy(os.path.join(tmp, name), keep)
