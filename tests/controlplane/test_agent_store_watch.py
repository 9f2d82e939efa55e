"""peak agent --store etcd (issue 18): the agent follows the service records in etcd with
peak dns's follower and applies them through its link's line handlers, so it routes the
stored maps with no controller reachable, takes a change a controller stores while its link
is down, refuses a corrupt or foreign record (its routes stay) and resumes its watch after
etcd restarts.

  [*-c] c0 -- veth -- n0 [*-n] node1: etcd (on its loopback), agent, controller
                           va 2001:db8:100:1::1/64 -- ::a [*-a] pod-a
                           vb 2001:db8:100:2::1/64 -- ::b [*-b] pod-b
                           ve 2001:db8:100:3::1/64 -- ::e [*-e] pod-e (second test)

On the code before this, `peak agent` refuses --store (a usage error): every test fails at
its first wait."""
import ipaddress
import os
import signal
import subprocess
import sys
import time

import pytest

import etcdproc
import peaktest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from test_agent import PEAK, cl, config, covers_exactly, ip  # noqa: E402,F401
from test_agent_runtime_endpoint import pod_e_namespace, serve_pod_e  # noqa: E402
from test_failover import start, start_pods, wait_until  # noqa: E402

SVC = "api.svc.example."
KEY = "/peak/svc/" + SVC
POD_A, POD_B, POD_E = "2001:db8:100:1::a", "2001:db8:100:2::b", "2001:db8:100:3::e"
ALL = 1 << (78 - 64)  # the service's slices


def all_to(pod):
    """A stored record giving every slice of the service to pod."""
    return f"map {SVC}\nep {pod} 0/14\nend\nweight {SVC} {pod} 1\n"


def slices_via(c, gw):
    return sum(1 << (78 - ipaddress.ip_network(d).prefixlen)
               for d, g, _ in c.routes() if g == gw)


def routed_to(c, gw):
    return slices_via(c, gw) == ALL and covers_exactly(c.routes(), "2001:db8:5::/64")


def metrics(c):
    out = subprocess.run(["ip", "netns", "exec", c.n, "curl", "-s",
                          "http://[::1]:9100/metrics"], capture_output=True, text=True).stdout
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in out.splitlines()
            if ln.startswith("peak_agent_store_")}


def need_etcd():
    if not os.path.exists(etcdproc.ETCD):
        pytest.skip("etcd is not installed (scripts/deps.sh installs etcd-server)")


def test_agent_routes_stored_maps_refuses_bad_records_and_resumes(cl, tmp_path):
    need_etcd()
    cl.cfg.write_text(config(cl.tag))
    port, peer = peaktest.free_port(), peaktest.free_port()
    etcd = etcdproc.Etcd(str(tmp_path / "etcd"), port=port, peer=peer, netns=cl.n).wait()
    try:
        etcd.put(KEY, all_to("pod-a"))
        start_pods(cl)
        # no controller runs (and none is named): the stored map is routed at once
        agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1",
                      "--store", "etcd", "--etcd", etcd.url, "--metrics", "[::1]:9100")
        alog = agent.log.read_text
        assert wait_until(lambda: routed_to(cl, POD_A)), (cl.routes(), alog())
        assert "agent: etcd: following /peak/svc/ from revision" in alog()
        assert f"etcd: map of {SVC} applied from the store" in alog()
        # a change stored is followed through the watch
        t0 = time.monotonic()
        etcd.put(KEY, all_to("pod-b"))
        assert wait_until(lambda: routed_to(cl, POD_B)), (cl.routes(), alog())
        print(f"a stored change routed {1e3 * (time.monotonic() - t0):.0f} ms after the put "
              "(polled every 20 ms)")
        # only the weights change: the same map, applied once (no second "applied")
        etcd.put(KEY, all_to("pod-b").replace(" 1\n", " 2\n"))
        assert wait_until(lambda: metrics(cl).get(
            'peak_agent_store_records_total{result="same"}') == 1), metrics(cl)
        assert alog().count(f"map of {SVC} applied from the store") == 2
        # corrupt and foreign records are refused with a log line; the routes stay
        etcd.put(KEY, f"map {SVC}\nep pod-a 0/14\n")  # no end
        etcd.put("/peak/svc/other.svc.example.", "\x00garbage\n")
        etcd.put(KEY, f"map {SVC}\nep pod-zz 0/14\nend\n")  # no such endpoint
        assert wait_until(lambda: f"record of {SVC} refused" in alog()), alog()
        assert f"agent: etcd: {KEY}: refused: a map without its end" in alog()
        assert "agent: etcd: /peak/svc/other.svc.example.: refused" in alog()
        assert "stored line refused (unknown endpoint): 'ep pod-zz 0/14'" in alog()
        assert wait_until(lambda: metrics(cl).get(
            'peak_agent_store_records_total{result="refused"}') == 3), metrics(cl)
        m = metrics(cl)
        assert m['peak_agent_store_records_total{result="applied"}'] == 2, m
        assert m["peak_agent_store_reads_total"] == 1, m
        assert routed_to(cl, POD_B), cl.routes()
        # etcd restarts (same data, same port): the watch resumes and the next change comes
        etcd.stop()
        etcd = etcdproc.Etcd(str(tmp_path / "etcd"), port=port, peer=peer,
                             netns=cl.n).wait()
        etcd.put(KEY, all_to("pod-a"))
        assert wait_until(lambda: routed_to(cl, POD_A), 15), (cl.routes(), alog())
        # a reload reads the records afresh for the new file (its maps start over)
        reads = metrics(cl)["peak_agent_store_reads_total"]
        agent.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "agent: reloaded" in alog())
        assert wait_until(lambda: metrics(cl)["peak_agent_store_reads_total"] == reads + 1)
        assert wait_until(lambda: routed_to(cl, POD_A)), (cl.routes(), alog())
        assert agent.poll() is None
    finally:
        etcd.stop()


