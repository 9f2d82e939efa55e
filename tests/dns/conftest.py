"""Fixtures of the DNS server tests: 'peak dns' on loopback (see tests/lib/peaktest.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import BASE_CONFIG, K, PEAK, Server  # noqa: E402,F401


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()
    assert s.proc.returncode == 0, s.logtext()
