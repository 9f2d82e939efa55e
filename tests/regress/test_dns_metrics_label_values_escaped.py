"""DNS metrics: label values were written unescaped.

Seen: `peak_dns_steered_answers_total` and `peak_dns_endpoint_healthy` put the service name
(in DNS presentation form, where a space is `\\032` and a quote `\\"`) and the endpoint id
into label values as they were, so a name with such a character made the whole scrape
invalid (`\\0` is no escape of the Prometheus text format). Now backslash, double quote and
newline are escaped, and the value read back is the name as `dns_name_print` writes it."""
import os
import re
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import BASE_CONFIG, Server  # noqa: E402

CONFIG = BASE_CONFIG + r"""
  - name: 'odd\032name\"q\\b.svc.example.'
    prefixes: [2001:db8:9::/64]
    slice: 72
    endpoints: [{id: o1, address: "2001:db8:104::1"}]
"""
NAME = r'odd\032name\"q\\b.svc.example.'  # its presentation form

# Prometheus text format 0.0.4: a sample line, label values with \\, \" and \n only.
VALUE = r'"((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*=' + VALUE +
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*=' + VALUE + r')*\})? [-+0-9.eEinfNa]+$')


def unescape(v):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def test_every_metrics_line_is_valid_and_names_read_back(tmp_path):
    s = Server(tmp_path, config=CONFIG)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.mport}/metrics", timeout=5) as r:
            text = r.read().decode()
        bad = [ln for ln in text.splitlines() if ln and not ln.startswith("#") and
               not SAMPLE.match(ln)]
        assert not bad, bad
        services = set()
        for ln in text.splitlines():
            m = re.match(r'^peak_dns_endpoint_healthy\{service=' + VALUE, ln)
            if m:
                services.add(unescape(m.group(1)))
        assert NAME in services, services
    finally:
        s.stop()
    assert s.proc.returncode == 0, s.logtext()
