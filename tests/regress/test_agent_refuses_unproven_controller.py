"""An agent with a key took its maps from whatever answered at --controller.

Seen: `peak agent --key-file` answered the controller's `challenge NONCE` with the key's tag,
and then installed any map that came back on the link: nothing proved that the peer at
--controller held the key. A fake controller that sent a challenge and then `map`/`ep`/`end`
with no proof at all (or a made-up one) got its routes installed, so anyone who could take
over the controller's address could redirect every slice.

Now the hello of an agent with a key carries a nonce of its own (`hello NODE TAG ANONCE`), and
the controller must answer `welcome PROOF` (HMAC over that nonce in another domain, ctlauth.h)
before anything else; the agent drops a controller that does not, logs why and retries with
backoff. Here a fake controller (the test) and the real one:

  [NS] lo ::1: the fake controller (the test, a port of its own), or
               peak controller [::1]:4000 (--metrics [::1]:9200)
               <- peak agent --node node1 --key-file (metrics [::1]:9100)
       d0 fd00:1::1/64 (the endpoints' on-link gateways; nothing answers)

The controller's file gives service b two endpoints (b1, b2) where the agent's file has four,
so a map is told from the agent's own plan by the routes: four /66 (the file) or two /65."""
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import ctlpeer  # noqa: E402
from agentns import CONFIG, PEAK, Conn, agent_ns, wait_until  # noqa: E402

CTL = "[::1]:4000"
PLAN = {("fd00:b::/66", "fd00:1::b1"), ("fd00:b:0:0:4000::/66", "fd00:1::b2"),
        ("fd00:b:0:0:8000::/66", "fd00:1::b3"), ("fd00:b:0:0:c000::/66", "fd00:1::b4")}
MAP = {("fd00:b::/65", "fd00:1::b1"), ("fd00:b:0:0:8000::/65", "fd00:1::b2")}
MAP_LINES = ("map b.svc.example.", "ep b1 0/7", "ep b2 128/7", "ep b3", "ep b4", "end")
KEY = "7e2a91c04b5d38f6a1e0c9b8d7f6e5a4-peak-mutual-test-key"
OTHER = "1111111111111111-not-the-agents-key"
REFUSED = "did not prove it holds the key"


def key_file(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text + "\n")
    os.chmod(p, 0o600)
    return str(p)


def b_routes(ns):
    return {r for r in ns.routes() if r[0].startswith("fd00:b:")}


def hello_parts(c):
    """The agent's hello on connection c after a challenge: (challenge, agent's nonce)."""
    cnonce = os.urandom(16)
    c.send("challenge " + cnonce.hex())
    w = c.line().split(" ")
    assert w[:2] == ["hello", "node1"], w
    assert w[2] == ctlpeer.tag(KEY.encode(), cnonce, "node1"), w
    # before the fix the hello ended with the tag: no nonce of the agent's to prove on
    anonce = bytes.fromhex(w[3]) if len(w) == 4 else b""
    return cnonce, anonce


def wait_refused(ns, agent, n):
    """Until the agent's log holds n refusals, or its routes are the fake map (the defect)."""
    assert wait_until(lambda: ns.log.read_text().count(REFUSED) >= n or
                      b_routes(ns) == MAP or agent.poll() is not None)
    assert agent.poll() is None, ns.log.read_text()
    assert b_routes(ns) == PLAN, ns.log.read_text()
    assert ns.log.read_text().count(REFUSED) >= n, ns.log.read_text()


