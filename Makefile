# perpdex Makefile: every target sets up what it needs on a fresh machine.
#   make demo       venv + pip + npm, start anvil, deploy, run the end-to-end demo
#   make test       same set-up, then lint (ruff, mypy, mamushi, natrix) and the whole suite
#   make test-quick the edit loop: unit tests and a short fuzz (no lint), about 3 minutes
#   make test-fork  integration tests against an anvil fork of a simulated L2 testnet, then
#                   the L2 testnet deploy dry run (imitation Arbitrum/Base/Optimism Sepolia)
#   make bench      gas -> docs/gas.md, docs/gas.json; keeper scan, CLI start-up, stress,
#                   matcher load and settlement -> docs/perf.json
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMPS := .stamps
ANVIL := $(CURDIR)/node_modules/.bin/anvil
DEMO_PORT ?= 8545
export PATH := $(CURDIR)/node_modules/.bin:$(BIN):$(PATH)
# Python caches bytecode (__pycache__/, ignored by git) even where the environment sets
# PYTHONDONTWRITEBYTECODE: without the cache every `perpdex`, `ape` and pytest process
# compiled the package again, ~0.7 s of CPU per start (many CLI tests start processes).
unexport PYTHONDONTWRITEBYTECODE

# natrix: modules (contracts/modules) are linted through the deployables that import
# them (a module that `uses:` another cannot compile alone). Disabled rules:
#   NTX11 (arguments prefixed with `_`): the ABI keeps plain names (SDK calls by name);
#   NTX4 (implicit view): it does not count external calls or delegatecalls as writes,
#         so it flags the delegatecall forwarders; mutability is reviewed by hand.
# The lens's read-only views build large frames (16 positions x 16 scenarios): allowed
# up to 32 KB.
# natrix runs through perpdex.devtools.natrix_lint: natrix unchanged, its vyper compiles
# in-process (one per contract instead of six Python processes): ~94 -> ~74 s of CPU.
NATRIX_FLAGS := -d NTX11 NTX4 -c MemoryExpansion.max_frame_size=32768

.PHONY: help setup lint format compile test test-quick test-sessions test-fuzz \
	test-integration test-unit test-security test-unit-quick test-unit-quick-contracts \
	test-unit-quick-cli test-unit-quick-rest test-fuzz-quick test-fork demo bench clean

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

