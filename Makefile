# PEAK: every command a newcomer needs. The build itself is meson + ninja.
#   make demo     build, then run the demo cluster in network namespaces (root)
#   make          install missing build dependencies (as root), configure, build build/peak
#   make test     the same, then every test suite; ends with 'N passed, N failed'
#   make bench-ssa  SSA address computation throughput
#   make clean

.PHONY: all deps test demo bench-ssa clean

all: deps
	@[ -f build/build.ninja ] || meson setup build
	ninja -C build

deps:
	@sh scripts/deps.sh

test: all
	@sh scripts/run-tests.sh

demo: all
	@/usr/bin/python3 tests/integration/demo.py

bench-ssa: all
	./build/bench/bench_ssa 1

clean:
	rm -rf build build-san build-fuzz build.setup.log build-san.setup.log build-fuzz.setup.log
