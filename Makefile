# Blockport build, test and fuzz entry points. `make test` is what CI runs
# (.ci/run); see README.md.

GO       ?= go
BIN      := bin/blockport
FUZZTIME ?= 5m
# Packages that start the real server and drive real initiators.
INTEGRATION_PKGS := ./integration/...
UNIT_PKGS         = $(shell $(GO) list ./... | grep -v '/integration')

.PHONY: all build run test deps lint unit fuzz-smoke integration conformance fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/blockport

# Serves the embedded default config: iqn.2026-11.io.blockport:lab, LUN 0 a
# 1 GiB image under ./blockport-data/, on 127.0.0.1:3260.
run: build
	./$(BIN) serve

# Everything CI checks, in order of cost.
test: deps lint unit fuzz-smoke integration

# Installs libiscsi-bin, qemu-utils and qemu-block-extra when missing (as
# root), or names them and stops.
deps:
	scripts/ensure-deps.sh

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $(UNIT_PKGS)

fuzz-smoke:
	FUZZTIME=5s scripts/fuzz-smoke.sh

# The end-to-end tests against a server built with -race (a race it reports
# fails the test), then the conformance matrix, verbose so its totals show.
# The matrix uses a normal build: under -race it takes three times as long,
# and the race detector already watches the server in the tests before it.
integration:
	BLOCKPORT_RACE=1 $(GO) test -race -count=1 -timeout 20m -skip '^TestConformance$$' $(INTEGRATION_PKGS)
	$(GO) test -count=1 -timeout 25m -v -run '^TestConformance$$' ./integration/conformance/

# libiscsi's iscsi-test-cu against a fresh server, compared with
# integration/conformance/expected.txt. UPDATE_EXPECTED=1 rewrites that file.
conformance: deps
	$(GO) test -count=1 -timeout 25m -v -run '^TestConformance$$' ./integration/conformance/

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
