"""The `perpdex` CLI without a chain: lazy start-up, --version, pipe width, usage errors
caught before any connection, the RPC-variable check, the keeper state lock and --json
number formatting. (Chain-backed --json output is tested in test_cli_trading.py.)"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from cli_helpers import ok
from typer.testing import CliRunner

from perpdex.cli import PIPE_WIDTH, console, parse_amount
from perpdex.cli.jsonout import num
from perpdex.cli.keeper import _PrintedByTheCommand
from perpdex.cli.main import RootGroup, app, version_text
from perpdex.config import exit_if_rpc_unset, rpc_env_problem
from perpdex.keepers.state import StateLock, StateLocked

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("ape", "web3", "numpy", "matplotlib", "perpdex.sdk.client")

# run in a fresh interpreter: which modules did `perpdex ARGS` import?
PROBE = """
import json, sys
from perpdex.cli.main import app
try:
    app(sys.argv[1:], prog_name="perpdex")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(*args: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


# --- start-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["lp", "--help"],
        ["keeper", "rebalance", "--help"],
        ["keeper", "rebalance", "status", "--state", "/nonexistent/rebalance.json"],
    ],
)
def test_startup__help_and_version_import_no_chain_stack(args):
    """Also `keeper rebalance pause|resume|status`: the override edits a file, so a human
    stops the bot at once, without ape or a node."""
    mods = imported_by(*args)
    heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY or m in HEAVY)
    assert not heavy, f"`perpdex {' '.join(args)}` imported {heavy[:8]}"
    if args == ["--help"]:  # the root help lists groups without importing their modules
        assert not {"perpdex.cli.trade", "perpdex.cli.risk", "perpdex.cli.keeper"} & mods
    if args == ["--version"]:  # not even typer's rich help tables
        assert "rich.table" not in mods


def test_lazy_summaries_are_the_commands_own_help():
    """The root --help lists lazy commands from RootGroup.lazy; each summary must be the first
    paragraph of the command's real help, so the listing cannot drift from the commands."""
    for name, spec in RootGroup.lazy.items():
        cmd = spec.load(name)
        assert cmd.name == name
        first = " ".join((cmd.help or "").split("\n\n")[0].split())
        assert spec.summary == first, name


def test_help__lists_every_command_in_order():
    out = ok(CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}))
    panel = out[out.index("Commands") :]
    names = ["deposit", "withdraw", "transfer", "open-account", "account", *RootGroup.lazy]
    positions = [panel.index(f"│ {n} ") for n in names]
    assert positions == sorted(positions)


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert ok(result).strip() == version_text()
    assert version_text().startswith("perpdex 0.")


def test_unknown_command__usage_error():
    result = CliRunner().invoke(app, ["qoute"])
    assert result.exit_code == 2
    assert "No such command" in result.output


# --- output width -----------------------------------------------------------------------------


def test_console__fixed_width_when_not_a_terminal(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert console().width == PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "90")
    assert console().width == 90


def test_piped_output__tables_not_cut_at_80_columns():
    """rich's own fallback for a pipe is 80 columns, which cut table cells short with "…"."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    code = (
        "from perpdex.cli import console; from rich.table import Table\n"
        "t = Table('a' * 60, 'b' * 60, 'c' * 60); t.add_row('x' * 60, 'y' * 60, 'z' * 60)\n"
        "console().print(t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        check=True,
    ).stdout
    assert "x" * 60 in out and "z" * 60 in out and "…" not in out


# --- usage errors before any connection ----------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["deposit", "-100"],
        ["withdraw", "-5"],
        ["transfer", "-1", "--from-sub", "0", "--to-sub", "1"],
        ["lp", "deposit", "-10"],
    ],
)
def test_negative_amount__says_amounts_are_positive(args):
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "amounts must be above zero" in result.output
    assert "No such option" not in result.output


def test_unknown_option_on_an_amount_command__still_named():
    result = CliRunner().invoke(app, ["deposit", "--bogus"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "no such option '--bogus'" in result.output


def test_parse_amount__messages():
    assert parse_amount("1_000.5") == Decimal("1000.5")
    for bad in ("0", "-3", "NaN", "inf"):
        with pytest.raises(typer.BadParameter, match="above zero"):
            parse_amount(bad)


def test_trade__slippage_and_limit_together__refused():
    result = CliRunner().invoke(
        app, ["trade", "BTC", "1", "--slippage", "1", "--limit", "100000"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2
    assert "not both" in result.output


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "give the sub-account a name"),
        ("   ", "give the sub-account a name"),
        (" main", "blanks"),
    ],
)
def test_open_account__blank_name__refused(name, why):
    result = CliRunner().invoke(app, ["open-account", name], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert why in result.output


# --- the RPC variable of a testnet ----------------------------------------------------------

APE_CONFIG = """
node:
  ethereum:
    local:
      uri: http://127.0.0.1:8545
  arbitrum:
    sepolia:
      uri: $PERPDEX_TEST_RPC_URL
