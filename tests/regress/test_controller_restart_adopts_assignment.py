"""Defect 9 (issue 15): a restarted controller rebuilt a fresh layout (assign_init) that
differs from the live one after any endpoint went down and came back, so a restart moved
slices needlessly (the README promised it did not). The controller now saves the live
assignment on every change (atomically, by default to CONFIG.state) and adopts it at start
when it matches the configuration: the maps after a restart equal those before."""
import ctlpeer
from ctlpeer import SVC


def test_restart_moves_nothing_after_down_up(tmp_path):
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config())
    try:
        a = ctlpeer.Agent(ctl.port)
        _, initial = a.read_map()
        a.send(f"health {SVC} pod-1 down\n")
        a.read_map()
        a.send(f"health {SVC} pod-1 up\n")
        _, live = a.read_map()
        assert ctlpeer.slices(live) == ctlpeer.slices(initial)
        assert live != initial  # the precondition: down/up changed the layout
        a.close()
    finally:
        assert ctl.stop() == 0
    again = ctlpeer.Controller(str(tmp_path), name="ctl-again")
    try:
        a = ctlpeer.Agent(again.port)
        _, after = a.read_map()
        assert after == live, "the restarted controller moved slices"
        a.close()
    finally:
        assert again.stop() == 0


def test_new_endpoint_after_restart_takes_only_its_share(tmp_path):
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config())
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        a.send(f"health {SVC} pod-1 down\n")
        a.read_map()
        a.send(f"health {SVC} pod-1 up\n")
        _, live = a.read_map()
        a.close()
    finally:
        assert ctl.stop() == 0
    # one endpoint more in the file: the saved map is kept and pod-3 joins as it would
    # live, taking only its share; every other slice keeps its owner
    with open(tmp_path / "peak.yaml", "w") as f:
        f.write(ctlpeer.config(4))
    again = ctlpeer.Controller(str(tmp_path), name="ctl-again")
    try:
        a = ctlpeer.Agent(again.port)
        _, m = a.read_map()
        assert ctlpeer.slices(m) == {"pod-0": 64, "pod-1": 64, "pod-2": 64, "pod-3": 64}
        owner = lambda mp: {s: ep for ep, bl in mp.items() for st, l2 in bl
                            for s in range(st, st + (1 << l2))}
        before, after = owner(live), owner(m)
        moved = [s for s in before if before[s] != after[s]]
        assert len(moved) == 64 and all(after[s] == "pod-3" for s in moved)
        a.close()
    finally:
        assert again.stop() == 0


def test_saved_down_endpoint_comes_back_unless_reported(tmp_path):
    """An endpoint saved as down is adopted down (nothing moves at the restart), and comes
    back once an agent said hello without reporting it down: it may have recovered while
    the controller was away, and agents report only changes and what is down."""
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config())
    try:
        a = ctlpeer.Agent(ctl.port)
        a.read_map()
        a.send(f"health {SVC} pod-1 down\n")
        _, down = a.read_map()
        a.close()
    finally:
        assert ctl.stop() == 0
    again = ctlpeer.Controller(str(tmp_path), name="ctl-again")
    try:
        a = ctlpeer.Agent(again.port)
        _, m = a.read_map()
        assert m == down  # adopted as it was: pod-1 down, nothing moved
        _, m = a.read_map(timeout=10)  # then pod-1 is up again (after a short grace)
        assert "pod-1" in m and ctlpeer.slices(m)["pod-1"] == 85
        assert "pod-1 up" in again.log()
        a.close()
    finally:
        assert again.stop() == 0
