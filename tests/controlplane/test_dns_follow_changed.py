"""peak dns --store etcd applies exactly what changed: of two services stored under
/peak/svc/, a change of one (written straight to etcd, read when the watch's socket wakes
the replica) shows in its endpoints, and the other's endpoints (health, weight, slices)
stay as they were."""
import ctlpeer
import peaktest
from ctlpeer import SVC

WEB = "web.svc.example."


def rec(svc, *lines):
    return f"map {svc}\nep pod-0 0/8\nend\n" + "".join(f"{x}\n" for x in lines)


def lines_of(text, svc):
    return sorted(x for x in text.splitlines() if x.startswith(svc + " "))


def test_only_the_changed_service_is_applied(tmp_path, etcd):
    cfg = ctlpeer.config() + f"""  - name: {WEB}
    prefixes: [2001:db8:6::/64]
    slice: 72
    endpoints:
      - {{id: pod-0, address: "2001:db8:101::1"}}
      - {{id: pod-1, address: "2001:db8:101::2"}}
"""
    etcd.put("/peak/svc/" + SVC, rec(SVC, f"health {SVC} pod-1 down"))
    etcd.put("/peak/svc/" + WEB, rec(WEB, f"weight {WEB} pod-0 5", f"health {WEB} pod-1 down"))
    d = peaktest.Server(tmp_path, cfg, extra=("--store", "etcd", "--etcd", etcd.url))
    try:
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-1 down" in d.status() and
                                  f"{WEB} pod-0 up weight=5" in d.status(), 10), d.status()
        web = lines_of(d.status(), WEB)
        assert len(web) == 2 and f"{WEB} pod-1 down weight=1 slices=0" in web, web
        n = d.logtext().count("the stored state applied")
        etcd.put("/peak/svc/" + SVC, rec(SVC, f"weight {SVC} pod-0 3"))
        assert ctlpeer.wait_until(lambda: f"{SVC} pod-0 up weight=3" in d.status() and
                                  f"{SVC} pod-1 up" in d.status(), 10), d.status()
        assert lines_of(d.status(), WEB) == web
        applied = [x for x in d.logtext().splitlines() if "the stored state applied" in x]
        assert len(applied) == n + 1 and "(2 changes)" in applied[-1], applied
        assert d.query(SVC, "AAAA").answer and d.query(WEB, "AAAA").answer
    finally:
        d.stop()