"""


def test_rpc_env_problem__names_the_unset_variable(tmp_path, monkeypatch):
    cfg = tmp_path / "ape-config.yaml"
    cfg.write_text(APE_CONFIG)
    monkeypatch.delenv("PERPDEX_TEST_RPC_URL", raising=False)
    for choice in ("arbitrum:sepolia", "arbitrum:sepolia:node"):
        problem = rpc_env_problem(choice, cfg)
        assert problem is not None and "export PERPDEX_TEST_RPC_URL=" in problem
    assert rpc_env_problem("ethereum:local:node", cfg) is None
    assert rpc_env_problem("arbitrum:sepolia-fork:foundry", cfg) is None
    assert rpc_env_problem("http://127.0.0.1:8545", cfg) is None
    monkeypatch.setenv("PERPDEX_TEST_RPC_URL", "https://rpc.example")
    assert rpc_env_problem("arbitrum:sepolia", cfg) is None


def test_rpc_env_problem__the_projects_testnets(monkeypatch):
    monkeypatch.delenv("ARBITRUM_SEPOLIA_RPC_URL", raising=False)
    problem = rpc_env_problem("arbitrum:sepolia")
    assert problem is not None and "ARBITRUM_SEPOLIA_RPC_URL" in problem


def test_exit_if_rpc_unset__reads_the_network_option(monkeypatch, capsys):
    monkeypatch.delenv("BASE_SEPOLIA_RPC_URL", raising=False)
    exit_if_rpc_unset(["ape", "run", "deploy", "--network", "ethereum:local:node"])
    for argv in (["run", "--network", "base:sepolia"], ["run", "--network=base:sepolia"]):
        with pytest.raises(SystemExit) as e:
            exit_if_rpc_unset(argv)
        assert e.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "BASE_SEPOLIA_RPC_URL" in err[0]


def test_cli__testnet_without_rpc_variable__one_line(monkeypatch):
    monkeypatch.delenv("OPTIMISM_SEPOLIA_RPC_URL", raising=False)
    result = CliRunner().invoke(app, ["--network", "optimism:sepolia", "account"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "OPTIMISM_SEPOLIA_RPC_URL" in lines[0]


# --- keepers ------------------------------------------------------------------------------------


def test_state_lock__second_keeper_refused_until_the_first_stops(tmp_path):
    state = tmp_path / "keeper" / "liquidator-local.json"
    first = StateLock(state)
    first.acquire()
    with pytest.raises(StateLocked, match=rf"pid {os.getpid()}\) is running on .*--state PATH"):
        StateLock(state).acquire()
    first.release()
    with StateLock(state):  # free again
        pass


def test_state_lock__held_by_another_process(tmp_path):
    state = tmp_path / "liquidator.json"
    code = (
        "import sys, time; from pathlib import Path; from perpdex.keepers.state import StateLock\n"
        "lock = StateLock(Path(sys.argv[1])); lock.acquire(); print('held', flush=True)\n"
        "time.sleep(30)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(state)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(StateLocked, match=f"pid {child.pid}"):
            StateLock(state).acquire()
    finally:
        child.kill()
        child.wait()
    with StateLock(state):  # the OS dropped the dead process's lock
        pass


def _record(name: str, func: str, level: int = logging.INFO) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, "msg", (), None)
    rec.funcName = func
    return rec


def test_keeper_cli__drops_the_log_lines_it_prints_itself():
    f = _PrintedByTheCommand()
    assert not f.filter(_record("perpdex.keepers.price_pusher", "push"))
    assert not f.filter(_record("perpdex.keepers.liquidator", "execute"))
    assert not f.filter(_record("perpdex.keepers.liquidator", "execute", logging.WARNING))
    assert f.filter(_record("perpdex.keepers.liquidator", "execute", logging.ERROR))
    assert f.filter(_record("perpdex.keepers.liquidator", "_discover"))
    assert f.filter(_record("perpdex.keepers.price_pusher", "run"))
    assert not f.filter(_record("perpdex.keepers.rebalance", "set_mode"))
    assert not f.filter(_record("perpdex.keepers.rebalance", "kill"))
    assert f.filter(_record("perpdex.keepers.rebalance", "kill", logging.ERROR))
    assert f.filter(_record("perpdex.keepers.rebalance", "_done"))  # the bot's actions
    # the orders keeper: the command prints a row per order executed or refused
    assert not f.filter(_record("perpdex.keepers.orders", "execute"))
    assert not f.filter(_record("perpdex.keepers.orders", "_refused"))
    assert f.filter(_record("perpdex.keepers.orders", "load", logging.WARNING))


def test_gitignore_has_the_keeper_state():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".keeper/" in ignored
    assert ".orders/" in ignored  # `perpdex orders stop` writes signed orders there


# --- --json numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("100000.000"), "100000"),
        (Decimal("1E+5"), "100000"),
        (Decimal("-12.50"), "-12.5"),
        (Decimal("0.000000000000000001"), "0.000000000000000001"),
        (Decimal("-0"), "0"),
        (7, "7"),
        (None, None),
    ],
)
def test_json_num__exact_decimal_strings(value, text):
    assert num(value) == text
