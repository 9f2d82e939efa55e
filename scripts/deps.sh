#!/bin/sh
# Installs the Debian packages PEAK needs to build and test, if any is missing.
# As root it runs apt-get; otherwise it prints the command to run and fails.
set -eu
PKGS="meson ninja-build pkg-config gcc clang libclang-rt-14-dev libcmocka-dev libyaml-dev
python3 python3-pytest python3-dnspython libmicrohttpd-dev knot-dnsutils bind9-dnsutils
dnsperf libmnl-dev nettle-dev etcd-server libcurl4-openssl-dev libjansson-dev
bird2 iproute2 iputils-ping ethtool curl procps util-linux
libbpf-dev bpftool libsystemd-dev
nginx-light haproxy nftables gnuplot-nox iperf3
libngtcp2-dev libngtcp2-crypto-gnutls-dev libnghttp3-dev libgnutls28-dev nettle-dev gnutls-bin
libnghttp2-dev nghttp2-client
golang-go golang-github-lucas-clemente-quic-go-dev ngtcp2-client caddy
libopendht-c-dev dhtnode"
# 'make install' tests: systemd-analyze, the Debian package (tests/install)
PKGS="$PKGS systemd passwd groff-base man-db debhelper lintian"
# the overlay's comparison bench (bench/overlay/compare.py): the tunnels users pick instead
PKGS="$PKGS wireguard-go wireguard-tools yggdrasil"
# HTTP/3 interop: headless Chromium as a client of peak h3 ingress (tests/h3)
PKGS="$PKGS chromium"
# the DNS bench's peers (bench/dns/run.sh; its smoke run is in tests/bench): NSD and Knot
PKGS="$PKGS nsd knot"
# the Kubernetes manifests test (tests/k8s)
PKGS="$PKGS python3-yaml"
# the overlay's mobility tests flush a NAT namespace's connection tracking (conntrack -F)
PKGS="$PKGS conntrack"
# the h3 pacing regression test traces the upload client's waits
PKGS="$PKGS strace"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "missing packages:$missing" >&2
	echo "run as root: apt-get install$missing" >&2
	exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Packaged daemons (nginx, haproxy, bird) must not start: the benchmarks and tests run
# their own instances in namespaces. policy-rc.d 101 = "action forbidden" for invoke-rc.d.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
