"""The controller's Kubernetes source against a fake API server on loopback (kubeapi.py);
helpers from tests/lib (ctlpeer.py: the controller and a fake agent)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.dirname(__file__))
