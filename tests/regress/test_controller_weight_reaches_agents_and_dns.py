"""Defect 9 (issue 15): 'peak dns-ctl weight' changed only DNS steering; the controller,
which owns the slice maps, never heard of it, so AAAA answers and installed routes could
disagree. The controller is now the single authority: 'peak controller-ctl weight' (its
--control socket) rebalances the assignment, pushes the maps to the agents and tells peak
dns the weight. The socket is created mode 0600 and never replaces anything but a stale
socket."""
import os
import socket
import stat
import subprocess
import threading

import ctlpeer
from ctlpeer import SVC


class FakeDns:
    """A peak dns control socket: records each command line and answers ok."""

    def __init__(self, path):
        self.lines = []
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.bind(path)
        self.s.listen(16)
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            with c:
                c.settimeout(5)
                data = b""
                while not data.endswith(b"\n"):
                    d = c.recv(4096)
                    if not d:
                        break
                    data += d
                self.lines.append(data.decode().strip())
                c.sendall(b"ok\n")


def ctl_cmd(sock, *words):
    return subprocess.run([ctlpeer.PEAK, "controller-ctl", "--control", sock, *words],
                          capture_output=True, text=True, timeout=10)


def test_weight_through_the_controller(tmp_path):
    dns = FakeDns(str(tmp_path / "dns.sock"))
    sock = str(tmp_path / "ctl.sock")
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                             args=["--control", sock, "--dns-control",
                                   str(tmp_path / "dns.sock")])
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        a = ctlpeer.Agent(ctl.port)
        _, m = a.read_map()
        assert ctlpeer.slices(m) == {"pod-0": 86, "pod-1": 85, "pod-2": 85}
        r = ctl_cmd(sock, "weight", SVC, "pod-0", "3")
        assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
        _, m = a.read_map()
        n = ctlpeer.slices(m)
        # 256 slices by 3:1:1 (largest remainder, rounding towards what owners hold)
        assert n["pod-0"] in (153, 154) and sum(n.values()) == 256, n
        assert ctlpeer.wait_until(lambda: f"weight {SVC} pod-0 3" in dns.lines), dns.lines
        r = ctl_cmd(sock, "status")
        assert f"{SVC} pod-0 up weight 3 slices {n['pod-0']}" in r.stdout, r.stdout
        # a health change reaches peak dns too
        a.send(f"health {SVC} pod-2 down\n")
        assert ctlpeer.wait_until(lambda: f"health {SVC} pod-2 down" in dns.lines), dns.lines
        a.close()
        # what it refuses: no such endpoint, a weight out of range, no weight left
        assert ctl_cmd(sock, "weight", SVC, "nope", "1").returncode == 2
        assert ctl_cmd(sock, "weight", SVC, "pod-0", "-1").returncode == 2
        assert ctl_cmd(sock, "weight", SVC, "pod-1", "0").returncode == 0
        r = ctl_cmd(sock, "weight", SVC, "pod-0", "0")
        assert r.returncode == 2 and "no weight left" in r.stdout, r.stdout
    finally:
        assert ctl.stop() == 0
        dns.s.close()
    assert not os.path.exists(sock)


def test_control_path_that_is_a_file_is_kept(tmp_path):
    victim = tmp_path / "precious"
    victim.write_text("data\n")
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(), args=["--control", str(victim)],
                             wait=False)
    try:
        assert ctl.proc.wait(10) == 1
        assert "not a socket" in ctl.log()
        assert victim.read_text() == "data\n"
    finally:
        ctl.stop()
