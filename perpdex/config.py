"""Typed views of config/markets.yaml, config/risk.yaml and config/networks.yaml.

The deploy, the SDK, the CLI and the tests all read parameters through this module, so a
value is written once (in YAML) and converted once (here).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from perpdex.constants import BPS, WAD
from perpdex.errors import ConfigError
from perpdex.units import to_bps, to_nano_wad, to_wad

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
# Oracle feeds every market must ship with (a price needs two agreeing; see load_system).
MIN_ORACLE_SOURCES = 3

# modules/treasury.vy LP_EXIT_HEADROOM_BPS: LP withdrawals may take the vault's exposure
# to this multiple of the caps traders are held to (tests/unit/test_liquidity_vault.py
# checks the two are equal)
LP_EXIT_HEADROOM_BPS = 15_000


@dataclass(frozen=True)
class OracleConfig:
    sources: int
    max_age: int
    min_fresh: int
    max_deviation_bps: int
    min_price: int  # WAD
    max_price: int  # WAD
    twap_window: int

    def add_market_args(self, feeds: list[str]) -> tuple[Any, ...]:
        """OracleRouter.add_market's arguments for this market read from `feeds` (one
        address per source, each with this config's `max_age`)."""
        return (
            list(feeds),
            [self.max_age] * len(feeds),
            self.min_price,
            self.max_price,
            self.max_deviation_bps,
            self.min_fresh,
            self.twap_window,
        )


@dataclass(frozen=True)
class DelayedOrdersConfig:
    """A market's delayed vault orders (modules/delayed.vy `set_delayed_params`)."""

    mode: int  # 0 immediate trades allowed, 1 adding vault trades delayed, 2 every one
    min_delay: int  # seconds after the commit before a price may fill it
    max_age: int  # seconds after the commit it may still settle
    keeper_fee: int  # USD WAD, paid to whoever settles

    def args(self) -> tuple[int, int, int, int]:
        return self.mode, self.min_delay, self.max_age, self.keeper_fee

    def word(self) -> int:
        """The `delayed_config(market)` word the contract stores for these settings."""
        return self.min_delay | self.max_age << 32 | self.keeper_fee << 64 | self.mode << 192


@dataclass(frozen=True)
class MarketConfig:
    symbol: str
    price: Decimal
    oracle: OracleConfig
    skew_scale: int  # WAD base units
    maker_fee: int  # WAD fraction on the 1e-9 grid
    taker_fee: int
    max_funding_velocity: int
    max_funding_rate: int
    max_oi: int  # WAD base units
    max_vault_exposure: int  # WAD fraction
    delayed: DelayedOrdersConfig | None = None  # None: no delayed orders

    def params(self) -> dict[str, Any]:
        """The `MarketParams` struct the clearinghouse's add_market/set_market_params take."""
        return {
            "skew_scale": self.skew_scale,
            "maker_fee": self.maker_fee,
            "taker_fee": self.taker_fee,
            "max_funding_velocity": self.max_funding_velocity,
            "max_funding_rate": self.max_funding_rate,
            "listed": True,
            "paused": False,
            "max_oi": self.max_oi,
            "max_vault_exposure": self.max_vault_exposure,
        }


