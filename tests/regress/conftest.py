"""Regression tests: shared helpers come from tests/lib (peaktest.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
