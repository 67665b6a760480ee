"""The `perpdex` console command: plumbing shared by every command module.

Layout:
    main.py      the root `app`, its global options (--network, --account, --deployment)
                 and the account and collateral commands
    <group>.py   one module per later command group (quote, trade, portfolio, lp, keeper,
                 risk; strategies: mode, operator, loss-cap), each exposing a `typer.Typer`
                 (strategies: three) that main.py mounts with `add_typer`

A command takes `ctx: typer.Context`, gets the connection, signer and client from
`session(ctx)` and raises `PerpdexError` when something goes wrong; `PerpdexGroup` (the
root app's class) prints that as one red line with its hint and exits with code 1, so
commands never print tracebacks or handle errors themselves.

Start-up: `perpdex --help` and `perpdex --version` import neither ape nor the command
modules. main.py mounts the command groups lazily (`LazyCommand`): the root `--help`
lists them from a one-line summary kept next to the mount, and a group's module is
imported when the command is dispatched. ape is imported only when a command needs the
chain, and never by a read command given `--rpc`: those take `Session.reader()` (the
standalone client) and `Session.address()` (the --account's address, no key unlocked).
`python -m perpdex.devtools.bench_startup` measures them.

Output: rich tables on a terminal; when stdout is not a terminal (a pipe, a file, CI) the
width is fixed (`PIPE_WIDTH`, unless COLUMNS says otherwise), so the text does not depend on
the terminal of whoever ran it. Read commands also take `--json` (perpdex/cli/jsonout.py).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from perpdex.errors import PerpdexError

if TYPE_CHECKING:
    from ape.api import AccountAPI

    # typer (0.29) runs on its own vendored copy of click: TyperGroup.invoke takes that
    # Context, not click.Context (typer.Context is a subclass, too narrow for an override)
    from typer._click import Command as ClickCommand
    from typer._click import Context as ClickContext
    from typer._click import HelpFormatter

    from perpdex.sdk.client import PerpdexClient

__all__ = [
    "DEFAULT_NETWORK",
    "NUMBER_ARGS",
    "PIPE_WIDTH",
    "LazyCommand",
    "PerpdexGroup",
    "Session",
    "console",
    "fail",
    "fmt_amount",
    "fmt_usd",
    "parse_account_id",
    "parse_amount",
    "say",
    "session",
    "short_id",
]

DEFAULT_NETWORK = "ethereum:local:node"
TEST_ACCOUNT_PREFIX = "test:"
# Columns when the output is not a terminal and COLUMNS is unset: wider than every table
# (rich's own fallback, 80, would cut table cells short with "…").
PIPE_WIDTH = 240


def _width(stream: Any) -> int | None:
    """None (rich asks the terminal, or reads COLUMNS) on a terminal or with COLUMNS set;
    PIPE_WIDTH otherwise."""
    if os.environ.get("COLUMNS") or stream.isatty():
        return None
    return PIPE_WIDTH


def console() -> Console:
    """Console for results (built per call so it follows the current stdout and COLUMNS)."""
    return Console(highlight=False, width=_width(sys.stdout))


def _err_console() -> Console:
    return Console(stderr=True, highlight=False, width=_width(sys.stderr))


def say(message: str) -> None:
    """Print a result line (rich markup) without breaking it at the terminal width."""
    console().print(message, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print one red line and exit with code 1."""
    line = " ".join(message.split())
    _err_console().print(f"[bold red]error:[/] [red]{escape(line)}[/]", soft_wrap=True)
    raise typer.Exit(code=1)


@dataclass(frozen=True)
class LazyCommand:
    """A command (or command group) of the root app whose module is imported on dispatch.

    `module`.`attr` is a `typer.Typer`. With `group`, that Typer is the group mounted as the
    command's name (`perpdex lp ...`); without, the command of that name is taken from it
    (root commands such as `quote`). `summary` is what the root `--help` lists: the first
    paragraph of the command's help (tests/unit/test_cli_startup.py keeps them equal).
    """

    module: str
    attr: str
    summary: str
    group: bool = False

    def load(self, name: str) -> ClickCommand:
        import typer.main

        typer_app = getattr(importlib.import_module(self.module), self.attr)
        cmd = typer.main.get_command(typer_app)
        if self.group:
            cmd.name = name
            return cmd
        subs = getattr(cmd, "commands", None)
        found = cmd if subs is None else subs.get(name)  # a one-command Typer is the command
        if found is None or found.name != name:
            raise LookupError(f"{self.module}.{self.attr} has no command {name!r}")
        return found