def test_a_change_a_controller_stores_reaches_an_agent_without_its_link(cl, tmp_path):
    """The agent's --controller names a port nobody listens on (its link is down all
    along): the controller's stored map, then its run-time add of pod-e, reach it from
    etcd; after the controller is stopped the agent keeps the routes."""
    need_etcd()
    cl.cfg.write_text(config(cl.tag))
    e_ns = cl.tag + "-e"
    etcd = pod_e = None
    try:
        pod_e_namespace(cl, e_ns)
        etcd = etcdproc.Etcd(str(tmp_path / "etcd"), netns=cl.n).wait()
        sock = str(tmp_path / "c.sock")
        ctl = start(cl, cl.n, PEAK, "controller", "--config", str(cl.cfg), "--listen",
                    "[::1]:4000", "--store", "etcd", "--etcd", etcd.url, "--control", sock)
        assert wait_until(lambda: "leading (store etcd)" in ctl.log.read_text()), \
            ctl.log.read_text()
        assert wait_until(lambda: etcd.get(KEY) is not None)
        start_pods(cl)
        pod_e = serve_pod_e(e_ns, tmp_path)
        agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1",
                      "--controller", "[::1]:4999", "--store", "etcd", "--etcd", etcd.url)
        alog = agent.log.read_text
        assert wait_until(lambda: f"etcd: map of {SVC} applied from the store" in alog())
        assert wait_until(lambda: covers_exactly(cl.routes(), "2001:db8:5::/64"))
        r = subprocess.run([PEAK, "controller-ctl", "--control", sock, "add", SVC, "pod-e",
                            POD_E, "1", "node1"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and "added 1, removed 0 in 1 services" in r.stdout, r
        assert wait_until(lambda: f"add {SVC} pod-e" in (etcd.get(KEY) or ""))
        want = sum(1 << int(b.split("/")[1]) for ln in etcd.get(KEY).splitlines()
                   if ln.startswith("ep pod-e ") for b in ln.split()[2:])
        assert want > 0
        assert wait_until(lambda: slices_via(cl, POD_E) == want), (cl.routes(), alog())
        assert f"{SVC} pod-e: added at run time ({POD_E}, weight 1, node node1): local, " \
            "routed here" in alog()
        assert "connected to controller" not in alog()
        ctl.terminate()
        ctl.wait(timeout=10)
        assert covers_exactly(cl.routes(), "2001:db8:5::/64")
        assert slices_via(cl, POD_E) == want
        assert agent.poll() is None
    finally:
        if pod_e:
            pod_e.terminate()
            pod_e.wait()
        if etcd:
            etcd.stop()
        subprocess.run(["ip", "netns", "del", e_ns], capture_output=True)


def test_the_link_wins_and_what_etcd_brought_meanwhile_is_applied_once_it_is_lost(cl, tmp_path):
    """While the agent's link to the leader is up, a record stored behind the leader's back
    is held (counted), not routed: the link's map stays. Once the leader is stopped and the
    link lost, the held record is applied (it is what the next leader adopts)."""
    need_etcd()
    cl.cfg.write_text(config(cl.tag))
    etcd = etcdproc.Etcd(str(tmp_path / "etcd"), netns=cl.n).wait()
    try:
        ctl = start(cl, cl.n, PEAK, "controller", "--config", str(cl.cfg), "--listen",
                    "[::1]:4000", "--store", "etcd", "--etcd", etcd.url)
        assert wait_until(lambda: "leading (store etcd)" in ctl.log.read_text()), \
            ctl.log.read_text()
        assert wait_until(lambda: etcd.get(KEY) is not None)
        start_pods(cl)
        agent = start(cl, cl.n, PEAK, "agent", "--config", str(cl.cfg), "--node", "node1",
                      "--controller", "[::1]:4000", "--store", "etcd", "--etcd", etcd.url,
                      "--metrics", "[::1]:9100")
        alog = agent.log.read_text
        assert wait_until(lambda: "connected to controller" in alog())
        assert wait_until(lambda: covers_exactly(cl.routes(), "2001:db8:5::/64") and
                          slices_via(cl, POD_A) > 0 and slices_via(cl, POD_B) > 0)
        held = metrics(cl)['peak_agent_store_records_total{result="held"}']
        etcd.put(KEY, all_to("pod-a"))
        # (>=: the leader may store a record of its own meanwhile, held as well)
        assert wait_until(lambda: metrics(cl).get(
            'peak_agent_store_records_total{result="held"}', 0) >= held + 1), metrics(cl)
        assert slices_via(cl, POD_B) > 0, cl.routes()
        assert "applied from the store" not in alog()
        ctl.terminate()
        ctl.wait(timeout=10)
        assert wait_until(lambda: routed_to(cl, POD_A)), (cl.routes(), alog())
        assert f"etcd: map of {SVC} applied from the store" in alog()
        assert agent.poll() is None
    finally:
        etcd.stop()
