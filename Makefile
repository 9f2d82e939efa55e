# PEAK: every command a newcomer needs. The build itself is meson + ninja.
#   make demo     build, then run the demo cluster in network namespaces (root)
#   make          install missing build dependencies (as root), configure, build build/peak
#   make test     the same, then every test suite; ends with 'N passed, N failed'
#   make bench    the benchmark suite: PEAK vs direct, nginx, HAProxy; DNS vs NSD, Knot;
#                 the XDP filter vs nftables; writes bench/results/REPORT.md with SVG plots
#                 (root, ~23 min)
#   make bench-filter  the XDP filter vs nftables alone: bench/results/filter.md (root, ~6 min)
#   make bench-quick  the same, one short run per cell, into bench/results/quick/ (root,
#                 under 3 min)
#   make bench-ssa  SSA address computation throughput
#   make clean

.PHONY: all deps test demo bench bench-quick bench-filter bench-ssa clean

all: deps
	@[ -f build/build.ninja ] || meson setup build
	ninja -C build

deps:
	@sh scripts/deps.sh

test: all
	@sh scripts/run-tests.sh

demo: all
	@/usr/bin/python3 tests/integration/demo.py

bench: all
	/usr/bin/python3 bench/ingress/run.py
	sh bench/dns/run.sh 10
	/usr/bin/python3 bench/filter/run.py
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
