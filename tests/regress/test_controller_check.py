"""Issue 15, smaller defects: 'peak controller' had no --check (peak dns has one), and a
configuration the controller could not assign (every weight 0) was only noticed at run
time. '--check' now loads and checks the file, prints 'ok' and exits 0, or prints
FILE:LINE: reason and exits 2."""
import subprocess

import ctlpeer


def check(path):
    return subprocess.run([ctlpeer.PEAK, "controller", "--config", str(path), "--check"],
                          capture_output=True, text=True, timeout=10)


def test_check(tmp_path):
    cfg = tmp_path / "peak.yaml"
    cfg.write_text(ctlpeer.config())
    r = check(cfg)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    cfg.write_text(ctlpeer.config() + "  - name: [broken\n")
    r = check(cfg)
    assert r.returncode == 2 and f"{cfg}:" in r.stderr, r.stderr
    cfg.write_text(ctlpeer.config().replace('address: "2001:db8:100::1"}',
                                            'address: "2001:db8:100::1", weight: 0}')
                   .replace('address: "2001:db8:100::2"}',
                            'address: "2001:db8:100::2", weight: 0}')
                   .replace('address: "2001:db8:100::3"}',
                            'address: "2001:db8:100::3", weight: 0}'))
    r = check(cfg)
    assert r.returncode == 2 and f"{cfg}:" in r.stderr and "weight" in r.stderr, r.stderr
