"""Issue 18, scale: a configuration of 10,000 services of 100 endpoints is about 45 MB, and
'peak controller' and 'peak dns' refused every file larger than 16 MiB ("larger than
16777216 bytes"), whatever it held. Files are now read at their own size up to 256 MiB;
past that they are still refused with the reason."""
import subprocess

import ctlpeer


def check(cmd, path):
    return subprocess.run([ctlpeer.PEAK, cmd, "--config", str(path), "--check"],
                          capture_output=True, text=True, timeout=60)


def test_large_file_accepted_and_limit_kept(tmp_path):
    cfg = tmp_path / "peak.yaml"
    pad = ("#" + "x" * 1022 + "\n") * (16 * 1024 + 64)  # just past 16 MiB of comment lines
    cfg.write_text(ctlpeer.config() + pad)
    assert cfg.stat().st_size > 16 << 20
    for cmd in ("controller", "dns"):
        r = check(cmd, cfg)
        assert r.returncode == 0 and r.stdout.strip() == "ok", (cmd, r.stdout + r.stderr)
    with open(cfg, "r+b") as f:  # a sparse file past the limit: refused, with the reason
        f.truncate((256 << 20) + 1)
    for cmd in ("controller", "dns"):
        r = check(cmd, cfg)
        assert r.returncode != 0 and "larger than" in r.stderr, (cmd, r.stderr)
