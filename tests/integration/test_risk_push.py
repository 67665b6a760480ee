"""Publishing a designed risk book on the deployment in bounded steps."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import ape
import pytest
from typer.testing import CliRunner

from perpdex.cli.risk import app as risk_app
from perpdex.config import load_risk
from perpdex.errors import PerpdexError
from perpdex.risk.governance import (
    StepLimits,
    align_to,
    book_problems,
    plan_push,
    push,
    read_book,
    read_limits,
)
from perpdex.risk.history import load_prices
from perpdex.risk.scenarios import DesignParams, book_yaml, design
from perpdex.sdk import riskbook

SHOCK_STEP, RATIO_STEP = 300, 50


@pytest.fixture
def symbols(protocol: Any) -> list[str]:
    return protocol.symbols


@pytest.fixture
def target(symbols: list[str]) -> riskbook.RiskBook:
    """A design further from the published one (config/risk.yaml is the default design):
    a 3-day horizon and a z of 3."""
    base = riskbook.from_config(load_risk(), symbols)
    book = design(load_prices(), base, symbols, DesignParams(horizon_days=3, z=3.0)).book
    assert book_problems(book, len(symbols)) == []
    assert book != base
    return book


@pytest.fixture
def tight(protocol: Any, admin: Any) -> StepLimits:
    """Step limits small enough that the designed book needs several updates."""
    protocol.admin.set_risk_book_limits(SHOCK_STEP, RATIO_STEP, sender=admin)
    return read_limits(protocol.clearinghouse)


def test_push_designed_book_in_bounded_steps(protocol, admin, target, tight):
    ch = protocol.clearinghouse
    assert tight == StepLimits(SHOCK_STEP, RATIO_STEP)
    start = read_book(ch)
    assert start == riskbook.from_config(load_risk(), protocol.symbols)  # what deploy published
    version = ch.risk_book_version()
    plan = plan_push(protocol, target)
    assert len(plan.steps) >= 3 and plan.steps[-1] == target

    receipts = push(protocol, target, admin, plan=plan)

    assert len(receipts) == len(plan.steps)
    addresses = []
    for i, (receipt, step) in enumerate(zip(receipts, plan.steps, strict=True), start=1):
        [event] = protocol.admin.RiskBookUpdated.from_receipt(receipt)
        assert event.version == version + i
        assert event.n_markets == len(protocol.symbols)
        assert event.n_scenarios == step.n_scenarios
        addresses.append((event.old_book, event.new_book))
        code = bytes(ape.chain.provider.get_code(event.new_book))
        assert riskbook.decode(code[1:]) == step  # each step is what was planned
    for (_, new), (old, _) in itertools.pairwise(addresses):
        assert new == old  # every update replaced the previous one
    assert addresses[-1][1] == ch.risk_book()
    assert read_book(ch) == target  # the final book decodes equal to the target
    assert ch.risk_book_version() == version + len(receipts)
    assert push(protocol, target, admin) == []  # already there: nothing to send


def test_one_oversized_step_is_refused_by_the_contract(protocol, admin):
    ch, gov = protocol.clearinghouse, protocol.admin
    current = read_book(ch)
    limit = ch.max_shock_step_bps()
    shocks = [list(r) for r in current.shocks]
    k = current.names.index("crypto-crash")
    shocks[k][0] -= limit + 1  # BTC down a bp further than one update may move it
    too_far = dataclasses.replace(current, shocks=tuple(tuple(r) for r in shocks))
    assert book_problems(too_far, len(protocol.symbols)) == []  # valid apart from the step
    with ape.reverts("clearinghouse: shock change above step limit"):
        gov.set_risk_book(riskbook.encode(too_far), sender=admin)
    # the planner splits the same change into two updates the contract takes
    receipts = push(protocol, too_far, admin)
    assert len(receipts) == 2
    assert read_book(ch) == too_far


def test_designed_book_at_default_limits_needs_more_than_one_update(protocol, admin, target):
    """The config -> designed move is larger than one update allows (so the contract
    would refuse it sent at once) and lands in a few steps; aligned, in fewer."""
    ch = protocol.clearinghouse
    with ape.reverts("clearinghouse: shock change above step limit"):
        protocol.admin.set_risk_book(riskbook.encode(target), sender=admin)
    backwards = dataclasses.replace(target, names=target.names[::-1], shocks=target.shocks[::-1])
    aligned = align_to(backwards, read_book(ch))
    assert aligned == target  # the design is already in the published order
    assert len(plan_push(ch, aligned).steps) < len(plan_push(ch, backwards).steps)
    push(ch, aligned, admin)  # a bare Clearinghouse handle works too
    assert read_book(ch) == aligned


def test_push_needs_the_risk_role(protocol, stranger, target):
    with pytest.raises(PerpdexError, match="RISK_ROLE"):
        push(protocol, target, stranger)


def test_cli_push_and_diff(protocol, networks, target, tight, tmp_path: Path):
    ch = protocol.clearinghouse
    manifest = tmp_path / "local.json"
    manifest.write_text(
        json.dumps(
            {
                "chain_id": ape.chain.chain_id,
                "contracts": {"clearinghouse": ch.address},
                "markets": protocol.symbols,
            }
        )
    )
    book_path = tmp_path / "book.yaml"
    book_path.write_text(book_yaml(target, protocol.symbols))
    opts = ["--network", networks.provider.network_choice, "--deployment", str(manifest)]
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None):
        return runner.invoke(risk_app, list(args), input=stdin, env={"COLUMNS": "200"})

    before = run("diff", "--book", str(book_path), *opts)
    assert before.exit_code == 0, before.output
    assert "publication plan" in before.output and "pc2-down" in before.output

    declined = run("push", "--book", str(book_path), *opts, stdin="n\n")
    assert declined.exit_code == 1 and "cancelled; nothing was sent" in declined.output
    assert read_book(ch) != target

    refused = run("push", "--book", str(book_path), "--yes", "--account", "test:7", *opts)
    assert refused.exit_code == 1 and "RISK_ROLE" in refused.output
    assert read_book(ch) != target

    pushed = run("push", "--book", str(book_path), "--yes", "--account", "test:0", *opts)
    assert pushed.exit_code == 0, pushed.output
    assert "published" in pushed.output and read_book(ch) == target

    after = run("diff", "--book", str(book_path), *opts)
    assert after.exit_code == 0 and "already holds this book" in after.output


def test_cli_push__manifest_of_another_genesis__refused(protocol, networks, target, tmp_path):
    """A restarted anvil keeps chain id and addresses: the genesis hash tells them apart."""
    ch = protocol.clearinghouse
    here = ape.chain.blocks[0].hash.hex().removeprefix("0x")
    book_path = tmp_path / "book.yaml"
    book_path.write_text(book_yaml(target, protocol.symbols))
    outputs = []
    for genesis in (here, "ab" * 32):
        manifest = tmp_path / "local.json"
        doc = {"chain_id": ape.chain.chain_id, "contracts": {"clearinghouse": ch.address}}
        manifest.write_text(json.dumps({**doc, "markets": protocol.symbols, "genesis": genesis}))
        opts = ["--network", networks.provider.network_choice, "--deployment", str(manifest)]
        args = ["push", "--book", str(book_path), "--account", "test:0", *opts]
        outputs.append(CliRunner().invoke(risk_app, args, input="n\n", env={"COLUMNS": "200"}))
    same, other = outputs
    assert "belongs to another chain" not in same.output  # got as far as the question
    assert "cancelled; nothing was sent" in same.output
    assert other.exit_code == 1 and "belongs to another chain" in other.output
    assert read_book(ch) != target


def test_ape_run_script(protocol, target, tight, tmp_path: Path, monkeypatch, capsys):
    """scripts/risk_push.py (what `ape run risk_push` runs) on the test chain."""
    import importlib.util

    import perpdex.deploy

    manifest = tmp_path / "local.json"
    manifest.write_text(
        json.dumps(
            {
                "chain_id": ape.chain.chain_id,
                "contracts": {"clearinghouse": protocol.clearinghouse.address},
                "markets": protocol.symbols,
            }
        )
    )
    book_path = tmp_path / "book.yaml"
    book_path.write_text(book_yaml(target, protocol.symbols))
    monkeypatch.setattr(perpdex.deploy, "manifest_path", lambda _key: manifest)
    monkeypatch.setenv("PERPDEX_RISK_BOOK", str(book_path))
    monkeypatch.setenv("PERPDEX_RISK_ACCOUNT", "test:0")
    path = Path(__file__).resolve().parents[2] / "scripts" / "risk_push.py"
    spec = importlib.util.spec_from_file_location("risk_push_script", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main()
    assert read_book(protocol.clearinghouse) == target
    assert "published" in capsys.readouterr().out
