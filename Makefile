# Patch-queue build of QEMU 10.0.13 with the post-copy switchover fork.
# See README.md.  All generated trees live in qemu/ and .cache/ (ignored).

SHELL := /bin/bash
TOP := $(CURDIR)
CACHE_DIR ?= $(TOP)/.cache
STOCK_DIR := $(CACHE_DIR)/stock
PYTHON := /usr/bin/python3
QEMU_BIN := $(TOP)/qemu/build/qemu-system-x86_64
STOCK_BIN := $(STOCK_DIR)/build/qemu-system-x86_64

.PHONY: all deps src build stock export check check-shim check-full guest demo bench bench-handshake clean distclean \
	chaos chaos-driver chaos-selftest chaos-full

all: build

deps:
	@scripts/install-deps

src: deps
	@scripts/make-src

build: src
	@scripts/build

# Unpatched QEMU 10.0.13, built the same way, for comparisons.
stock: deps
	@scripts/fetch-upstream
	@if [ ! -d $(STOCK_DIR)/.git ]; then \
	    rm -rf $(STOCK_DIR) && mkdir -p $(STOCK_DIR) && \
	    cp -a $(CACHE_DIR)/base/qemu/. $(STOCK_DIR)/ && \
	    rm -rf $(STOCK_DIR)/.pc $(STOCK_DIR)/debian && \
	    git -C $(STOCK_DIR) init -q && touch $(STOCK_DIR)/.git/stock; \
	fi
	@scripts/build $(STOCK_DIR) $(STOCK_DIR)/build

export:
	@scripts/export-patches

check-shim: deps
	@scripts/check --shim-only

check: build stock guest
	@scripts/check

# Longer suites: the same tests under KVM too (when /dev/kvm exists).
check-full: build stock guest
	@scripts/check
	@if [ -e /dev/kvm ]; then ACCEL=kvm scripts/check; fi
	@$(MAKE) -s check-libvirt-11.3
	@scripts/fuzz 60
	@$(MAKE) -s chaos-full

# libFuzzer targets of the shim (clang), FUZZ_SECONDS each, in .cache/fuzz-build.
FUZZ_SECONDS ?= 60
.PHONY: fuzz check-asan
fuzz: deps
	@scripts/fuzz $(FUZZ_SECONDS)

# The patched QEMU with ASan + UBSan in qemu/build-asan; the post-copy qtests
# against it; any sanitizer report fails.
check-asan: src
	@scripts/check-asan

# Upstream QEMU 10.2.2 (Debian's qemu 1:10.2.2+ds-1), built the same way in
# .cache/base-10.2/qemu/build, and the post-copy interop runs against it.
UPSTREAM102_BIN := $(CACHE_DIR)/base-10.2/qemu/build/qemu-system-x86_64
.PHONY: upstream-10.2 check-interop
upstream-10.2: deps
	@UPSTREAM=10.2 scripts/fetch-upstream
	@scripts/build $(CACHE_DIR)/base-10.2/qemu $(CACHE_DIR)/base-10.2/qemu/build

check-interop: build upstream-10.2
	@scripts/check-interop $(UPSTREAM102_BIN)
	@$(MAKE) -s chaos-interop

# Fault rounds across versions, new features off (the driver turns on only
# what both binaries have): patched -> 10.2.2, then 10.2.2 -> patched, on a
# machine type both know.  INTEROP_ROUNDS per direction.  A violating round
# must reproduce with 10.2.2 on both sides (upstream's own behaviour), or
# the run fails: scripts/chaos-interop.
INTEROP_ROUNDS ?= 30
INTEROP_MACHINE := pc-q35-10.0
.PHONY: chaos-interop
chaos-interop: $(CHAOS_BIN) upstream-10.2
	@scripts/chaos-interop $(CHAOS_QEMU) $(UPSTREAM102_BIN) $(INTEROP_MACHINE) \
	    $(INTEROP_ROUNDS) $(CHAOS_FLAGS)

