"""The agent could not authenticate to the controller.

Seen: `peak controller --key-file` sends `challenge NONCE` and takes only `hello NODE TAG`
(HMAC-SHA256 with the shared key), but `peak agent` had no key and said a plain `hello NODE`,
so an agent could reach only a controller that trusts any TCP peer (any of which could then
report endpoints down and move their slices).

Now `peak agent --key-file FILE` answers the challenge with the key's tag. Here a real
controller and a real agent in one namespace:

  [NS] lo ::1: peak controller [::1]:4000 (--key-file, metrics [::1]:9200)
               <- peak agent --node node1 (metrics off)
       d0 fd00:1::1/64 (the endpoints' on-link gateways; nothing answers)

The controller's file gives service b two endpoints (b1, b2) where the agent's file has four,
so its map is told from the agent's own plan by the routes: four /66 (the file) or two /65
(the controller's map)."""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import CONFIG, PEAK, agent_ns, wait_until  # noqa: E402

CTL = "[::1]:4000"
PLAN = {("fd00:b::/66", "fd00:1::b1"), ("fd00:b:0:0:4000::/66", "fd00:1::b2"),
        ("fd00:b:0:0:8000::/66", "fd00:1::b3"), ("fd00:b:0:0:c000::/66", "fd00:1::b4")}
MAP = {("fd00:b::/65", "fd00:1::b1"), ("fd00:b:0:0:8000::/65", "fd00:1::b2")}
KEY = "3f1c0f6a9d2b47e8a5c4b1e0d9f8a7b6-peak-test-key"
OTHER = "0000000000000000-not-the-controllers-key"


def key_file(tmp_path, name, text, mode=0o600):
    p = tmp_path / name
    p.write_text(text + "\n")
    os.chmod(p, mode)
    return str(p)


def b_routes(ns):
    return {r for r in ns.routes() if r[0].startswith("fd00:b:")}


def start_controller(ns, tmp_path):
    cfg = tmp_path / "controller.yaml"
    cfg.write_text("\n".join(ln for ln in CONFIG.splitlines()
                             if "id: b3" not in ln and "id: b4" not in ln))
    log = tmp_path / "controller.log"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, PEAK, "controller", "--config", str(cfg), "--listen",
         CTL, "--metrics", "[::1]:9200", "--state", "none",
         "--key-file", key_file(tmp_path, "controller.key", KEY)],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    assert wait_until(lambda: "agents on" in log.read_text() or proc.poll() is not None)
    assert proc.poll() is None, log.read_text()
    return proc, log


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def agents(ns):
    return ns.metrics(9200)["peak_controller_agents"]


def test_agent_with_the_key_gets_its_maps(tmp_path):
    with agent_ns(tmp_path, "rgak") as ns:
        ctl, ctl_log = start_controller(ns, tmp_path)
        try:
            agent = ns.start_agent("--key-file", key_file(tmp_path, "agent.key", KEY),
                                   controller=CTL)
            assert wait_until(lambda: b_routes(ns) == MAP or agent.poll() is not None)
            assert agent.poll() is None, ns.log.read_text()
            assert b_routes(ns) == MAP
            assert "agent of node node1 connected (authenticated)" in ctl_log.read_text()
            assert "hello with the key's tag" in ns.log.read_text()
            assert agents(ns) == 1
        finally:
            stop(ctl)
        for text in (ns.log.read_text(), ctl_log.read_text()):
            assert KEY not in text


def test_agent_with_a_wrong_key_or_none_is_refused(tmp_path):
    with agent_ns(tmp_path, "rgaw") as ns:
        ctl, ctl_log = start_controller(ns, tmp_path)
        try:
            for args, ctl_says, hint in (
                    (("--key-file", key_file(tmp_path, "agent.key", OTHER)),
                     "wrong key (hello tag)", "is --key-file the controller's key?"),
                    ((), "hello without a tag", "wants one here too")):
                agent = ns.start_agent(*args, controller=CTL)
                # refused, and retried with a growing backoff
                assert wait_until(lambda: ctl_log.read_text().count(ctl_says) >= 3 or
                                  agent.poll() is not None)
                assert agent.poll() is None, ns.log.read_text()
                log = ns.log.read_text()
                assert "node1: controller [::1]:4000 ended the link after the hello" in log
                assert hint in log
                assert "retrying in 100 ms" in log and "retrying in 200 ms" in log
                # no agent for it at the controller, and its maps never installed
                assert agents(ns) == 0
                assert b_routes(ns) == PLAN
                assert "connected (authenticated)" not in ctl_log.read_text()
                agent.send_signal(signal.SIGTERM)
                assert agent.wait(10) == 0
        finally:
            stop(ctl)
        for text in (ns.log.read_text(), ctl_log.read_text()):
            assert KEY not in text and OTHER not in text


def test_key_file_others_may_read_is_refused(tmp_path):
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(CONFIG)
    loose = key_file(tmp_path, "loose.key", KEY, 0o644)
    for extra in (["--controller", CTL], ["--check"]):
        r = subprocess.run([PEAK, "agent", "--config", str(cfg), "--node", "node1",
                            "--key-file", loose, *extra], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2, (extra, r.stderr)
        assert "mode 0644" in r.stderr, r.stderr
        assert KEY not in r.stderr + r.stdout


def test_refusals_the_real_controller_never_makes(tmp_path):
    """A fake controller: the tag checked against Python's HMAC, an "error:" reply to the
    hello, and a controller that never sends the challenge."""
    import hashlib
    import hmac
    from agentns import Conn
    with agent_ns(tmp_path, "rgaf") as ns:
        agent = ns.start_agent("--key-file", key_file(tmp_path, "agent.key", KEY))
        c = Conn(ns.srv.accept()[0])
        nonce = bytes(range(16))
        c.send("challenge " + nonce.hex())
        tag = hmac.new(KEY.encode(), b"peak-ctl-hello-v1\0" + nonce + b"node1",
                       hashlib.sha256).hexdigest()
        hello = c.line().split(" ")  # the tag, then the agent's nonce (its own proof wanted)
        assert hello[:3] == ["hello", "node1", tag] and len(hello) == 4, hello
        assert re.fullmatch("[0-9a-f]{32}", hello[3]), hello
        c.send("error: no such node here")
        assert wait_until(lambda: "refused the hello: no such node here" in
                          ns.log.read_text() or agent.poll() is not None)
        c.close()
        c = Conn(ns.srv.accept()[0])  # retried; this time no challenge comes
        assert wait_until(lambda: "no challenge in time" in ns.log.read_text() or
                          agent.poll() is not None, 10)
        assert agent.poll() is None, ns.log.read_text()
        c.close()
