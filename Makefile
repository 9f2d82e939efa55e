# PEAK: every command a newcomer needs. The build itself is meson + ninja.
#   make demo     build, then run the demo cluster in network namespaces (root)
#   make demo-h3  build, then uploads through the HTTP/3 ingress and PEAK-direct on the
#                 cluster testbed, then PEAK-direct with the ingress host removed (root)
#   make demo-store  build, then the object store demo: 10,000 objects, a pod killed, one added
#   make demo-overlay  build, then IPv6 overlay sites in namespaces, some behind NAT: who
#                 reaches whom, how (direct, punched through NAT), RTTs, throughput; then a
#                 PEAK service reached from an IPv4-only site through the overlay, and a
#                 native IPv6 network bridged into the overlay (root)
#   make          install missing build dependencies (as root), configure, build build/peak
#   make test     the same, then every test suite; ends with 'N passed, N failed'
#   make bench    the benchmark suite: PEAK vs direct, nginx, HAProxy; DNS vs NSD, Knot;
#                 the XDP filter vs nftables; the overlay vs VXLAN, wireguard-go, Yggdrasil,
#                 and its part-2 targets (multicast, relay, failover gaps); steering by load;
#                 writes bench/results/REPORT.md with SVG plots (root, ~45 min)
#   make bench-filter  the XDP filter vs nftables alone: bench/results/filter.md (root, ~6 min)
#   make bench-quick  the same, one short run per cell, into bench/results/quick/ (root,
#                 under 3 min)
#   make bench-ssa  SSA address computation throughput
#   make install  build, then install under DESTDIR/PREFIX (default /usr/local): the peak
#                 binary, libnss_peak.so.2, libpeak with headers and peak.pc, systemd units,
#                 the sysusers.d entry, bash completion, man pages, the Grafana dashboard
#                 (share/peak/grafana/peak.json), /etc/peak/peak.yaml (kept if present)
#   make completion  build/peak.bash, the bash completion generated from peak's --help
#   make man     build/man/*.1, the man pages generated from peak's --help
#   make install-only BUILD=DIR  the same as install, from a build made already (no build)
#   make clean

.PHONY: all deps test demo demo-h3 demo-store demo-overlay bench bench-quick bench-filter bench-ssa \
	clean install completion \
	install-only completion-only man man-only

# Where 'make install' puts things (README "Installing"). DESTDIR is a staging root for
# packagers; the paths written into the units are those under PREFIX, without DESTDIR.
PREFIX ?= /usr/local
BUILD ?= build
SYSCONFDIR ?= /etc
BINDIR = $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
MANDIR ?= $(PREFIX)/share/man
DASHBOARDDIR ?= $(PREFIX)/share/peak/grafana
UNITS = peak-dns.service peak-controller.service peak-agent@.service peak-overlay@.service \
	peak-h3-backend@.service peak-h3-ingress@.service peak-store@.service
# meson wants an absolute staging directory
MESON_DESTDIR = $(if $(DESTDIR),--destdir "$(abspath $(DESTDIR))")

all: deps
	@[ -f build/build.ninja ] || meson setup build
	ninja -C build

deps:
	@sh scripts/deps.sh

test: all
	@sh scripts/run-tests.sh

demo: all
	@/usr/bin/python3 tests/integration/demo.py

demo-h3: all
	@PEAK_BIN=$(CURDIR)/build/peak /usr/bin/python3 tests/h3/demo_h3.py

demo-store: all
	@PEAK_BIN=$(CURDIR)/build/peak STORE_BULK=$(CURDIR)/build/tests/store_bulk \
		/usr/bin/python3 tests/store/demo.py

demo-overlay: all
	@PEAK_BIN=$(CURDIR)/build/peak /usr/bin/python3 tests/overlay/demo_overlay.py

