"""DNS server: the reload counters were a data race.

Seen: `peak_dns_reloads_total` was incremented by the main thread with plain `++` and read
by the metrics thread (under a lock the writer did not take): a data race in C11, undefined
behaviour that ThreadSanitizer reports. They are atomic now. A race does not show in a
plain or ASan build, so this test is the behaviour it must keep: reloads while the metrics
are scraped all the time, every reload counted exactly once, the counter never going back.
The race itself shows under ThreadSanitizer (meson setup build-tsan -Db_sanitize=thread
-Db_lundef=false): with this test's load the old server reported "data race" between
reload() and metrics_render(); the fixed one reports nothing."""
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import Server  # noqa: E402

RELOADS = 40


def test_reloads_counted_once_each_while_metrics_are_scraped(tmp_path):
    s = Server(tmp_path)
    stop = threading.Event()
    seen, errors = [], []

    def scrape():
        while not stop.is_set():
            try:
                seen.append(s.metrics()['peak_dns_reloads_total{result="ok"}'])
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                return

    th = threading.Thread(target=scrape, daemon=True)
    try:
        th.start()
        for _ in range(RELOADS):
            r = s.ctl("reload")
            assert r.returncode == 0, r.stdout + r.stderr
        stop.set()
        th.join(timeout=10)
        assert not errors, errors
        assert seen == sorted(seen), "the counter went back"
        assert s.metrics()['peak_dns_reloads_total{result="ok"}'] == RELOADS
    finally:
        stop.set()
        s.stop()
    assert s.proc.returncode == 0, s.logtext()
