"""Two controllers sharing a store (--store etcd or kubernetes) on one --listen address:
c1 started first with the test configuration and leading, c2 a standby. The HA tests of
both stores (tests/controlplane/test_ha.py, tests/k8s/test_kube_store.py) start them so."""
import os

import ctlpeer
import peaktest


def token_file(tmp, token):
    """TMP/token holding token, written once and atomically: rewritten while a running
    controller reads it, that controller could read it empty (a 401)."""
    p = os.path.join(str(tmp), "token")
    if not os.path.exists(p):
        with open(p + ".new", "w") as f:
            f.write(token + "\n")
        os.rename(p + ".new", p)
    return p


def pair(tmp, store, store_args, start=None):
    """(port, c1, c2): c1 leads (it logged 'leading (store STORE)'), c2 is a standby.
    store_args are both controllers' store options; start(name, cfg, port), when given,
    starts a controller instead (a test's own options)."""
    port = peaktest.free_port()

    def default(name, cfg, port):
        return ctlpeer.Controller(str(tmp), cfg, (*store_args, "--listen", f"[::1]:{port}",
                                                  "--control",
                                                  os.path.join(str(tmp), f"{name}.sock")),
                                  name=name)
    start = start or default
    c1 = start("c1", ctlpeer.config(), port)
    assert ctlpeer.wait_until(lambda: f"leading (store {store})" in c1.log(), 10), c1.log()
    c2 = start("c2", None, port)
    assert "a standby" in c2.log(), c2.log()
    return port, c1, c2
