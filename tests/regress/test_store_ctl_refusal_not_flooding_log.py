"""A store pod whose controller refused every link (a welcome that does not prove the key)
wrote three log lines per attempt, twice a second, for as long as it ran: "connected to
controller" when the TCP connect succeeded, the refusal warning, and "link lost". Found in
review of src/store/ctlsub.c. Now "connected" and "link lost" are written only for a link
whose handshake completed, and the refusal is rate-limited (log_rl: once a second, with a
count of what it held back). Here a fake controller sends a challenge and a welcome of
zeros on each connection and counts them."""
import math
import socket
import threading
import time

from peaktest import free_port
from storepod import StorePod, store_config, wait_for


def fake_controller(lsock, seen):
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        with c:
            c.settimeout(5)
            c.sendall(b"challenge " + b"ab" * 16 + b"\n")
            buf = b""
            while b"\n" not in buf:
                k = c.recv(4096)
                if not k:
                    break
                buf += k
            if buf.startswith(b"hello "):
                c.sendall(b"welcome " + b"00" * 32 + b"\n")
                seen.append(1)


def test_refused_links_do_not_flood_the_log(tmp_path):
    cfg = tmp_path / "store.yaml"
    cfg.write_text(store_config(1))
    key = tmp_path / "ctl.key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    lsock = socket.socket(socket.AF_INET6)
    lsock.bind(("::1", 0))
    lsock.listen(16)
    seen = []
    threading.Thread(target=fake_controller, args=(lsock, seen), daemon=True).start()
    pod = StorePod(cfg, "s1", tmp_path / "data", f"[::1]:{free_port()}", tmp_path / "s1.log",
                   ["--controller", f"[::1]:{lsock.getsockname()[1]}", "--key-file", str(key)])
    t0 = time.monotonic()
    try:
        pod.start()
        # the pod retries every 0.5 s: eight refusals take about four seconds
        wait_for(lambda: len(seen) >= 8, "eight refused links", 60)
    finally:
        took = time.monotonic() - t0
        pod.stop()
        lsock.close()
    text = pod.logtext()
    assert pod.proc.returncode == 0, text
    refusals = text.count("no valid welcome")
    # once a second at most (twice a second before, one per link)
    assert 1 <= refusals <= math.ceil(took) + 1, (refusals, len(seen), took, text)
    assert "connected to controller" not in text, text
    assert "link lost" not in text, text
