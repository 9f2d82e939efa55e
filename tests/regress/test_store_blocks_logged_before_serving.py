"""A store pod logs its slice blocks ("store: ID holds PREFIX") before the line that says it
serves. As seen: the blocks came after "serving", so a test that started a pod, waited for
"serving" and read its blocks from the log at once sometimes found none (under ASan the
migration test's join read no blocks and routed nothing to the new pod)."""
from peaktest import free_port
from storepod import StorePod, store_config


def test_blocks_come_before_serving(tmp_path):
    cfg = tmp_path / "store.yaml"
    cfg.write_text(store_config(3))
    with StorePod(cfg, "s2", tmp_path / "data", f"[::1]:{free_port()}",
                  tmp_path / "s2.log") as pod:
        text = pod.logtext()
        serving = text.index("serving")
        assert "store: s2 holds 2001:db8:8:0:" in text[:serving], text
        assert "holds" not in text[serving:], text
    assert pod.proc.returncode == 0, pod.logtext()