def test_fake_controller_without_the_proof_installs_nothing(tmp_path):
    with agent_ns(tmp_path, "rgup") as ns:
        agent = ns.start_agent("--key-file", key_file(tmp_path, "agent.key", KEY),
                               "--metrics", "[::1]:9100")
        assert wait_until(lambda: b_routes(ns) == PLAN)
        # 1: a challenge, then maps at once, no welcome
        c = Conn(ns.srv.accept()[0])
        hello_parts(c)
        c.send(*MAP_LINES)
        wait_refused(ns, agent, 1)
        assert "'map' before its welcome" in ns.log.read_text()
        c.close()
        # 2 (the retry): a welcome whose proof uses another key, then maps
        c = Conn(ns.srv.accept()[0])
        cnonce, anonce = hello_parts(c)
        c.send("welcome " + ctlpeer.proof(OTHER.encode(), anonce, cnonce, "node1"), *MAP_LINES)
        wait_refused(ns, agent, 2)
        c.close()
        # 3: a welcome with the hello tag replayed as the proof (another domain: refused)
        c = Conn(ns.srv.accept()[0])
        cnonce, anonce = hello_parts(c)
        c.send("welcome " + ctlpeer.tag(KEY.encode(), anonce, "node1"), *MAP_LINES)
        wait_refused(ns, agent, 3)
        assert ns.log.read_text().count("a wrong proof in its welcome") == 2
        c.close()
        log = ns.log.read_text()
        # retried with a growing backoff, the routes kept, the key never logged
        assert "retrying in 100 ms" in log and "retrying in 200 ms" in log, log
        assert "retrying in 400 ms" in log, log
        assert KEY not in log
        assert ns.metrics()["peak_agent_controller_connected"] == 0
        # 4: the right proof (computed here, independently of the C code): the map is taken
        c = Conn(ns.srv.accept()[0])
        cnonce, anonce = hello_parts(c)
        c.send("welcome " + ctlpeer.proof(KEY.encode(), anonce, cnonce, "node1"), *MAP_LINES)
        assert wait_until(lambda: b_routes(ns) == MAP or agent.poll() is not None)
        assert b_routes(ns) == MAP, ns.log.read_text()
        assert "the controller proved the key" in ns.log.read_text()
        assert ns.metrics()["peak_agent_controller_connected"] == 1
        c.close()


def start_controller(ns, tmp_path, *args):
    cfg = tmp_path / "controller.yaml"
    cfg.write_text("\n".join(ln for ln in CONFIG.splitlines()
                             if "id: b3" not in ln and "id: b4" not in ln))
    log = tmp_path / "controller.log"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, PEAK, "controller", "--config", str(cfg), "--listen",
         CTL, "--metrics", "[::1]:9200", "--state", "none", *args],
        stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    assert wait_until(lambda: "agents on" in log.read_text() or proc.poll() is not None)
    assert proc.poll() is None, log.read_text()
    return proc, log


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_real_controller_proves_the_key_and_one_without_is_refused(tmp_path):
    with agent_ns(tmp_path, "rgur") as ns:
        # a controller without --key-file cannot prove anything: its maps are refused
        ctl, ctl_log = start_controller(ns, tmp_path)
        try:
            agent = ns.start_agent("--key-file", key_file(tmp_path, "agent.key", KEY),
                                   controller=CTL)
            wait_refused(ns, agent, 2)
            assert "asks this controller to prove the key" in ctl_log.read_text()
        finally:
            stop(ctl)
        # the right key on both sides: the controller proves it and its map is installed
        ctl, ctl_log = start_controller(ns, tmp_path,
                                        "--key-file", key_file(tmp_path, "ctl.key", KEY))
        try:
            assert wait_until(lambda: b_routes(ns) == MAP or agent.poll() is not None, 15)
            assert b_routes(ns) == MAP, ns.log.read_text()
            assert "the controller proved the key" in ns.log.read_text()
            assert "agent of node node1 connected (authenticated)" in ctl_log.read_text()
        finally:
            stop(ctl)
        for text in (ns.log.read_text(), ctl_log.read_text()):
            assert KEY not in text


def test_controller_proof_checks_in_python(tmp_path):
    """The controller's welcome, checked against Python's HMAC: sent to an agent that asks
    for it, before any map; an agent that sends no nonce gets maps at once, as before."""
    ctl = ctlpeer.Controller(str(tmp_path), ctlpeer.config(),
                             ["--key-file", key_file(tmp_path, "ctl.key", KEY),
                              "--state", "none"])
    try:
        a = ctlpeer.Agent(ctl.port, key=KEY.encode(), prove=True)
        want = ctlpeer.proof(KEY.encode(), a.anonce, a.nonce, "node1")
        assert a.welcome == "welcome " + want, a.welcome
        assert a.read_map()[0] == ctlpeer.SVC
        a.close()
        b = ctlpeer.Agent(ctl.port, node="node2", key=KEY.encode())
        assert b.read_map()[0] == ctlpeer.SVC  # no welcome line first
        b.close()
        assert re.search(r"agent of node node1 connected \(authenticated\)", ctl.log())
    finally:
        assert ctl.stop() == 0
    assert KEY not in ctl.log()