# Switchover downtime, patched vs the series at PREVIOUS_REV (built in
# .cache/previous-REV by scripts/build-previous) vs stock, interleaved and
# paired; writes docs/benchmarks.md.  PREVIOUS_REV= (empty) skips it.
BENCH_RUNS ?= 10
PREVIOUS_REV ?= 856de6f
bench: build stock
	@prev=""; if [ -n "$(PREVIOUS_REV)" ]; then \
	    bin=$$(scripts/build-previous $(PREVIOUS_REV)) || exit 1; \
	    prev="--previous $$bin --previous-label series@$(PREVIOUS_REV)"; fi; \
	$(PYTHON) bench/switchover.py --patched $(QEMU_BIN) --stock $(STOCK_BIN) $$prev \
	    --qemu-src $(TOP)/qemu --runs $(BENCH_RUNS) --markdown docs/benchmarks.md \
	    --command "make bench BENCH_RUNS=$(BENCH_RUNS)"

# Failure handling before the switchover: fault visible to the source ->
# its RESUME event, per kind (load error, EOF, RST); docs/benchmarks.md.
.PHONY: bench-failure
bench-failure: build
	@$(PYTHON) bench/failure.py --binary $(QEMU_BIN) --runs $(BENCH_RUNS) \
	    --markdown docs/benchmarks.md --command "make bench-failure BENCH_RUNS=$(BENCH_RUNS)"

# Switchover downtime with the start handshake on and off, and stock.
bench-handshake: build stock
	@$(PYTHON) bench/switchover.py --handshake --patched $(QEMU_BIN) --stock $(STOCK_BIN) \
	    --qemu-src $(TOP)/qemu --runs $(BENCH_RUNS) --markdown docs/benchmarks.md \
	    --command "make bench-handshake BENCH_RUNS=$(BENCH_RUNS)"

# Three acts; act 2 also on stock QEMU when 'make stock' built it.
# Two real libvirtd (Debian's) in their own namespaces drive the fork
# (tests/libvirt/README.md): libvirt 9.0 (bookworm; also in make check),
# 11.3 (bookworm-backports; in make check-full).  Each installs, upgrades
# or downgrades Debian's libvirt packages to match.
.PHONY: check-libvirt check-libvirt-11.3
check-libvirt: build guest
	@GUEST_DIR=$(GUEST_DIR) tests/libvirt/run $(QEMU_BIN)
check-libvirt-11.3: build guest
	@GUEST_DIR=$(GUEST_DIR) LIBVIRT_SUITE=bookworm-backports tests/libvirt/run $(QEMU_BIN)

# The Linux test guest (Debian's kernel and busybox-static) in .cache/guest
GUEST_DIR := $(CACHE_DIR)/guest
guest: deps
	@scripts/make-guest $(GUEST_DIR)

demo: build guest
	@$(PYTHON) scripts/demo.py --qemu $(QEMU_BIN) --stock $(STOCK_BIN) --guest $(GUEST_DIR)

# Fault-injection driver (issue 6; docs/reliability.md).  CHAOS_QEMU picks
# another binary, e.g. a private copy while qemu/ is being rebuilt.
CHAOS_SHIM := $(CACHE_DIR)/chaos-shim
CHAOS_BIN := $(CACHE_DIR)/chaos-build/chaos
CHAOS_QEMU ?= $(QEMU_BIN)
ROUNDS ?= 20
SEED ?= 1
CHAOS_FLAGS ?=

chaos-driver: $(CHAOS_BIN)

