"""`peak agent` had no way to check a configuration before a reload.

Seen: `peak dns --check` validates a file and names FILE:LINE, but the agent had no --check:
a file with an unknown node, or a service whose slices cannot be assigned (the agent then
silently routed none of them), was found only by a running agent, in its log.

Now `peak agent --check --config FILE --node N` prints 'ok' and exits 0, or prints
FILE:LINE: what is wrong and exits 2, touching nothing."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import CONFIG, PEAK  # noqa: E402


def check(path, node="node1"):
    return subprocess.run([PEAK, "agent", "--check", "--config", str(path), "--node", node],
                          capture_output=True, text=True, timeout=30)


def test_check_ok_and_errors_with_file_line(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(CONFIG)
    r = check(good)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    # a node the file does not list: the line of its nodes
    r = check(good, "node9")
    assert r.returncode == 2
    assert re.search(rf"{re.escape(str(good))}:3: node 'node9' is not one of the nodes",
                     r.stderr), r.stderr
    # a schema error: the file's own line
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("slice: 72\n    port: 8080\n    endpoints:\n      - {id: a1",
                                  "slice: 200\n    port: 8080\n    endpoints:\n      - {id: a1"))
    r = check(bad)
    assert r.returncode == 2 and re.search(rf"{re.escape(str(bad))}:\d+: ", r.stderr), r.stderr
    # every weight 0: nothing to assign (refused by the schema or by the agent's check)
    zero = tmp_path / "zero.yaml"
    zero.write_text(CONFIG.replace('node: node1}', 'node: node1, weight: 0}'))
    r = check(zero)
    assert r.returncode == 2 and re.search(rf"{re.escape(str(zero))}:\d+: ", r.stderr), r.stderr
