"""peak h3's event loops (upload client, backend, ingress) waited with poll(2), whose timeout is
in milliseconds, and rounded ngtcp2's next deadline up to the next millisecond. Pacing spaces a
connection's send quanta (64 KiB, 44 datagrams of one GSO send) by tens of microseconds at the
bench's rates, so every gap became a full millisecond: a connection sent at most one quantum
per millisecond (64 MB/s) unless an acknowledgement woke it earlier. The PEAK-direct video
connection's qlog showed packets leaving in bursts of 45 with millisecond gaps between them.

Now the loops wait with ppoll(2) to the microsecond (h3_poll). Checked on the client of an
upload to a backend, both in a namespace of their own on its loopback, with strace: the client
makes no poll() call at all, and at least one of its waits is a ppoll() shorter than a
millisecond (a pacing gap; the old code could not express one).
"""
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess

import pytest

from peaktest import PEAK

# the HTTP/3 tests' helpers (certificates made with certtool, wait_for), loaded under another
# name: this directory has a conftest of its own
_spec = importlib.util.spec_from_file_location(
    "h3_conftest", os.path.join(os.path.dirname(__file__), "..", "h3", "conftest.py"))
h3 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h3)
certs = h3.certs
wait_for = h3.wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)"),
    pytest.mark.skipif(not shutil.which("strace"), reason="strace is not installed"),
]


@pytest.fixture
def ns():
    yield from h3.scratch_ns("pw")


def test_h3_pacing_waits_below_a_millisecond(tmp_path, certs, ns):
    name, procs = ns
    log = tmp_path / "backend.log"
    with open(log, "w") as f:
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", name, PEAK, "h3", "backend", "--listen", "[::1]:4451",
             "--cert", str(certs / "srv.pem"), "--key", str(certs / "srv.key"), "--type",
             "video/*", "--id", "video"], stdout=f, stderr=subprocess.STDOUT))
    wait_for(lambda: "listening on" in log.read_text(), 20, "the backend listening")
    body = os.urandom(4 * 1024 * 1024)
    (tmp_path / "v.mp4").write_bytes(body)
    trace = tmp_path / "strace.txt"
    # LeakSanitizer cannot run under ptrace (an ASan build): the client's leaks are checked
    # by the other tests
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, (env.get("ASAN_OPTIONS"), "detect_leaks=0")))
    p = subprocess.run(["ip", "netns", "exec", name, "strace", "-f", "-qq", "-e",
                        "trace=poll,ppoll", "-o", str(trace), PEAK, "h3", "upload",
                        "https://[::1]:4451/up", "--ca", str(certs / "ca.pem"), "--timeout",
                        "60000", "--file", f"{tmp_path / 'v.mp4'}:video/mp4"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "checksum=ok" in p.stdout and hashlib.sha256(body).hexdigest() in p.stdout, p.stdout
    calls = trace.read_text().splitlines()
    polls = [c for c in calls if re.search(r"\bpoll\(", c)]
    assert not polls, f"millisecond waits: {polls[:5]}"
    short = [c for c in calls if re.search(r"ppoll\(.*\{tv_sec=0, tv_nsec=[1-9]\d{0,5}\}", c)]
    assert short, f"no wait under a millisecond among {len(calls)}: {calls[:10]}"