# tests/chaos/: main.cc (command line, report), plan (round plans),
# proxy (TCP proxy, channel faults, switchover messages on the wire), qmp
# (QMP client, nlohmann-json), qemu (processes), faults, round (one
# round's flow), oracle (invariants, outcome classes), util.
CHAOS_SRCS := $(wildcard tests/chaos/*.cc)
CHAOS_HDRS := $(wildcard tests/chaos/*.h)

$(CHAOS_BIN): $(CHAOS_SRCS) $(CHAOS_HDRS) $(wildcard migration-control/src/*.cc) \
		migration-control/include/migration-control.h
	@[ -f $(CHAOS_SHIM)/build.ninja ] || meson setup -Dbuildtype=debugoptimized $(CHAOS_SHIM) migration-control >/dev/null
	@ninja -C $(CHAOS_SHIM) libmigration-control.a >/dev/null
	@mkdir -p $(dir $@)
	g++ -std=c++17 -O2 -g -Wall -Wextra -pthread -Imigration-control/include \
	    $(CHAOS_SRCS) $(CHAOS_SHIM)/libmigration-control.a -o $@

chaos: $(CHAOS_BIN)
	nice $(CHAOS_BIN) --qemu $(CHAOS_QEMU) --qemu-src $(TOP)/qemu \
	    --seed $(SEED) --rounds $(ROUNDS) $(CHAOS_FLAGS)

# The long set (for check-full): 300 rounds of seed 2 (the configurations
# of issue 13 included), then a sweep around each switchover message.
chaos-full: $(CHAOS_BIN)
	nice $(CHAOS_BIN) --qemu $(CHAOS_QEMU) --qemu-src $(TOP)/qemu --seed 2 --rounds 300 $(CHAOS_FLAGS)
	nice $(CHAOS_BIN) --qemu $(CHAOS_QEMU) --qemu-src $(TOP)/qemu --seed 2 --rounds 55 --sweep $(CHAOS_FLAGS)

# The driver must catch a source that resumes after the switchover.
chaos-selftest: $(CHAOS_BIN)
	nice $(CHAOS_BIN) --qemu $(CHAOS_QEMU) --qemu-src $(TOP)/qemu \
	    --seed 1 --rounds 2 --break source-resume --expect-violation

# The driver against a deliberately broken build (tests/chaos/broken/): the
# short set must catch it.  Builds qemu/ HEAD + the patch in .cache/broken.
.PHONY: chaos-broken
chaos-broken: src
	@scripts/chaos-broken

clean:
	rm -rf qemu/build $(STOCK_DIR)/build $(CACHE_DIR)/shim-build $(CACHE_DIR)/chaos-shim \
	    $(CACHE_DIR)/chaos-build

distclean:
	rm -rf qemu $(CACHE_DIR)

# Silent partition (issue 5): destination in a network namespace, iptables
# DROP both ways during post-copy.  Needs root; skipped with a message
# otherwise.  PARTITION_QEMU picks another binary (e.g. qemu-i5/build's).
PARTITION_QEMU ?= $(QEMU_BIN)
.PHONY: check-partition bench-partition
check-partition: build
	@$(PYTHON) tests/partition/test-partition.py $(PARTITION_QEMU); rc=$$?; \
	    [ $$rc -eq 77 ] && rc=0; [ $$rc -eq 0 ] || exit $$rc; \
	    $(PYTHON) tests/partition/test-slow-link.py $(PARTITION_QEMU); rc=$$?; \
	    [ $$rc -eq 77 ] && rc=0; exit $$rc

# Detection latency (T = 1 s, 3 s vs stock) and the detector's page-fault
# cost; writes their sections of docs/benchmarks.md.
bench-partition: build stock
	@$(PYTHON) bench/partition.py --binary $(PARTITION_QEMU) --stock $(STOCK_BIN) \
	    --runs $(BENCH_RUNS) --markdown docs/benchmarks.md

# The detector's page-fault cost alone (on vs off, BENCH_RUNS each); writes
# its own section of docs/benchmarks.md.
.PHONY: bench-faults
bench-faults: build
	@$(PYTHON) bench/partition.py --binary $(PARTITION_QEMU) --only faults \
	    --fault-runs $(BENCH_RUNS) --markdown docs/benchmarks.md
