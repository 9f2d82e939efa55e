"""Regression: a 3-member etcd test failed in a CI run with 'etcd exited': free_port() handed
out ports from the kernel's ephemeral range, and a member dialing its peers could take one
as a source port before the member meant to listen on it started. free_port() now draws
from below that range and never hands out a port twice in a row of 256."""
import peaktest


def test_ports_below_the_ephemeral_range_and_distinct():
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    ports = [peaktest.free_port() for _ in range(200)]
    assert all(p < low for p in ports), [p for p in ports if p >= low]
    assert len(set(ports)) == len(ports)
