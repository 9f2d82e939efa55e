"""--store etcd: the live state under the prefix (one key per service), written in
transactions guarded by revisions; a restarted controller adopts it and moves nothing;
corrupt or foreign values are refused with a log line and never crash the controller or
replace its live state."""
import os

import pytest

import ctlpeer
from ctlpeer import SVC

KEY = "/peak/svc/" + SVC


def start(tmp, etcd, name="ctl", cfg=None):
    ctl = ctlpeer.Controller(str(tmp), cfg, ("--store", "etcd", "--etcd", etcd.url),
                             name=name)
    assert ctlpeer.wait_until(lambda: "leading (store etcd)" in ctl.log(), 10), ctl.log()
    return ctl


def test_restart_adopts_the_stored_assignment(tmp_path, etcd):
    ctl = start(tmp_path, etcd, cfg=ctlpeer.config())
    try:
        a = ctlpeer.Agent(ctl.port)
        _, initial = a.read_map()
        a.send(f"health {SVC} pod-1 down\n")
        a.read_map()
        a.send(f"health {SVC} pod-1 up\n")
        _, live = a.read_map()
        assert live != initial and ctlpeer.slices(live) == ctlpeer.slices(initial)
        a.close()
    finally:
        assert ctl.stop() == 0
    stored = etcd.keys()
    assert list(stored) == [KEY], stored  # the leader key went with the revoked lease
    assert stored[KEY].startswith(f"map {SVC}\n") and f"weight {SVC} pod-1 1\n" in stored[KEY]
    assert not os.path.exists(tmp_path / "peak.yaml.state")  # no state file with etcd
    rev = etcd.mod_revision(KEY)
    again = start(tmp_path, etcd, name="ctl-again")
    try:
        a = ctlpeer.Agent(again.port)
        _, after = a.read_map()
        assert after == live, "the restarted controller moved slices"
        # it saved before it listened: an unchanged value is not written again
        assert etcd.mod_revision(KEY) == rev
        assert "assignment from the store (etcd)" in again.log()
        a.close()
    finally:
        assert again.stop() == 0


def test_health_is_stored_and_adopted(tmp_path, etcd):
    ctl = start(tmp_path, etcd, cfg=ctlpeer.config())
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        a.send(f"health {SVC} pod-2 down\n")
        _, down = a.read_map()
        assert ctlpeer.wait_until(lambda: f"health {SVC} pod-2 down\n" in etcd.get(KEY))
        a.close()
    finally:
        assert ctl.stop() == 0
    again = start(tmp_path, etcd, name="ctl-again")
    try:
        a = ctlpeer.Agent(again.port)
        _, m = a.read_map()
        assert m == down and "pod-2" not in m  # adopted down: nothing moved
        a.close()
    finally:
        assert again.stop() == 0


BAD = {
    "garbage": b"not a control line at all",
    "binary": b"map api.svc.example.\n\x00\xff\xfe\nend\n",
    "foreign service": b"map other.svc.example.\nep pod-0 0/8\nend\n",
    "no end": b"map api.svc.example.\nep pod-0 0/8\n",
    "overlapping slices": (b"map api.svc.example.\nep pod-0 0/8\nep pod-1 0/8\nend\n"
                           b"weight api.svc.example. pod-0 1\n"
                           b"weight api.svc.example. pod-1 1\n"),
    "json": b'{"map": "api.svc.example."}',
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_corrupt_value_at_start_is_refused(tmp_path, etcd, what):
    etcd.put(KEY, BAD[what])
    etcd.put("/peak/other/thing", b"\x01\x02")  # foreign keys elsewhere are not read
    ctl = start(tmp_path, etcd, cfg=ctlpeer.config())
    try:
        a = ctlpeer.Agent(ctl.port)
        _, m = a.read_map()
        assert ctlpeer.slices(m) == {"pod-0": 86, "pod-1": 85, "pod-2": 85}, m
        log = ctl.log()
        if what == "overlapping slices":  # well formed, but it does not fit: not adopted
            assert "does not match the configuration" in log, log
        else:
            assert f"etcd: {KEY}: refused" in log, log
        # the leader writes its live state over the corrupt value
        assert ctlpeer.wait_until(lambda: (etcd.get(KEY) or "").startswith(f"map {SVC}\n"))
        assert etcd.get("/peak/other/thing") == "\x01\x02"
        a.close()
    finally:
        assert ctl.stop() == 0


def test_value_corrupted_while_running_keeps_the_live_state(tmp_path, etcd):
    ctl = start(tmp_path, etcd, cfg=ctlpeer.config())
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        a.send(f"health {SVC} pod-1 down\n")
        _, down = a.read_map()
        etcd.put(KEY, b"\xff garbage from elsewhere")
        a.send(f"health {SVC} pod-1 up\n")
        _, up = a.read_map()
        assert ctlpeer.slices(up) == {"pod-0": 86, "pod-1": 85, "pod-2": 85}
        # pod-0 and pod-2 kept every slice they held: the live state was not replaced
        for ep in ("pod-0", "pod-2"):
            had = {s for st, l2 in down[ep] for s in range(st, st + (1 << l2))}
            has = {s for st, l2 in up[ep] for s in range(st, st + (1 << l2))}
            assert has <= had
        # the map goes out before the save: wait for the save, not a fixed time
        assert ctlpeer.wait_until(lambda: "written by another writer" in ctl.log()), ctl.log()
        assert ctlpeer.wait_until(lambda: "ep pod-1 " in (etcd.get(KEY) or ""))
        assert ctl.proc.poll() is None
        a.close()
    finally:
        assert ctl.stop() == 0


def test_bad_store_options_exit_2(tmp_path, etcd):
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(ctlpeer.config())
    import subprocess
    for extra in (["--store", "etcd"], ["--store", "zookeeper"],
                  ["--store", "etcd", "--etcd", "localhost:2379"],
                  ["--store", "etcd", "--etcd", etcd.url, "--etcd-prefix", "peak"],
                  ["--store", "etcd", "--etcd", etcd.url, "--state", "x"],
                  ["--etcd", etcd.url],
                  ["--store", "etcd", "--etcd", etcd.url, "--lease-ttl", "0"],
                  ["--store", "etcd", "--etcd", etcd.url, "--agent-ttl", "0"],
                  ["--store", "etcd", "--etcd", etcd.url, "--lease-ttl", "4", "--agent-ttl",
                   "1"]):
        p = subprocess.run([ctlpeer.PEAK, "controller", "--config", str(cfg), "--listen",
                            "[::1]:1", *extra], capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, (extra, p.stdout, p.stderr)
        p = subprocess.run([ctlpeer.PEAK, "controller", "--config", str(cfg), "--check",
                            *extra], capture_output=True, text=True, timeout=10)
        assert p.returncode == 2 and "ok" not in p.stdout, (extra, p.stdout, p.stderr)
    p = subprocess.run([ctlpeer.PEAK, "controller", "--config", str(cfg), "--check",
                        "--store", "etcd", "--etcd", etcd.url + "," + etcd.url],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and p.stdout == "ok\n", p
