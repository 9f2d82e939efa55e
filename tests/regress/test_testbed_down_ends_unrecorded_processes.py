"""A fresh-clone CI run (ASan phase) found the demo's DNS namespace left after an
interrupted demo (test_demo_interrupted_cleans_up): the Ctrl-C came while the testbed was
starting its daemons, and a process started but not yet in the testbed's list is one
down() neither ended nor waited for (the namespace was free, and deleted by hand, once it
had gone). down() now ends whatever still runs in its namespaces (by PID, found with `ip
netns pids`) before it deletes them. Here a process is started in the router's namespace
without the testbed knowing: down() ends it and both namespaces go (on the old code the
process lived on)."""
import os
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import testbed  # noqa: E402


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_down_ends_processes_it_did_not_record():
    tag = f"tdu{os.getpid() % 10000}"
    tb = testbed.Testbed(tag, tempfile.mkdtemp(prefix="tdu"), os.environ.get(
        "PEAK_BIN", "build/peak"))
    names = [f"{tag}-r", f"{tag}-d"]
    p = None
    try:
        for name in names:
            tb.addns(name)
        p = subprocess.Popen(["ip", "netns", "exec", names[0], "sleep", "60"])
        pids = []
        while not pids:  # the sleep runs inside the router's namespace
            pids = subprocess.run(["ip", "netns", "pids", names[0]], capture_output=True,
                                  text=True).stdout.split()
        tb.down()
        assert p.wait(timeout=10) != 0  # ended by a signal
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not set(names) & set(listed.split()), listed
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