@dataclass(frozen=True)
class LiquidationConfig:
    keeper_tip: int  # WAD
    keeper_fee: int
    keeper_cap: int
    penalty: int
    target_health: int
    critical_health: int
    min_step: int
    max_step: int
    small_account: int
    cooldown: int
    start_discount: int
    max_discount: int
    duration: int
    cusp: int
    window: int

    def params(self) -> dict[str, int]:
        """The `Params` struct of LiquidationAuction."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class SystemConfig:
    settlement_symbol: str
    settlement_decimals: int
    insurance_bps: int
    protocol_bps: int
    max_mark_age: int
    loss_cap_fee: int  # WAD
    markets: tuple[MarketConfig, ...]
    vault_decimals_offset: int = 6
    vault_withdraw_fee_bps: int = 105
    vault_feed_deviation_bps: int = 50
    liquidation: LiquidationConfig | None = None

    @property
    def vault_min_withdraw_fee_bps(self) -> int:
        """The largest share-price move one oracle update round can cause, in bp
        (rounded up): feed deviation threshold x the sum of every market's vault-exposure
        cap (a correlated update moves every market at once) x the headroom LP exits may
        use above the caps (LP_EXIT_HEADROOM_BPS). The vault's withdrawal fee must be at
        least this (LiquidityVault's notice has the arithmetic)."""
        caps = sum(m.max_vault_exposure for m in self.markets)
        return -(-self.vault_feed_deviation_bps * caps * LP_EXIT_HEADROOM_BPS // (WAD * BPS))

    def market(self, symbol: str) -> MarketConfig:
        for m in self.markets:
            if m.symbol == symbol.upper():
                return m
        known = ", ".join(m.symbol for m in self.markets)
        raise ConfigError(f"unknown market {symbol!r}; known markets: {known}")

    def market_id(self, symbol: str) -> int:
        return self.markets.index(self.market(symbol))


@dataclass(frozen=True)
class MarketRisk:
    imr_min_bps: int
    imr_slope_bps: int
    margin_scale: int  # WAD base units


@dataclass(frozen=True)
class Scenario:
    name: str
    shocks_bps: dict[str, int]


@dataclass(frozen=True)
class RiskConfig:
    floor_bps: int
    maintenance_bps: int
    markets: dict[str, MarketRisk]
    scenarios: tuple[Scenario, ...] = field(default_factory=tuple)

    def with_market(self, symbol: str, risk: MarketRisk, shocks_bps: dict[str, int]) -> RiskConfig:
        """This config plus market `symbol` (as for listing it): each scenario shocks it by
        `shocks_bps[scenario name]`, 0 where the name is absent."""
        if symbol in self.markets:
            raise ConfigError(f"market {symbol!r} is already in the risk config")
        scenarios = tuple(
            replace(s, shocks_bps={**s.shocks_bps, symbol: shocks_bps.get(s.name, 0)})
            for s in self.scenarios
        )
        return replace(self, markets={**self.markets, symbol: risk}, scenarios=scenarios)


def _load_yaml(name: str, path: Path | None) -> dict[str, Any]:
    p = path or CONFIG_DIR / name
    if not p.exists():
        raise ConfigError(f"{p} is missing; restore it from git (`git checkout -- {p.name}`)")
    with p.open() as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a YAML mapping")
    return data


def load_system(path: Path | None = None) -> SystemConfig:
    """Read config/markets.yaml."""
    d = _load_yaml("markets.yaml", path)
    try:
        markets = []
        for m in d["markets"]:
            o = m["oracle"]
            markets.append(
                MarketConfig(
                    symbol=str(m["symbol"]).upper(),
                    price=Decimal(str(m["price"])),
                    oracle=OracleConfig(
                        sources=int(o["sources"]),
                        max_age=int(o["max_age"]),
                        min_fresh=int(o["min_fresh"]),
                        max_deviation_bps=to_bps(o["max_deviation"]),
                        min_price=to_wad(o["min_price"]),
                        max_price=to_wad(o["max_price"]),
                        twap_window=int(o["twap_window"]),
                    ),
                    skew_scale=to_wad(m["skew_scale"]),
                    maker_fee=to_nano_wad(m["maker_fee"]),
                    taker_fee=to_nano_wad(m["taker_fee"]),
                    max_funding_velocity=to_nano_wad(m["max_funding_velocity"]),
                    max_funding_rate=to_nano_wad(m["max_funding_rate"]),
                    max_oi=to_wad(m["max_oi"]),
                    max_vault_exposure=to_nano_wad(m["max_vault_exposure"]),
                    delayed=_delayed(m.get("delayed")),
                )
            )
        system = SystemConfig(
            settlement_symbol=str(d["settlement"]["symbol"]),
            settlement_decimals=int(d["settlement"]["decimals"]),
            insurance_bps=to_bps(d["fees"]["insurance_share"]),
            protocol_bps=to_bps(d["fees"]["protocol_share"]),
            max_mark_age=int(d["max_mark_age"]),
            loss_cap_fee=to_wad(d["loss_cap_fee"]),
            markets=tuple(markets),
            vault_decimals_offset=int(d["vault"]["decimals_offset"]),
            vault_withdraw_fee_bps=to_bps(d["vault"]["withdraw_fee"]),
            vault_feed_deviation_bps=to_bps(d["vault"]["feed_deviation"]),
            liquidation=LiquidationConfig(
                **{
                    k: (int(v) if k in ("cooldown", "duration", "window") else to_wad(v))
                    for k, v in d["liquidation"].items()
                }
            ),
        )
        if system.vault_withdraw_fee_bps < system.vault_min_withdraw_fee_bps:
            raise ConfigError(
                f"config/markets.yaml: vault.withdraw_fee {system.vault_withdraw_fee_bps} bp is "
                f"below {system.vault_min_withdraw_fee_bps} bp, the share-price move one "
                "oracle update can cause (feed_deviation x the sum of max_vault_exposure)"
            )
        return system
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"config/markets.yaml: bad or missing field {e}; compare with git") from e
    for m in markets:
        # a price needs a quorum of two agreeing feeds (OracleRouter); three feeds keep a
        # quorum when one fails or lies
        if m.oracle.sources < MIN_ORACLE_SOURCES:
            raise ConfigError(
                f"config/markets.yaml: {m.symbol} has {m.oracle.sources} oracle sources; "
                f"ship at least {MIN_ORACLE_SOURCES} so one bad feed cannot freeze the market"
            )
        if not 2 <= m.oracle.min_fresh <= m.oracle.sources:
            raise ConfigError(
                f"config/markets.yaml: {m.symbol} min_fresh must be 2..{m.oracle.sources} "
                "(a price needs a quorum of two agreeing feeds)"
            )
    return system


def _delayed(d: dict[str, Any] | None) -> DelayedOrdersConfig | None:
    """A market's `delayed:` section (absent: none)."""
    if d is None:
        return None
    cfg = DelayedOrdersConfig(
        mode=int(d["mode"]),
        min_delay=int(d["min_delay"]),
        max_age=int(d["max_age"]),
        keeper_fee=to_wad(d["keeper_fee"]),
    )
    if cfg.mode not in (0, 1, 2):
        raise ValueError(f"delayed.mode {cfg.mode} (0, 1 or 2)")
    if not 0 < cfg.min_delay < cfg.max_age:
        raise ValueError("delayed: need 0 < min_delay < max_age")
    return cfg


def load_risk(path: Path | None = None) -> RiskConfig:
    """Read config/risk.yaml."""
    d = _load_yaml("risk.yaml", path)
    try:
        markets = {
            str(sym).upper(): MarketRisk(
                imr_min_bps=to_bps(v["imr_min"]),
                imr_slope_bps=to_bps(v["imr_slope"]),
                margin_scale=to_wad(v["margin_scale"]),
            )
            for sym, v in d["markets"].items()
        }
        scenarios = tuple(
            Scenario(
                name=str(s["name"]),
                shocks_bps={k.upper(): int(v) for k, v in s.items() if k != "name"},
            )
            for s in d["scenarios"]
        )
        return RiskConfig(
            floor_bps=to_bps(d["floor"]),
            maintenance_bps=to_bps(d["maintenance_ratio"]),
            markets=markets,
            scenarios=scenarios,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"config/risk.yaml: bad or missing field {e}; compare with git") from e


def load_networks(path: Path | None = None) -> dict[str, Any]:
    """Read config/networks.yaml (per-network deploy settings)."""
    return _load_yaml("networks.yaml", path)


def rpc_env_problem(choice: str, config: Path | None = None) -> str | None:
    """What to set when the ape network `choice` (`arbitrum:sepolia[:node]`) reads its RPC
    URL from an environment variable (ape-config.yaml `node: <eco>: <net>: uri: $VAR`) that
    is unset; None when nothing is missing (or the choice is a URL or not configured so).

    ape itself only says "Invalid uri: $VAR" (or prints a traceback), after seconds of
    start-up, so the CLI and the scripts check this first.
    """
    import os
    import re

    parts = choice.split(":")
    if len(parts) < 2 or "//" in choice or (len(parts) > 2 and parts[2] not in ("", "node")):
        return None
    path = config or ROOT / "ape-config.yaml"
    try:
        node = (yaml.safe_load(path.read_text()) or {}).get("node") or {}
        uri = node.get(parts[0], {}).get(parts[1], {}).get("uri")
    except (OSError, AttributeError, yaml.YAMLError):
        return None
    if not isinstance(uri, str) or not (
        m := re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", uri)
    ):
        return None
    var = m.group(1)
    if os.environ.get(var):
        return None
    return (
        f"{parts[0]}:{parts[1]} reads its RPC URL from the environment variable {var}, which "
        f"is not set: `export {var}=https://...` (your RPC provider's endpoint for that "
        "network), then retry"
    )


def exit_if_rpc_unset(argv: list[str]) -> None:
    """For `ape run` scripts, at import (before ape connects): exit with one line when the
    `--network` in `argv` needs an unset RPC variable (see rpc_env_problem)."""
    import sys

    choice = next(
        (
            a.split("=", 1)[1] if "=" in a else argv[i + 1]
            for i, a in enumerate(argv)
            if (a == "--network" and i + 1 < len(argv)) or a.startswith("--network=")
        ),
        None,
    )
    if choice and (problem := rpc_env_problem(choice)):
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(1)
