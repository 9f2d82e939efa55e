"""Defect 2 (issue 15), the controller's part: SIGHUP killed 'peak controller' with or
without --metrics (it never blocked SIGHUP, and the metrics thread started before any
signal was blocked, so a signal could land on that thread). Now signals are blocked before
any thread starts and SIGHUP reloads the configuration: a broken file is refused and logged,
the running one kept."""
import signal

import pytest

import ctlpeer


@pytest.mark.parametrize("with_metrics", [True, False])
def test_sighup_reloads_then_sigterm_exits_0(tmp_path, with_metrics):
    args = ["--metrics", f"[::1]:{ctlpeer.peaktest.free_port()}"] if with_metrics else []
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(), args=args)
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        for i in range(1, 4):  # several, so one cannot slip by on a lucky thread
            ctl.proc.send_signal(signal.SIGHUP)
            assert ctlpeer.wait_until(
                lambda: ctl.proc.poll() is not None or
                ctl.log().count("configuration reloaded") >= i)
            assert ctl.proc.poll() is None, f"SIGHUP killed it: {ctl.proc.returncode}"
        # (an unchanged configuration sends no map: tests/controlplane/test_reload_changed.py)
        # a broken configuration is refused; the controller keeps serving the old one
        with open(ctl.cfg, "a") as f:
            f.write("  - name: [broken\n")
        n = ctl.log().count("reload refused")
        ctl.proc.send_signal(signal.SIGHUP)
        assert ctlpeer.wait_until(lambda: ctl.log().count("reload refused") > n or
                                  ctl.proc.poll() is not None)
        assert ctl.proc.poll() is None
        a.send(f"health {ctlpeer.SVC} pod-1 down\n")
        _, m = a.read_map()
        assert "pod-1" not in m
        a.close()
    finally:
        assert ctl.stop(signal.SIGTERM) == 0
