"""The controller's Kubernetes source against a fake API server on loopback (kubeapi.py);
helpers from tests/lib (ctlpeer.py: the controller and a fake agent)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402 (after the path)

import kubeapi  # noqa: E402


@pytest.fixture
def api():
    """A fake Kubernetes API server on loopback (kubeapi.py), closed after the test."""
    a = kubeapi.Api()
    try:
        yield a
    finally:
        a.close()
