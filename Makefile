# Patch-queue build of QEMU 10.0.13 with the post-copy switchover fork.
# See README.md.  All generated trees live in qemu/ and .cache/ (ignored).

SHELL := /bin/bash
TOP := $(CURDIR)
CACHE_DIR ?= $(TOP)/.cache
STOCK_DIR := $(CACHE_DIR)/stock
PYTHON := /usr/bin/python3
QEMU_BIN := $(TOP)/qemu/build/qemu-system-x86_64
STOCK_BIN := $(STOCK_DIR)/build/qemu-system-x86_64

.PHONY: all deps src build stock export check check-shim check-full demo bench clean distclean

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

check: build stock
	@scripts/check

# Longer suites: the same tests under KVM too (when /dev/kvm exists).
check-full: build stock
	@scripts/check
	@if [ -e /dev/kvm ]; then ACCEL=kvm scripts/check; fi

# Switchover downtime, patched vs stock, interleaved; writes docs/benchmarks.md.
BENCH_RUNS ?= 10
bench: build stock
	@$(PYTHON) bench/switchover.py --patched $(QEMU_BIN) --stock $(STOCK_BIN) \
	    --qemu-src $(TOP)/qemu --runs $(BENCH_RUNS) --markdown docs/benchmarks.md \
	    --command "make bench BENCH_RUNS=$(BENCH_RUNS)"

demo: build
	@$(PYTHON) scripts/demo.py --qemu $(QEMU_BIN) --qemu-src $(TOP)/qemu

clean:
	rm -rf qemu/build $(STOCK_DIR)/build $(CACHE_DIR)/shim-build

distclean:
	rm -rf qemu $(CACHE_DIR)
