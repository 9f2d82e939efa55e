"""`peak controller-ctl status` failed (exit 1, no reply) once a controller held more than
about 8 MB of status lines, as at 10,000 services x 100 endpoints (about 60 MB): the
controller dropped its own operator as a peer that does not read, because the one reply
was larger than the output queue's bound (OUTQ_MAX_B), which is meant for peers with bytes
still waiting. Now a message to an empty queue is taken whole. Here 800 services x 100
endpoints with long names (about 10 MB of status) with a real controller: the reply comes
whole, one line per endpoint and "ok"."""
import subprocess

import ctlpeer
from ctlpeer import PEAK

NSVC, NEP = 800, 100


def config():
    out = ["zone:", "  name: svc.example.", "  ns:",
           '    - {name: ns1.svc.example., address: "2001:db8:53::1"}',
           "  soa: {primary: ns1.svc.example., contact: hostmaster.svc.example., serial: 1, "
           "minimum: 20}", "services:"]
    for x in range(NSVC):
        out += [f"  - name: service-number-{x}-with-a-long-label-to-fill-status.svc.example.",
                f"    prefixes: [2001:db8:{x:x}::/64]",
                "    slice: 78", "    endpoints:"]
        out += [f'      - {{id: endpoint-{k}-with-a-long-identifier, '
                f'address: "fd00:{x:x}::{k + 1:x}"}}'
                for k in range(NEP)]
    return "\n".join(out) + "\n"


def test_status_larger_than_the_queue(tmp_path):
    sock = str(tmp_path / "ctl.sock")
    ctl = ctlpeer.Controller(str(tmp_path), config(),
                             args=["--state", "none", "--control", sock], wait=False)
    try:
        # (its start parses 80,000 endpoints: seconds on a loaded machine's ASan build)
        assert ctlpeer.wait_until(lambda: "agents on" in ctl.log() or ctl.proc.poll() is not None,
                                  timeout=300)
        assert ctl.proc.poll() is None, ctl.log()[-2000:]
        r = subprocess.run([PEAK, "controller-ctl", "--control", sock, "status"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.returncode, r.stderr, ctl.log()[-2000:])
        lines = r.stdout.splitlines()
        assert len(r.stdout) > 8 << 20  # more than the queue's bound
        assert lines[-1] == "ok"
        rows = [ln for ln in lines if ln.startswith("service-number-")]
        assert len(rows) == NSVC * NEP, len(rows)
        assert "does not read" not in ctl.log()
    finally:
        assert ctl.stop() == 0, ctl.log()[-2000:]
