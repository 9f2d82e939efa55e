"""Live assignment (issue 20): pods started with --controller learn their slices from the
controller's maps, so a slice move by the controller migrates the slices' objects with no
operator step. A pod drained by the controller (health down: its slices go to the others)
holds nothing while objects are written; when it comes back (health up), the controller
gives it its share again and it pulls exactly the objects of those slices from their old
owners, while a reader that never stops reads every object with no failure (the old owners
answer reads of keys they held until the routes move, the new owner reads a miss through).
The test moves the client's routes as an agent would, from each pod's logged blocks. The
controller and the pods share a key (--key-file): the pods' hellos carry its tag and they
check the controller's welcome, as agents do.

  [cl] client, peak dns, peak controller [2001:db8:aa:ff::1]:7000 (lo)
    |  v0 -- [a] s1    v1 -- [b] s2    v2 -- [c] s3      (pods: --controller, routes via cl)
"""
import ipaddress
import os
import re
import subprocess

import pytest

from conftest import NAME, PEAK, PORT, Net, wait_for
from test_migrate import bulk, objects, slice_held

N = 200
CTL = "2001:db8:aa:ff::1"
CTL_PORT = 7000


class Controller:
    def __init__(self, net, port=CTL_PORT, name="controller"):
        self.net, self.sock = net, str(net.tmp / f"{name}.sock")
        self.log_path = net.tmp / f"{name}.log"
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", net.cl, PEAK, "controller", "--config",
             str(net.config), "--listen", f"[{CTL}]:{port}", "--control", self.sock,
             "--state", "none", "--key-file", str(net.tmp / "ctl.key")], stdout=self.logf, stderr=subprocess.STDOUT)

    def ctl(self, *cmd):
        r = subprocess.run([PEAK, "controller-ctl", "--control", self.sock, *cmd],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stdout + r.stderr + self.log_path.read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def controlled_testbed(tmp_path, *pod_extra, controllers=f"[{CTL}]:{CTL_PORT}"):
    """Yields (Net of 3 pods under a controller, Controller), torn down after; pod_extra: more
    options for every pod; controllers: their --controller (the one started listens on
    CTL_PORT). For fixtures (yield from)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    key = tmp_path / "ctl.key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    n = Net(tmp_path, npods=3,
            pod_extra=["--controller", controllers, "--key-file", str(key),
                       "--timeout", "3000", *pod_extra])
    c = None
    try:
        n.up()
        subprocess.run(["ip", "-n", n.cl, "addr", "add", f"{CTL}/128", "dev", "lo"],
                       check=True)
        c = Controller(n)
        yield n, c
    finally:
        if c:
            c.stop()
        n.down()


@pytest.fixture()
def live(tmp_path):
    yield from controlled_testbed(tmp_path)


def maps(pod):
    return pod.logtext().count("new map from the controller")


def blocks_now(pod):
    """The pod's blocks as its last log of them says (after its last map)."""
    text = pod.logtext()
    last = text.rfind("new map from the controller")
    return re.findall(rf"store: {pod.id} holds (\S+)", text[last if last >= 0 else 0:])


def reroute(net, pods):
    for i, pid in enumerate(sorted(pods)):
        for block in blocks_now(net.pods[pid]):
            net.route_move(block, f"2001:db8:aa:{net.nets[int(pid[1:]) - 1]}::2")


def test_controller_moves_slices_and_the_objects_follow(live, tmp_path):
    net, ctl = live
    pods = net.pods
    for pod in pods.values():
        wait_for(lambda: "connected to controller" in pod.logtext(), f"{pod.id} linked")
    wait_for(lambda: ctl.log_path.read_text().count("(authenticated)") >= 3, "3 hellos")
    ctl.ctl("health", NAME, "s3", "down")
    for pid in ("s1", "s2", "s3"):
        wait_for(lambda: maps(pods[pid]) >= 1, f"{pid}'s first map")
    assert "0 slice(s) here" in pods["s3"].logtext()
    reroute(net, ("s1", "s2"))

    p = bulk(net, "put", str(N))
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    before = {pid: objects(pod) for pid, pod in pods.items()}
    assert not before["s3"] and len(before["s1"] | before["s2"]) == N

    stop = tmp_path / "stop"
    reader = bulk(net, "get", str(N), str(stop))
    try:
        wait_for(lambda: reader.poll() is not None or pods["s1"].metrics().get(
            'peak_store_requests_total{method="GET",status="200"}', 0) > 10, "first reads")
        done0 = pods["s3"].logtext().count("store: migration done")
        ctl.ctl("health", NAME, "s3", "up")
        wait_for(lambda: maps(pods["s3"]) >= 2, "s3's map with its slices back")
        reroute(net, ("s3",))
        wait_for(lambda: pods["s3"].logtext().count("store: migration done") > done0,
                 "the migration", 60)
        # a whole round of reads against the final routes
        got = pods["s3"].metrics().get('peak_store_requests_total{method="GET",status="200"}', 0)
        wait_for(lambda: reader.poll() is not None or pods["s3"].metrics().get(
            'peak_store_requests_total{method="GET",status="200"}', 0) > got + 30,
            "reads after the move")
    finally:
        stop.write_text("")
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, out + err
    assert " failed 0 " in out, out
    held = blocks_now(pods["s3"])
    assert held
    moved = objects(pods["s3"])
    want = {f for f in before["s1"] | before["s2"] if slice_held(f, held)}
    assert moved == want, (len(moved), len(want))
    assert 0 < len(moved) < N
    # under the controller's map a pod's first reply on a kept connection lists its slice
    # prefixes (X-Peak-Routes), so a client reuses one connection for all of them
    addr = str(ipaddress.ip_network(held[0])[1])
    out = net.py("import socket,sys\ns=socket.create_connection((sys.argv[1], int(sys.argv[2])), 10)\n"
                 "s.sendall(b'GET /o/x HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n')\nb=b''\n"
                 "while b'\\r\\n\\r\\n' not in b:\n b+=s.recv(4096)\n"
                 "sys.stdout.write(b.decode())", addr, str(PORT))
    routes = re.search(r"X-Peak-Routes: ([^\r\n]*)", out)
    assert routes and routes.group(1).split() == held[:len(routes.group(1).split())], out
