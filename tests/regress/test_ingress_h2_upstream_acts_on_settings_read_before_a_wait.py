"""The ingress's HTTP/2 upstream (h2:// routes, --upstream-proto h2) stalled the way the HTTP/2
client did (test_h2_client_acts_on_settings_read_before_a_wait.py): the ingress sends nothing
on an upstream connection before the upstream's SETTINGS (up_ready), and its event loop read
the upstream's socket a last time just before poll(). GnuTLS returns from a read after a TLS
1.3 session ticket, so a SETTINGS record right behind a ticket was read by that last read, and
the requests waiting for it (the first health check, clients' streams) went out only when
poll() returned: at the next health-check round or the next client packet.

Here a TLS 1.3 upstream (the server of the client's test: Python's ssl on memory BIOs) waits
until the ingress sleeps in poll(), sends its session ticket and its SETTINGS in one write and
waits for a request: the ingress's first GET /healthz. With --health-interval 30000, before
the fix that request came about 30 s after the SETTINGS, at the next round; now at once. The
bound asserted is half the round (15 s), not a few seconds: an ASan build on a loaded machine
must not fail it, and the old code's round stays far past it."""
import subprocess
import time

import peaktest
from test_h2_client_acts_on_settings_read_before_a_wait import Server, make_cert

PEAK = peaktest.PEAK


def test_ingress_sends_its_health_check_after_settings_behind_a_ticket(tmp_path):
    crt, key = make_cert(tmp_path)
    srv = Server((crt, key))
    log = open(tmp_path / "ingress.log", "w+")
    ing = subprocess.Popen([PEAK, "h3", "ingress", "--listen", "[::1]:0", "--cert", crt, "--key",
                            key, "--route", f"audio/*=h2://[::1]:{srv.port}",
                            "--upstream-insecure", "--health-interval", "30000"],
                           stdout=log, stderr=subprocess.STDOUT)
    srv.client = ing.pid
    try:
        deadline = time.monotonic() + 60
        while srv.request_seen is None and srv.error is None and srv.t.is_alive():
            assert time.monotonic() < deadline, "no health check within 60 s"
            assert ing.poll() is None, "the ingress exited"
            time.sleep(0.05)
    finally:
        ing.terminate()
        try:
            ing.wait(10)
        except subprocess.TimeoutExpired:
            ing.kill()
            ing.wait()
        srv.t.join(10)
        log.seek(0)
        text = log.read()
        log.close()
    assert srv.error is None, srv.error + "\n" + text
    assert srv.settings_sent is not None, text
    assert srv.request_seen is not None, "no request after the upstream's SETTINGS:\n" + text
    # the health check followed the SETTINGS at once, not at the next round (30 s)
    gap = srv.request_seen - srv.settings_sent
    print(f"health check {gap:.3f} s after the SETTINGS")
    assert gap < 15, text