class PerpdexGroup(TyperGroup):
    """Root command group: mounts `lazy` commands, turns perpdex and ape errors into one
    line and exit code 1."""

    lazy: ClassVar[dict[str, LazyCommand]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False  # rendering --help: lazy commands stay unimported stubs

    def list_commands(self, ctx: ClickContext) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in self.lazy if n not in self.commands)]

    def get_command(self, ctx: ClickContext, cmd_name: str) -> ClickCommand | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in self.lazy:
            return found
        spec = self.lazy[cmd_name]
        if self._listing:
            from typer.core import TyperCommand

            return TyperCommand(cmd_name, help=spec.summary)
        loaded = spec.load(cmd_name)
        self.commands[cmd_name] = loaded
        return loaded

    def format_help(self, ctx: ClickContext, formatter: HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except PerpdexError as e:
            fail(str(e))
        except Exception as e:
            if not _is_ape_error(e):
                raise
            fail(
                f"{_one_line(e)}; check that --network reaches the chain of the deployment "
                "and that --account can sign there"
            )


def _is_ape_error(err: BaseException) -> bool:
    """Whether `err` is an ApeException (without importing ape when it never was)."""
    if "ape.exceptions" not in sys.modules:
        return False
    from ape.exceptions import ApeException

    return isinstance(err, ApeException)


class Session:
    """Global options of one `perpdex` invocation; connects and builds the client lazily.

    Inside a process that already has an ape provider connected to the requested network
    (tests, `ape console`), that provider is reused instead of starting another, and ape's
    logging is left alone; otherwise the connection lasts until the command ends and ape
    logs only warnings unless `verbose`.
    """

    def __init__(
        self,
        ctx: typer.Context,
        network: str = DEFAULT_NETWORK,
        account: str | None = None,
        deployment: str | None = None,
        verbose: bool = False,
        rpc: str | None = None,
    ) -> None:
        self._ctx = ctx
        self.rpc = rpc
        self._provider_settings: dict[str, Any] | None = None
        self.network = network  # with `rpc`, chosen on connect (`rpc_network`)
        self.account = account
        self.deployment = deployment
        self.verbose = verbose
        self._connected = False
        self._signer: AccountAPI | None = None
        self._client: PerpdexClient | None = None
        self._read: PerpdexClient | None = None

    # --- network ------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect to `--network` (once), or adopt the matching connected provider."""
        if self._connected:
            return
        if self.rpc:
            self.network, self._provider_settings = rpc_network(self.rpc)
        from ape import networks
        from ape.exceptions import ApeException

        active = networks.active_provider
        if (
            active is not None
            and active.is_connected
            and _same_network(active.network_choice, self.network)
        ):
            self._connected = True
            return
        from perpdex.config import rpc_env_problem

        if problem := rpc_env_problem(self.network):
            raise PerpdexError(problem)
        if not self.verbose:
            from ape.logging import logger

            logger.set_level("WARNING")  # ape's "Connecting…" and "Confirmed…" lines
        try:
            manager = networks.parse_network_choice(
                self.network, disconnect_after=True, provider_settings=self._provider_settings
            )
            self._ctx.with_resource(manager)
        except (ApeException, OSError) as e:  # OSError: requests' ConnectionError family
            raise PerpdexError(
                f"cannot connect to {self.network} ({_one_line(e)}); start the node it points "
                "at (ethereum:local:node: `anvil` on port 8545, or `make demo`) or pick "
                "another --network (`ape networks list`)"
            ) from e
        self._connected = True

    @property
    def is_dev(self) -> bool:
        """Whether the connected network is a development chain (local or a fork), where
        ape's funded test accounts exist."""
        from ape import networks

        self.connect()
        return bool(networks.provider.network.is_dev)

    # --- signer and client ------------------------------------------------------------------

    def signer(self, required: bool = True) -> AccountAPI | None:
        """The `--account` (default `test:0` on local networks and forks); None when no
        account was given, none is required and the network is not a development chain."""
        if self._signer is not None:
            return self._signer
        self.connect()
        alias = self.account
        if alias is None:
            if self.is_dev:
                alias = f"{TEST_ACCOUNT_PREFIX}0"
            elif required:
                raise PerpdexError(
                    f"{self.network} needs a signer: pass --account <ape alias> "
                    "(list them with `ape accounts list`)"
                )
            else:
                return None
        if not required and _is_address(alias):
            return None  # a read for that address (`Session.address`): nothing signs
        self._signer = _load_account(alias)
        return self._signer

    def client(self, signer_required: bool = True) -> PerpdexClient:
        """The SDK client for `--deployment` (default: the network's manifest)."""
        if self._client is None:
            from perpdex.sdk.client import PerpdexClient

            signer = self.signer(required=signer_required)
            self._client = PerpdexClient.from_manifest(self.deployment, signer)
        return self._client

    def reader(self) -> PerpdexClient:
        """The client of a read command. With `--rpc` / PERPDEX_RPC_URL: the standalone
        `perpdex.sdk.lite.ReadClient` (the same client over raw JSON-RPC: no ape, ~10x
        faster to start) for `--deployment`, or the local manifest (`--rpc` always means an
        `ethereum:local:*` network to the ape path too; PERPDEX_NETWORK overrides the
        key). Otherwise the ape client, with no key unlocked."""
        if not self.rpc:
            return self.client(signer_required=False)
        if self._read is None:
            from perpdex.sdk.lite import ReadClient
            from perpdex.sdk.manifest import Deployment, resolve_manifest

            key = os.environ.get("PERPDEX_NETWORK") or "local"
            path = resolve_manifest(self.deployment or key)
            self._read = ReadClient(self.rpc, Deployment.load(path))
        return self._read

    @property
    def where(self) -> str:
        """The node, for messages: the `--rpc` URL or the `--network` choice."""
        return self.rpc or self.network

    def address(self, required: bool = True) -> str | None:
        """The `--account`'s address (default test:0 on local networks, forks and with
        `--rpc`), for reads: `test:N`, a raw address or an ape keyfile alias, resolved
        without unlocking a key (and without ape under `--rpc`). None when no account was
        given, none is required and the network is not a development chain."""
        if self._signer is not None:
            return str(self._signer.address)
        alias = self.account
        if alias is not None and _is_address(alias):
            from perpdex.sdk.handles import _address

            return _address(alias)
        if not self.rpc:
            signer = self.signer(required)
            return None if signer is None else str(signer.address)
        return account_address(alias or f"{TEST_ACCOUNT_PREFIX}0")

    def resolve_account(
        self, client: PerpdexClient, sub: int | None, account_id: int | None
    ) -> int:
        """Account id from `--account-id`, or the `--account`'s sub-account `--sub`
        (default 0)."""
        if sub is not None and account_id is not None:
            raise typer.BadParameter("give --sub or --account-id, not both")
        if account_id is not None:
            return account_id
        return self.own_sub_account(client, sub or 0)

    def own_sub_account(self, client: PerpdexClient, index: int) -> int:
        """Id of the `--account`'s sub-account `index`, checked to exist."""
        owner = self.address()
        assert owner is not None  # required=True raises instead of returning None
        count = client.sub_account_count(owner)
        if count == 0:
            raise PerpdexError(
                f"{owner} has no sub-account yet; open one with `perpdex open-account NAME`"
            )
        if not 0 <= index < count:
            raise PerpdexError(
                f"{owner} has sub-accounts 0..{count - 1}, not {index}; pick one "
                "with --sub or open another with `perpdex open-account NAME`"
            )
        return client.account_id(owner, index)


def session(ctx: typer.Context) -> Session:
    """The `Session` the root callback stored for this invocation."""
    found = ctx.find_object(Session)
    if found is None:
        raise PerpdexError("run this command through the `perpdex` app, not on its own")
    return found


def _one_line(err: BaseException, limit: int = 160) -> str:
    """First sentence of an exception message, on one line."""
    text = " ".join(str(err).split()).split(". ")[0].rstrip(".") or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rpc_network(url: str) -> tuple[str, dict[str, Any] | None]:
    """The ape network choice (and provider settings) for `--rpc URL`. A local anvil is
    attached through ape-foundry (APE_FOUNDRY_HOST), so it stays a development chain:
    test accounts, `ethereum-local` manifests and time warps work; any other node goes
    through ape's node provider with that URI."""
    import os

    from perpdex.devtools.devnet import DevnetError, rpc

    try:
        client = str(rpc(url, "web3_clientVersion", timeout=5.0)).lower()
        chain_id = int(rpc(url, "eth_chainId", timeout=5.0), 16)
    except (OSError, DevnetError, ValueError) as e:
        raise PerpdexError(
            f"no JSON-RPC node answers on {url} ({_one_line(e)}); start one (`perpdex devnet "
            "up`) or fix --rpc / PERPDEX_RPC_URL"
        ) from None
    if "anvil" in client:
        os.environ["APE_FOUNDRY_HOST"] = url
        return "ethereum:local:foundry", None
    return "ethereum:local:node", {"ethereum": {"local": {"uri": url, "chain_id": chain_id}}}


def _same_network(active: str, requested: str) -> bool:
    """`ethereum:local` matches a connected `ethereum:local:foundry`; empty parts match any."""
    have, want = active.split(":"), requested.split(":")
    return len(want) <= len(have) and all(w in ("", h) for w, h in zip(want, have, strict=False))


def _is_address(text: str) -> bool:
    body = text.removeprefix("0x")
    return text.startswith("0x") and len(body) == 40 and all(c in HEX for c in body)


HEX = frozenset("0123456789abcdefABCDEF")


def _test_index(alias: str, count: int) -> int:
    """N of `test:N`, checked against the `count` test accounts there are."""
    n = alias.removeprefix(TEST_ACCOUNT_PREFIX)
    if not n.isdigit():
        raise PerpdexError(f"{alias!r} is not a test account; write it as test:N, e.g. test:1")
    if int(n) >= count:
        raise PerpdexError(
            f"there is no test account {alias}: ape has {count} (test:0 to "
            f"test:{count - 1}); pick one of those, or raise `test: number_of_accounts` "
            "in ape-config.yaml (and anvil's --accounts)"
        )
    return int(n)


def account_address(alias: str) -> str:
    """The address of `--account` without ape or a key: `test:N` derived from ape's test
    mnemonic (perpdex/sdk/lite/keys.py), a keyfile alias read from ape's accounts folder
    (APE_DATA_FOLDER, default ~/.ape: the keyfile records its address)."""
    import json

    if alias.startswith(TEST_ACCOUNT_PREFIX):
        from perpdex.sdk.lite.keys import test_account_address, test_accounts

        return test_account_address(_test_index(alias, test_accounts().count))
    folder = Path(os.environ.get("APE_DATA_FOLDER") or Path.home() / ".ape") / "accounts"
    keyfile = folder / f"{alias}.json"
    try:
        address = str(json.loads(keyfile.read_text())["address"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PerpdexError(
            f"no ape account named {alias!r} ({keyfile} unreadable: {_one_line(e)}); import "
            f"it with `ape accounts import {alias}`, or give --account test:N or an address"
        ) from None
    from perpdex.sdk.handles import _address

    return _address(address if address.startswith("0x") else "0x" + address)


def _load_account(alias: str) -> AccountAPI:
    from ape import accounts
    from ape.exceptions import ApeException

    if alias.startswith(TEST_ACCOUNT_PREFIX):
        return accounts.test_accounts[_test_index(alias, len(accounts.test_accounts))]
    if _is_address(alias):
        raise PerpdexError(
            f"{alias} is an address: it can be read (`--owner`, read commands) but not "
            "sign; give --account <ape alias> or test:N"
        )
    try:
        account = accounts.load(alias)
    except (ApeException, IndexError, KeyError) as e:
        raise PerpdexError(
            f"no ape account named {alias!r}; import it with `ape accounts import {alias}` "
            "or use test:N on a local network"
        ) from e
    if f"APE_ACCOUNTS_{alias}_PASSPHRASE" in os.environ:
        # unlocked without a prompt (ape reads the variable): sign without asking too
        account.set_autosign(True)
    return account


# --- parsing and formatting ------------------------------------------------------------------


# Commands whose amounts are arguments take `-100` as an argument (not an unknown option),
# so parse_amount can say that amounts are positive.
NUMBER_ARGS = {"ignore_unknown_options": True}


def parse_amount(text: str) -> Decimal:
    """A positive decimal amount such as 250 or 99.5 (no thousands separators)."""
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation as e:
        if text.startswith("-"):  # an unknown option passed through by NUMBER_ARGS
            raise typer.BadParameter(f"no such option {text!r}; see --help") from e
        raise typer.BadParameter(f"{text!r} is not a number; write it like 250 or 99.5") from e
    if not value.is_finite() or value <= 0:
        raise typer.BadParameter(
            f"{text!r}: amounts must be above zero (the command says the direction: "
            "deposit or withdraw)"
        )
    return value


def parse_account_id(text: str) -> int:
    """An account id in hex (0x...) or decimal, as `perpdex account --full-ids` prints it."""
    try:
        value = int(text, 0)
    except ValueError as e:
        raise typer.BadParameter(
            f"{text!r} is not an account id; copy it from `perpdex account --full-ids`"
        ) from e
    if not 0 < value < 2**256:
        raise typer.BadParameter(f"{text!r} is out of range for an account id")
    return value


# --- options shared by the account and trading commands ---------------------------------

Sub = Annotated[
    int | None,
    typer.Option("--sub", "-s", min=0, help="Your sub-account number (default 0)."),
]
AccountId = Annotated[
    int | None,
    typer.Option(
        "--account-id",
        parser=parse_account_id,
        metavar="ID",
        help="Full account id (hex or decimal) instead of --sub.",
    ),
]


def short_id(account: int) -> str:
    """`0x7099…0001`: the owner's first hex digits and the index in the last four."""
    full = f"{account:#066x}"
    return f"{full[:6]}…{full[-4:]}"


def fmt_amount(value: Decimal, max_places: int = 6) -> str:
    """`1,234.5` -> `1,234.50`; keeps up to `max_places` significant decimals, cut toward
    zero (never rounded up: a balance shown can always be withdrawn as shown)."""
    exponent = value.normalize().as_tuple().exponent
    places = min(max_places, max(2, -exponent if isinstance(exponent, int) else 2))
    cut = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    return f"{cut:,.{places}f}"


def fmt_usd(value: Decimal) -> str:
    """`-12.5` -> `-$12.50`."""
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"
