#!/usr/bin/python3
"""Measures the DHT slave on the bed of test_overlay_dht.py (root; not a test, nothing is
asserted): the gets of a cold lookup, binary search (A to B) and walk (C to B), the RTT of a
first ping that waits for them, then the RTT over the cached route.

    sudo PEAK_BIN=build/peak /usr/bin/python3 tests/overlay/measure_dht.py
"""
import os
import pathlib
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_overlay_dht as T  # noqa: E402
from ovbed import nsx, wait_for  # noqa: E402


def main():
    b = T.DhtBed(pathlib.Path(tempfile.mkdtemp()))
    try:
        b.build()
        b.start_dhtnode()
        for s in T.SITES:
            b.start(s, route=s in T.HOSTS)
        for s in T.SITES:
            wait_for(f"g{s} published", lambda: b.metrics(s).get(
                'peak_overlay_dht_puts_total{result="ok"}', 0) > 0)
        time.sleep(1)  # let the rounds of puts end: gets then meet every record
        for src, dst, mode in (("a", "b", "bsearch"), ("c", "b", "walk")):
            m0 = b.metrics(src)
            r = nsx(b.n("h" + src), "ping", "-6", "-n", "-c", "1", "-W", "5",
                    f"fd00:{dst}::2", check=False)
            gets = (b.metrics(src)["peak_overlay_dht_gets_total"]
                    - m0["peak_overlay_dht_gets_total"])
            rtt = re.search(r"time=([\d.]+) ms", r.stdout)
            print(f"{mode}: h{src} -> h{dst}: cold lookup {gets:.0f} gets, first ping "
                  f"{rtt.group(1) + ' ms' if rtt else 'lost'}")
            r = nsx(b.n("h" + src), "ping", "-6", "-n", "-c", "5", "-i", "0.2",
                    f"fd00:{dst}::2", check=False)
            print(f"  cached route: {r.stdout.strip().splitlines()[-1]}")
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
