"""The demo as a test (root): every client reaches a pod at its own computed address through
routes learned by BGP; a killed pod's clients are served again at the same addresses; an
added pod takes exactly its share of slices, and no open connection breaks: the old and new
owners of the moved slices forward to each other while routing converges (slice handover)."""
import os
import re
import signal
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_demo():
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "demo.py")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    tag = f"pkd{p.pid % 10000}-"  # the demo's namespaces (demo.py names them by its PID)
    try:
        out, err = p.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)  # the demo tears its testbed down on ^C
        out, err = p.communicate(timeout=60)
        pytest.fail(f"the demo did not finish in 400 s:\n{out}{err}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, out + err
    print(out)
    assert "1. 200 of 200 clients reached a pod" in out and "(200 distinct)" in out
    m = re.search(r"its (\d+) clients were served again after ([\d.]+) s \(median\), ([\d.]+) s "
                  r"\(max\); (\d+) of \d+ recovered; (\d+) of \d+ kept their address", out)
    n, median, worst, recovered, kept = m.groups()
    # every client recovered (within the demo's 10 s of retries) at the address it had; how
    # fast (about 0.6 s here, the target is 1 s) is the demo's printed figure, not a bound
    # here: a loaded machine stretches it
    assert int(recovered) == int(kept) == int(n) > 0
    m = re.search(r"(\d+) of 16384 slices moved \([\d.]+%: its share among (\d+) live pods", out)
    moved, live = int(m.group(1)), int(m.group(2))
    assert moved in (16384 // live, 16384 // live + 1)  # exactly the newcomer's share
    m = re.search(r"(\d+) of (\d+) open connections broke", out)
    broken, total = int(m.group(1)), int(m.group(2))
    assert total > 100 and broken == 0  # 35 of 143 broke before handovers (issue 19)
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tag not in ns  # everything torn down