# The venv's packages are installed by uv (pinned; from PyPI, like pip): the same
# packages at the same versions (constraints.txt pins the whole tree; `pip freeze` of the
# two venvs differs by uv alone), in ~10 s of CPU where pip took ~48 s and most of the
# set-up's wall time (pip resolves, downloads and unpacks one package at a time). uv does
# not byte-compile either: Python compiles and caches the modules a process imports
# (pip needed --no-compile: all ~7,800 modules, ~23 s of CPU). --native-tls: the system's
# certificates, as pip uses them.
UV := $(BIN)/uv
UV_PIP := $(UV) pip install -q --native-tls --python $(BIN)/python
$(STAMPS)/venv: pyproject.toml constraints.txt
	@mkdir -p $(STAMPS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "perpdex needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(BIN)/pip install -q --no-compile "uv==0.13.8"
	$(UV_PIP) -c constraints.txt -e '.[dev]'
	$(UV_PIP) --no-deps "mamushi==0.1.2" "natrix==0.1.9"
	@touch $@

$(STAMPS)/npm: package.json package-lock.json
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund --loglevel=error
	@$(ANVIL) --version | head -1
	@touch $@

setup: $(STAMPS)/venv $(STAMPS)/npm

# Lint and compile re-run only when a source changed (the stamp and the build artefact
# are newer than every source), so the edit loop does not pay ~60 s for nothing.
CONTRACTS := $(shell find contracts -name '*.vy' -o -name '*.vyi')
PY_SOURCES := $(shell find perpdex scripts tests -name '*.py')

# Two stamps, so `make -j2` runs the Python half (mypy: ~40 s cold) beside the contract
# half (natrix compiles every contract once: ~74 s of CPU) and beside `ape compile`.
$(STAMPS)/lint-py: $(STAMPS)/venv $(PY_SOURCES) pyproject.toml
	$(BIN)/ruff check perpdex scripts tests
	$(BIN)/ruff format --check perpdex scripts tests
	$(BIN)/mypy perpdex
	@touch $@

# The packing lint (issue 10 item 2): no shift or mask of a packed word outside
# contracts/modules/packing.vy, but for the hot paths its baseline lists with a reason
# (and the reviewed encodings that are not storage words, listed apart).
$(STAMPS)/lint-vy: $(STAMPS)/venv $(CONTRACTS) perpdex/devtools/packing_baseline.txt \
		perpdex/devtools/packing_not_words.txt perpdex/devtools/packing_lint.py
	$(BIN)/mamushi --check --line-length 100 contracts
	$(BIN)/python -m perpdex.devtools.packing_lint --baseline perpdex/devtools/packing_baseline.txt \
	  --not-words perpdex/devtools/packing_not_words.txt
	$(BIN)/python -m perpdex.devtools.natrix_lint lint contracts/*.vy contracts/mocks/*.vy \
	  $(NATRIX_FLAGS)
	@touch $@

$(STAMPS)/lint: $(STAMPS)/lint-py $(STAMPS)/lint-vy
	@touch $@

lint: setup $(STAMPS)/lint

format: setup
	$(BIN)/ruff format perpdex scripts tests
	$(BIN)/ruff check --fix perpdex scripts tests
	$(BIN)/mamushi --line-length 100 contracts

# ape does not notice edits to imported modules (contracts/modules/ is excluded from
# standalone compilation), so a change to any contract source rebuilds everything.
.build/__local__.json: $(STAMPS)/venv $(CONTRACTS) ape-config.yaml
	$(BIN)/ape compile --force
	$(BIN)/python -m perpdex.sdk.lite.abi --write
	@touch $@

compile: setup .build/__local__.json

# The stateful fuzz runs its derandomised `ci` profile here (tests/fuzz/conftest.py);
# PERPDEX_FUZZ_PROFILE=quick|deep overrides it.
# One ape session per test directory (collected together, a test_liquidation fixture
# fails with "vault exposure cap reached" that passes when its directory runs alone: a
# cross-directory isolation leak, see the issue 9 note). The sessions run two at a time:
# an ape session is one Python process driving its own anvil, so on 2 cores two sessions
# overlap well (measured in the issue 10 note). -O prints each session's output whole
# when it ends; -k lets the others finish after a failure.
# Set-up runs pip and npm side by side, then the two lint halves beside compile (each
# mostly one core).
# At the end perpdex.devtools.perf prints the slowest 15 tests of all sessions and the wall time
# since the first line below (set-up included), recorded as test_suite_s in docs/perf.json.
PYTEST_ARGS := -p no:cacheprovider -q
# Each session runs on an anvil that perpdex.devtools.devnet starts (retried on a new port if it
# dies or is slow) and ape attaches to: ape's own start-up is one 20 s try, which once
# timed out in CI with two sessions sharing 2 cores.
APE_TEST = $(BIN)/python -m perpdex.devtools.devnet ape-test --name $@ --

test:
	@mkdir -p $(STAMPS) && rm -f $(STAMPS)/junit-*.xml && date +%s > $(STAMPS)/test_t0
	@$(MAKE) --no-print-directory -j2 setup
	@$(MAKE) --no-print-directory -j3 -O lint compile
	@rc=0; $(MAKE) --no-print-directory -k -j2 -O test-sessions || rc=$$?; \
	  $(BIN)/python -m perpdex.devtools.perf report $$([ $$rc = 0 ] && echo --record); exit $$rc

# Four sessions, two at a time, longest first, so the two slots end together: make starts
# them in this order, each when a slot frees. CPU seconds of each (python, anvil and
# subprocesses), measured alone: integration ~226 (its newcomer test alone ~92, mostly
# `perpdex` subprocesses one after another), unit ~213, security ~155, fuzz ~80 (~205
# before its RPC client was cut): integration + fuzz in one slot, unit + security in
# the other.
test-sessions: test-integration test-unit test-security test-fuzz

test-fuzz:
	PERPDEX_FUZZ_PROFILE=$${PERPDEX_FUZZ_PROFILE:-ci} $(APE_TEST) tests/fuzz \
	  $(PYTEST_ARGS) --junitxml=$(STAMPS)/junit-fuzz.xml

test-integration:
	$(APE_TEST) tests/integration $(PYTEST_ARGS) --junitxml=$(STAMPS)/junit-integration.xml

test-unit:
	$(APE_TEST) tests/unit $(PYTEST_ARGS) --junitxml=$(STAMPS)/junit-unit.xml

test-security:
	$(APE_TEST) tests/security $(PYTEST_ARGS) --junitxml=$(STAMPS)/junit-security.xml

# The edit loop: no lint; compile only if a contract changed; the unit tests in three
# shards and the quick fuzz profile, the four sessions at once: each is mostly its
# Python process's CPU (ape's per-transaction work; the anvil is a few %), so the wall
# time is about their CPU shared by the 2 cores, and no shard waits for a slot behind
# the fuzz, whose time varies most (its quick profile is random). `make test` before
# pushing.
# The shards (tests/unit/test_fixture_scopes.py folds them into the unit session): the
# contract tests with the margin properties (pure Python, ~100 s: the rest shard was the
# last to end with them), the CLI tests, and the rest of tests/unit (the ignores keep
# every new file in some shard).
UNIT_CONTRACTS := tests/unit/clearinghouse tests/unit/oracle_router \
	tests/unit/test_margin_properties.py
UNIT_CLI := $(sort $(wildcard tests/unit/test_cli*.py))
test-quick: setup compile
	@rm -f $(STAMPS)/junit-*.xml && date +%s > $(STAMPS)/test_t0
	@rc=0; $(MAKE) --no-print-directory -k -j4 -O test-unit-quick-rest test-fuzz-quick \
	  test-unit-quick-contracts test-unit-quick-cli || rc=$$?; \
	  $(BIN)/python -m perpdex.devtools.perf report; exit $$rc

test-unit-quick: test-unit-quick-contracts test-unit-quick-cli test-unit-quick-rest

test-unit-quick-contracts:
	$(APE_TEST) $(UNIT_CONTRACTS) $(PYTEST_ARGS) \
	  --junitxml=$(STAMPS)/junit-unit-contracts.xml

test-unit-quick-cli:
	$(APE_TEST) $(UNIT_CLI) $(PYTEST_ARGS) --junitxml=$(STAMPS)/junit-unit-cli.xml

test-unit-quick-rest:
	$(APE_TEST) tests/unit $(addprefix --ignore=,$(UNIT_CONTRACTS) $(UNIT_CLI)) \
	  $(PYTEST_ARGS) --junitxml=$(STAMPS)/junit-unit-rest.xml

test-fuzz-quick:
	PERPDEX_FUZZ_PROFILE=quick $(APE_TEST) tests/fuzz $(PYTEST_ARGS) \
	  --junitxml=$(STAMPS)/junit-fuzz.xml

# test-fork/demo start (and always stop) their own anvils; see perpdex/devtools/devnet.py.
# l2-dry-run (perpdex/devtools/l2dryrun.py, about 3 minutes): the real `ape run deploy` against
# one anvil per L2 testnet imitating it, deployer a throwaway keyfile account.
test-fork: setup compile
	$(BIN)/python -m perpdex.devtools.devnet fork-test
	$(BIN)/python -m perpdex.devtools.devnet l2-dry-run

# demo_s in docs/perf.json: the whole `make demo`, set-up and compile included (the clock
# starts before they run; the demo writes the key when it succeeds).
demo:
	@t0=$$(date +%s.%N); $(MAKE) --no-print-directory setup compile && \
	  $(BIN)/python -m perpdex.devtools.devnet demo --port $(DEMO_PORT) --t0 $$t0

# bench-keeper: the liquidation keeper's account-scan rate at 10,000 accounts ->
# docs/perf.json keeper_scan_accounts_per_s (its own anvil, without ape's step tracing;
# the set-up opens the accounts in ~125 transactions, about 3 minutes on 2 cores).
# The CLI start-up benchmark starts its own anvil (and stops it) for the read command.
# stress_bench (pure numpy, seconds): stress_10k_x16_s and stress_history_10k_s.
# The matcher load benchmark runs a matcher on loopback against SQLite, then against a
# throwaway PostgreSQL server (perpdex/matcher/bench.py; about a minute), then settles
# 640 matched fills into a fresh anvil through ChainSettler -> settle_fills_per_s.
bench: setup compile
	$(BIN)/python -m perpdex.devtools.devnet ape-run --name bench-gas -- bench_gas
	$(BIN)/python -m perpdex.devtools.devnet bench-keeper
	$(BIN)/python -m perpdex.devtools.bench_startup
	$(BIN)/python -m perpdex.risk.stress_bench
	$(BIN)/python -m perpdex.matcher.bench
	$(BIN)/python -m perpdex.devtools.devnet bench-settle

clean:
	rm -rf $(VENV) node_modules $(STAMPS) .build .pytest_cache .ruff_cache .mypy_cache .hypothesis