bench: all
	/usr/bin/python3 bench/ingress/run.py
	/usr/bin/python3 bench/datapath/run.py
	sh bench/dns/run.sh 10
	/usr/bin/python3 bench/filter/run.py
	/usr/bin/python3 bench/overlay/compare.py
	/usr/bin/python3 bench/overlay/dht_churn.py
	/usr/bin/python3 bench/overlay/mcast.py --runs 5
	/usr/bin/python3 bench/overlay/relay.py --secs 5 --runs 5
	/usr/bin/python3 bench/overlay/gaps.py --runs 5
	/usr/bin/python3 bench/h3/run.py
	/usr/bin/python3 bench/store/run.py
	/usr/bin/python3 bench/steer/run.py
	/usr/bin/python3 bench/controlplane/scale.py --timeout 600
	/usr/bin/python3 bench/controlplane/replicas.py
	/usr/bin/python3 bench/report.py

bench-filter: all
	/usr/bin/python3 bench/filter/run.py

bench-quick: all
	/usr/bin/python3 bench/ingress/run.py --quick --out bench/results/quick/ingress.json
	[ -f bench/results/dns.md ] || sh bench/dns/run.sh 3
	/usr/bin/python3 bench/report.py --in bench/results/quick/ingress.json --out bench/results/quick

bench-ssa: all
	./build/bench/bench_ssa 1

clean:
	rm -rf build build-san build-fuzz build.setup.log build-san.setup.log build-fuzz.setup.log

completion: all
	@$(MAKE) --no-print-directory completion-only

man: all
	@$(MAKE) --no-print-directory man-only

install: all
	@$(MAKE) --no-print-directory install-only

# The same without building first: BUILD names a build directory made already (the install
# test runs these on the build under test, plain or ASan).
completion-only:
	/usr/bin/python3 deploy/bash-completion/gen-completion.py $(BUILD)/peak > $(BUILD)/peak.bash.tmp
	mv $(BUILD)/peak.bash.tmp $(BUILD)/peak.bash

man-only:
	rm -rf $(BUILD)/man
	/usr/bin/python3 deploy/man/gen-man.py $(BUILD)/peak $(BUILD)/man

install-only: completion-only man-only
	@# reconfigure only for another prefix (meson writes it into nothing that is compiled)
	[ "$$(meson introspect $(BUILD) --buildoptions | /usr/bin/python3 -c \
		'import json,sys; print([o["value"] for o in json.load(sys.stdin) \
		if o["name"] == "prefix"][0])')" \
		= "$(PREFIX)" ] || { meson configure $(BUILD) --prefix "$(PREFIX)" >/dev/null && \
		ninja -C $(BUILD) >/dev/null; }
	DESTDIR= meson install -C $(BUILD) --no-rebuild --quiet $(MESON_DESTDIR)
	install -d "$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(SYSUSERSDIR)" "$(DESTDIR)$(COMPLETIONDIR)" \
		"$(DESTDIR)$(SYSCONFDIR)/peak"
	for u in $(UNITS); do \
		sed 's|@BINDIR@|$(BINDIR)|g' "deploy/systemd/$$u.in" > "$(DESTDIR)$(UNITDIR)/$$u" && \
		chmod 0644 "$(DESTDIR)$(UNITDIR)/$$u" || exit 1; \
	done
	install -m 0644 deploy/sysusers.d/peak.conf "$(DESTDIR)$(SYSUSERSDIR)/peak.conf"
	install -m 0644 $(BUILD)/peak.bash "$(DESTDIR)$(COMPLETIONDIR)/peak"
	install -d "$(DESTDIR)$(MANDIR)/man1"
	install -m 0644 $(BUILD)/man/*.1 "$(DESTDIR)$(MANDIR)/man1/"
	install -d "$(DESTDIR)$(DASHBOARDDIR)"
	install -m 0644 deploy/grafana/peak.json "$(DESTDIR)$(DASHBOARDDIR)/peak.json"
	@# an operator's configuration is never overwritten
	[ -e "$(DESTDIR)$(SYSCONFDIR)/peak/peak.yaml" ] || \
		install -m 0644 examples/peak.yaml "$(DESTDIR)$(SYSCONFDIR)/peak/peak.yaml"
