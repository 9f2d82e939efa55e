"""A fresh-clone CI run (ASan phase) found the demo's DNS namespace left after an
interrupted demo (test_demo_interrupted_cleans_up): the Ctrl-C came while the testbed was
starting `peak dns` in it, between the fork and the process's entry in the testbed's list,
so down() neither ended that process nor could delete the namespace its mount held. down()
now ends whatever still runs in each of its namespaces (by PID, found with `ip netns pids`)
before deleting it. Here a process is started in a testbed namespace without the testbed
knowing: down() ends it and the namespace goes."""
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
    name = f"{tag}-d"
    p = None
    try:
        tb.addns(name)
        p = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "60"])
        pids = []
        while not pids:  # the sleep runs inside the namespace
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True).stdout.split()
        tb.down()
        assert p.wait(timeout=10) != 0  # ended by a signal
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert name not in listed.split(), listed
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait()
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
