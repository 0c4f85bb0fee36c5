# Blockport build, test and fuzz entry points. `make test` is what CI runs
# (.ci/run); see README.md.

GO       ?= go
BIN      := bin/blockport
FUZZTIME ?= 5m

# The Ceph RBD backstore needs cgo and librbd, so it is built only on
# request: `make build CEPH=1` (go build -tags ceph,pacific; pacific selects
# go-ceph's API for Ceph 16, Debian 12's). The default binary is pure Go.
CEPH ?= 0
# The tests build and test it too (a single-node Ceph cluster on loopback)
# wherever they can: as root with apt-get (deps installs Debian's Ceph
# packages) or with Ceph's daemons and librbd-dev already installed.
# TEST_CEPH=0 leaves it out, TEST_CEPH=1 insists.
TEST_CEPH ?= $(shell if [ "$(CEPH)" = 1 ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; } || \
	{ [ -f /usr/include/rbd/librbd.h ] && command -v ceph-mon >/dev/null; }; then echo 1; else echo 0; fi)
CEPH_TAGS := ceph,pacific
BUILD_TAGS := $(if $(filter 1,$(CEPH)),-tags $(CEPH_TAGS))
TEST_TAGS  := $(if $(filter 1,$(TEST_CEPH)),-tags $(CEPH_TAGS))

# Packages that start the real server and drive real initiators.
INTEGRATION_PKGS := ./integration/...
UNIT_PKGS         = $(shell $(GO) list $(TEST_TAGS) ./... | grep -v '/integration')

.PHONY: all build run test deps lint unit fuzz-smoke integration conformance fuzz bench clean

all: build

build:
	$(GO) build $(BUILD_TAGS) -o $(BIN) ./cmd/blockport

# Serves the embedded default config: iqn.2026-11.io.blockport:lab, LUN 0 a
# 1 GiB image under ./blockport-data/, on 127.0.0.1:3260.
run: build
	./$(BIN) serve

# Everything CI checks, in order of cost.
test: deps lint unit fuzz-smoke integration

# Installs libiscsi-bin, qemu-utils and qemu-block-extra (and with
# TEST_CEPH=1 Ceph's daemons and librbd-dev) when missing (as root), or
# names them and stops.
deps:
	scripts/ensure-deps.sh $(if $(filter 1,$(TEST_CEPH)),--ceph)
	$(if $(filter 1,$(TEST_CEPH)),,@echo "deps: the Ceph RBD tests are left out (TEST_CEPH=0: not root with apt-get, and no Ceph installed)")

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(if $(TEST_TAGS),$(GO) vet $(TEST_TAGS) ./...)

unit:
	$(GO) test -race -count=1 $(TEST_TAGS) $(UNIT_PKGS)

fuzz-smoke:
	FUZZTIME=5s scripts/fuzz-smoke.sh

# The end-to-end tests against a server built with -race (a race it reports
# fails the test), then the conformance matrix, verbose so its totals show.
# The matrix uses a normal build: under -race it takes three times as long,
# and the race detector already watches the server in the tests before it.
integration:
	BLOCKPORT_RACE=1 $(GO) test -race -count=1 $(TEST_TAGS) -timeout 20m -skip '^TestConformance$$' $(INTEGRATION_PKGS)
	$(GO) test -count=1 $(TEST_TAGS) -timeout 25m -v -run '^TestConformance$$' ./integration/conformance/

# libiscsi's iscsi-test-cu against a fresh server, compared with
# integration/conformance/expected.txt. UPDATE_EXPECTED=1 rewrites that file.
conformance: deps
	$(GO) test -count=1 $(TEST_TAGS) -timeout 25m -v -run '^TestConformance$$' ./integration/conformance/

# Long fuzzing: every target for FUZZTIME each (default 5m).
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz-smoke.sh

# Blockport against tgt and gotgt on loopback, plus the loopback TCP and raw
# file ceilings: integration/bench/results/bench-*.md and .json. Not part of
# `make test`. BENCH_QUICK=1 is a short smoke run; BENCH_FLAGS passes flags
# (go run ./integration/bench -h lists them).
bench: deps build
	$(GO) run ./integration/bench -bin $(BIN) $(BENCH_FLAGS)

clean:
	rm -rf bin integration/.tmp
	$(GO) clean -testcache
