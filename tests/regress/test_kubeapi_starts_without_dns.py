"""The k8s suite's fake API server asked DNS for its own name at every start.

Seen: http.server's server_bind calls socket.getfqdn(), a reverse lookup of [::1]. In the
test namespaces (tests/lib/isolated.sh) no resolver answers, so each of the suite's 15
fixtures waited 6 s for it: about 90 s of the suite's 140 s, in each build. The server now
binds without looking its name up."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "k8s"))
import kubeapi  # noqa: E402


def test_fake_api_server_starts_without_a_name_lookup(monkeypatch):
    def no_dns(*a, **kw):
        raise AssertionError(f"a DNS lookup at server start: {a}")
    for f in ("getfqdn", "gethostbyaddr", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, f, no_dns)
    api = kubeapi.Api()
    try:
        with socket.create_connection(("::1", api.port), timeout=5) as c:
            c.sendall(b"GET /version HTTP/1.0\r\n\r\n")
            assert c.recv(64).startswith(b"HTTP/1.")  # it serves
    finally:
        api.close()
