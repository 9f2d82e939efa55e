"""A store pod took one --controller address, so it could not follow the controllers of one
etcd-backed cluster (only the leader listens) as an agent does with `--controller A,B`: the
pod kept knocking at the controller that died. Now --controller takes a list (commas, or the
option repeated): the pod tries the next address at once when one fails or its link is
lost, and waits only after a round where every address failed. Here the pod's first address
has no controller, the second has one; that one stops and a controller comes up at the
first address: the pod links to each in turn (real `peak controller`s on loopback)."""
import subprocess

from ctlpeer import Controller
from peaktest import PEAK, free_port
from storepod import StorePod, store_config, wait_for



def ctl_args(key):
    """A controller that keeps no state, with the pods' key."""
    return ["--state", "none", "--key-file", str(key)]


def test_pod_follows_the_controller_that_answers(tmp_path):
    cfg = tmp_path / "store.yaml"
    cfg.write_text(store_config(1))
    key = tmp_path / "ctl.key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    first, second = free_port(), free_port()
    pod = StorePod(cfg, "s1", tmp_path / "data", f"[::1]:{free_port()}", tmp_path / "s1.log",
                   ["--controller", f"[::1]:{first},[::1]:{second}", "--key-file", str(key)])
    ctls = [Controller(tmp_path, cfg=cfg, port=second, name="c2", args=ctl_args(key))]
    try:
        pod.start()
        wait_for(lambda: f"connected to controller [::1]:{second} " in pod.logtext(),
                 "the link to the second controller")
        # its map, applied (the blocks logged again: the same as the configuration's)
        wait_for(lambda: pod.logtext().count("store: s1 holds ") >= 2, "its map")
        assert ctls[0].stop() == 0, ctls[0].log()
        wait_for(lambda: f"controller [::1]:{second}: link lost" in pod.logtext(),
                 "the link lost")
        ctls.append(Controller(tmp_path, cfg=cfg, port=first, name="c1", args=ctl_args(key)))
        wait_for(lambda: f"connected to controller [::1]:{first} " in pod.logtext(),
                 "the link to the first controller")
    finally:
        for c in ctls:
            c.stop()
        pod.stop()
    text = pod.logtext()
    assert pod.proc.returncode == 0, text
    assert "ERROR" not in text, text


def test_bad_controller_lists_refused(tmp_path):
    cfg = tmp_path / "store.yaml"
    cfg.write_text(store_config(1))
    for bad in ("[::1]:1,", "[::1]:1,nowhere", ",".join(["[::1]:1"] * 9)):
        r = subprocess.run([PEAK, "store", "serve", "--config", str(cfg), "--id", "s1",
                            "--data", str(tmp_path / "d"), "--controller", bad],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (bad, r.stderr)
        assert "--controller" in r.stderr and "separated by commas" in r.stderr, r.stderr
    # the option repeated makes one list, checked as a whole
    r = subprocess.run([PEAK, "store", "serve", "--config", str(cfg), "--id", "s1", "--data",
                        str(tmp_path / "d")] + ["--controller", "[::1]:1"] * 9,
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--controller" in r.stderr, r.stderr
