# perpdex Makefile: every target sets up what it needs on a fresh machine.
#   make demo       venv + pip + npm, start anvil, deploy, run the end-to-end demo
#   make test       same set-up, then lint (ruff, mamushi, natrix) and the whole suite
#   make test-fork  integration tests against an anvil fork of a simulated L2 testnet
#   make bench      gas benchmark -> docs/gas.md, docs/gas.json
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMPS := .stamps
ANVIL := $(CURDIR)/node_modules/.bin/anvil
DEMO_PORT ?= 8545
export PATH := $(CURDIR)/node_modules/.bin:$(BIN):$(PATH)
export PYTHONDONTWRITEBYTECODE := 1

# natrix: modules (contracts/modules) are linted through the deployables that import
# them (a module that `uses:` another cannot compile alone). Disabled rules:
#   NTX11 (arguments prefixed with `_`): the ABI keeps plain names (SDK calls by name);
#   NTX4 (implicit view): it does not count external calls or delegatecalls as writes,
#         so it flags the delegatecall forwarders; mutability is reviewed by hand.
# The lens's read-only views build large frames (16 positions x 16 scenarios): allowed
# up to 32 KB.
NATRIX_FLAGS := -d NTX11 NTX4 -c MemoryExpansion.max_frame_size=32768

.PHONY: help setup lint format compile test test-fork demo bench clean

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

$(STAMPS)/venv: pyproject.toml constraints.txt
	@mkdir -p $(STAMPS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "perpdex needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install -q --no-deps "mamushi==0.1.2" "natrix==0.1.9"
	@touch $@

$(STAMPS)/npm: package.json package-lock.json
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund --loglevel=error
	@$(ANVIL) --version | head -1
	@touch $@

setup: $(STAMPS)/venv $(STAMPS)/npm

lint: setup
	$(BIN)/ruff check perpdex scripts tests
	$(BIN)/ruff format --check perpdex scripts tests
	$(BIN)/mamushi --check --line-length 100 contracts
	$(BIN)/natrix lint contracts/*.vy contracts/mocks/*.vy $(NATRIX_FLAGS)

format: setup
	$(BIN)/ruff format perpdex scripts tests
	$(BIN)/ruff check --fix perpdex scripts tests
	$(BIN)/mamushi --line-length 100 contracts

# ape does not notice edits to imported modules (contracts/modules/ is excluded from
# standalone compilation), so every test run rebuilds from source.
compile: setup
	$(BIN)/ape compile --force

# The stateful fuzz runs its derandomised `ci` profile here (tests/fuzz/conftest.py);
# PERPDEX_FUZZ_PROFILE=quick|deep overrides it.
# One ape session per test directory: collected together, a test_liquidation fixture
# fails with "vault exposure cap reached" that passes when its directory runs alone
# (a cross-directory isolation leak, not yet found; see the issue 9 note).
test: setup lint compile
	PERPDEX_FUZZ_PROFILE=$${PERPDEX_FUZZ_PROFILE:-ci} $(BIN)/ape test tests/fuzz -p no:cacheprovider -q
	$(BIN)/ape test tests/integration -p no:cacheprovider -q
	$(BIN)/ape test tests/unit tests/security -p no:cacheprovider -q

# test-fork/demo start (and always stop) their own anvils; see perpdex/devnet.py.
test-fork: setup compile
	$(BIN)/python -m perpdex.devnet fork-test

demo: setup compile
	$(BIN)/python -m perpdex.devnet demo --port $(DEMO_PORT)

bench: setup
	$(BIN)/ape run bench_gas

clean:
	rm -rf $(VENV) node_modules $(STAMPS) .build .pytest_cache .ruff_cache .hypothesis
