#!/bin/sh
# Runs a command (a test suite) in a network namespace of its own, so suites can run side by
# side: each one's daemons on [::1] and 127.0.0.1 ports, its sysctls and its nftables tables
# are its own. Like a host, the namespace has a default route (IPv6 and IPv4) out of a veth
# whose other end answers nothing: a source address toward any destination exists, and
# packets sent there go no further. Namespaces a suite makes with 'ip netns add' are named
# per test and process (and cleaned up by the test), as before. Not root (the suites'
# namespace tests skip then): the command runs as it is.
if [ "$(id -u)" != 0 ]; then
	exec "$@"
fi
exec unshare --net -- /bin/sh -c '
	set -e
	ip link set lo up
	ip link add up0 type veth peer name up1
	ip link set up0 up
	ip link set up1 up
	ip addr add fd00:ffff:ffff::1/128 dev up0 nodad
	ip addr add 100.64.255.254/32 dev up0
	ip -6 route add default dev up0
	ip route add default dev up0
	exec "$@"' isolated "$@"
