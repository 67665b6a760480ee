"""`--json` output of the read commands: one JSON document on stdout, nothing else.

Conventions (docs/cli.md "Machine-readable output"):
- money, prices, sizes, rates and shares are strings holding the exact decimal the SDK
  computed (`"100000"`, `"-12.5"`, `"0.0005"`; never a float, never an exponent), so no
  precision is lost and a reader parses them with its own decimal type; ratios computed
  by division (health, utilisation, liquidation distance) carry 28 significant digits;
- counts, indices, block numbers and timestamps are JSON integers;
- account ids are 0x-prefixed hex strings (they are 256-bit and overflow JSON numbers in
  most readers); addresses are checksummed hex strings;
- a figure that does not exist is `null` (no oracle price, no liquidation price, no health
  without positions); keys are always present.

Builders take the SDK's result objects (perpdex.sdk.client), so the JSON and the tables
are two views of the same figures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Context, Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from perpdex.sdk.client import (
        AccountInfo,
        AccountSummary,
        Fill,
        LegFill,
        LpStatus,
        Margin,
        MarketInfo,
        OrderCheck,
        Portfolio,
        Quote,
    )
    from perpdex.sdk.history import AccountHistory, PnlCorrelation, StrategyBook
    from perpdex.sdk.results import DelayedFill
    from perpdex.sdk.shock import StressResult

__all__ = [
    "Json",
    "account_info",
    "emit",
    "histories",
    "lp_status",
    "markets",
    "num",
    "portfolio",
    "quote",
    "strategies",
    "stress",
    "summaries",
    "trade",
]

Json = Annotated[
    bool,
    typer.Option("--json", help="Print one JSON document (docs/cli.md) instead of tables."),
]


# 28 significant digits, Python's default: explicit, because importing vyper (ape's
# compiler plugin, in-process) replaces the thread's decimal context with a 78-digit one
# and the same ratio would then print with 78 digits in one process and 28 in another
JSON_CONTEXT = Context(prec=28)


def num(value: Decimal | int | None) -> str | None:
    """The decimal as a string without exponent (`1E+2` -> `"100"`), at most 28
    significant digits whatever the thread's decimal context; None -> None."""
    if value is None:
        return None
    d = Decimal(value)
    return format(d.normalize(JSON_CONTEXT), "f") if d else "0"


def emit(document: Any) -> None:
    """Print `document` as indented JSON on stdout (keys in the builders' order)."""
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def account_info(info: AccountInfo) -> dict[str, Any]:
    return {
        "id": f"{info.id:#x}",
        "owner": info.owner,
        "index": info.index,
        "name": info.name,
        "mode": info.mode,
        "in_liquidation": info.in_liquidation,
    }


def markets(network: str, items: list[MarketInfo]) -> dict[str, Any]:
    """`perpdex quote --json` without a market."""
    return {
        "network": network,
        "markets": [
            {
                "id": m.id,
                "symbol": m.symbol,
                "oracle_price": num(m.oracle_price),
                "mark_price": num(m.mark_price) if m.mark_time else None,
                "mark_time": m.mark_time,
                "funding_rate_per_day": num(m.funding_rate),
                "long_oi": num(m.long_oi),
                "short_oi": num(m.short_oi),
                "skew": num(m.skew),
                "max_oi": num(m.max_oi),
                "maker_fee": num(m.maker_fee),
                "taker_fee": num(m.taker_fee),
                "paused": m.paused,
            }
            for m in items
        ],
    }


def order_check(c: OrderCheck | None) -> dict[str, Any]:
    """The verdict fields `perpdex quote --json` adds (null without an account)."""
    if c is None:
        return {"accepted": None, "refusal": None, "max_size": None, "max_leverage": None}
    return {
        "accepted": c.accepted,
        "refusal": c.reason,
        "max_size": num(c.max_size),
        "max_leverage": num(c.max_leverage),
    }


def quote(q: Quote, account_exists: bool, acceptable_price: Decimal) -> dict[str, Any]:
    """`perpdex quote SYMBOL SIZE --json`: the lens's figures for the order."""
    return {
        "account": f"{q.account:#x}",
        "account_exists": account_exists,
        "market": q.market,
        "symbol": q.symbol,
        "size": num(q.size),
        "side": "buy" if q.is_buy else "sell",
        "block_number": q.block_number,
        "oracle_price": num(q.oracle_price),
        "fill_price": num(q.fill_price),
        "price_impact": num(q.price_impact),
        "notional": num(q.notional),
        "fee": num(q.fee),
        "realized_pnl": num(q.realized_pnl),
        "funding_paid": num(q.funding_paid),
        "equity_after": num(q.equity_after),
        "initial_after": num(q.initial_after),
        "maintenance_after": num(q.maintenance_after),
        "health_after": num(q.health_after),
        "liquidation_price_after": num(q.liquidation_price_after),
        "acceptable_price_default_slippage": num(acceptable_price),
    }


def trade(
    info: AccountInfo,
    fills: Sequence[Fill] | Sequence[LegFill] | Sequence[DelayedFill],
    after: Margin,
) -> dict[str, Any]:
    """`perpdex trade ... --json`: the order's fills (one per leg; one transaction) and the
    account's margin after it. A delayed order's fill has no quote or bound of its own
    (null) and a keeper fee (0 for the others)."""
    from perpdex.sdk import results

    def delayed(f: Fill | LegFill | DelayedFill) -> bool:
        return isinstance(f, results.DelayedFill)

    return {
        "account": account_info(info),
        "tx_hash": fills[0].tx_hash if fills else None,
        "block_number": fills[0].block_number if fills else None,
        "legs": [
            {
                "market": f.market,
                "symbol": f.symbol,
                "side": "buy" if f.size_delta > 0 else "sell",
                "size_delta": num(f.size_delta),
                "fill_price": num(f.price),
                "quoted_fill_price": None if delayed(f) else num(f.quote.fill_price),  # type: ignore[union-attr]
                "acceptable_price": None if delayed(f) else num(f.acceptable_price),  # type: ignore[union-attr]
                "fee": num(f.fee),
                "keeper_fee": num(getattr(f, "keeper_fee", 0)),
                "realized_pnl": num(f.realized_pnl),
                "funding_paid": num(f.funding_paid),
                "cash_flow": num(f.cash_flow),
                "size_after": num(f.size_after),
            }
            for f in fills
        ],
        "fee": num(sum((f.fee for f in fills), Decimal(0))),
        "cash_flow": num(sum((f.cash_flow for f in fills), Decimal(0))),
        "margin_after": {
            "equity": num(after.equity),
            "initial": num(after.initial),
            "maintenance": num(after.maintenance),
            "free": num(after.free),
            "health": num(after.health),
        },
    }


def summaries(owner: str, network: str, items: list[AccountSummary]) -> dict[str, Any]:
    """`perpdex account --json`: every sub-account of `owner`."""
    return {
        "owner": owner,
        "network": network,
        "accounts": [
            {
                **account_info(s.info),
                "balances": {k: num(v) for k, v in s.balances.items()},
                "loss_cap": num(s.loss_cap) if s.loss_cap else None,
                "equity": num(s.margin.equity),
                "initial": num(s.margin.initial),
                "maintenance": num(s.margin.maintenance),
                "isolated_initial": num(s.margin.isolated),
                "notional": num(s.margin.notional),
                "free": num(s.margin.free),
                "health": num(s.margin.health),
            }
            for s in items
        ],
    }


def portfolio(pf: Portfolio, shocks: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """`perpdex portfolio --json`: positions, margin, scenarios and the savings."""
    worst = pf.binding_scenario
    held = [p.symbol for p in pf.positions]
    return {
        "account": account_info(pf.info),
        "block_number": pf.block_number,
        "positions": [
            {
                "market": p.market,
                "symbol": p.symbol,
                "side": p.side,
                "size": num(p.size),
                "entry_price": num(p.entry_price),
                "mark_price": num(p.mark_price),
                "notional": num(p.notional),
                "unrealized_pnl": num(p.unrealized_pnl),
                "funding_pnl": num(p.funding_pnl),
                "isolated_initial": num(p.isolated_initial),
                "liquidation_price": num(p.liquidation_price),
                "liquidation_distance": num(p.liquidation_distance),
            }
            for p in pf.positions
        ],
        "margin": {
            "mode": "portfolio" if pf.portfolio_mode else "isolated",
            "collateral": num(pf.collateral_value),
            "unrealized_pnl": num(pf.unrealized_pnl),
            "funding_pnl": num(-pf.funding_owed),
            "equity": num(pf.equity),
            "initial": num(pf.initial),
            "maintenance": num(pf.maintenance),
            "free": num(pf.free),
            "health": num(pf.health),
        },
        "scenarios": [
            {
                "index": s.index,
                "name": s.name,
                "shocks_bp": {sym: shocks[sym][s.index] for sym in held if sym in shocks},
                "loss": num(s.loss),
                "binding": s.binding,
            }
            for s in pf.scenarios
        ],
        "requirement": {
            "isolated": num(pf.isolated_initial),
            "worst_scenario": worst.name if worst else None,
            "worst_loss": num(pf.worst_loss),
            "floor": num(pf.floor),
            "addon": num(pf.addon),
            "portfolio": num(pf.portfolio_initial),
            "binds": pf.binds,
            "margin_saved": num(pf.margin_saved),
        },
    }


def lp_status(st: LpStatus, symbol: str) -> dict[str, Any]:
    """`perpdex lp status --json`."""
    return {
        "owner": st.owner,
        "token": symbol,
        "shares": num(st.shares),
        "share_price": num(st.share_price),
        "assets": num(st.assets),
        "redeemable": num(st.redeemable),
        "withdraw_fee": num(st.withdraw_fee),
        "pool": {
            "total_shares": num(st.total_shares),
            "total_assets": num(st.total_assets),
            "equity": num(st.pool_equity),
            "cash": num(st.pool_cash),
            "exit_room": num(st.exit_room),
            "insurance": num(st.insurance),
            "protocol_fees": num(st.protocol_fees),
        },
        "markets": [
            {
                "market": m.market,
                "symbol": m.symbol,
                "long_oi": num(m.long_oi),
                "short_oi": num(m.short_oi),
                "vault_side": m.vault_side,
                "mark_price": num(m.mark_price),
                "funding_rate_per_day": num(m.funding_rate),
                "exposure": num(m.exposure),
                "cap": num(m.cap),
                "utilisation": num(m.utilisation),
            }
            for m in st.markets
        ],
    }


# --- multi-strategy views (perpdex/cli/portfolio_all.py) ---------------------------------------


def stress(rows: list[tuple[AccountInfo, StressResult]]) -> dict[str, Any] | None:
    """`--shock`: the shocked prices, then each account before and after, and the total."""
    if not rows:
        return None
    out = [
        {
            "account": account_info(info),
            "block_number": r.block_number,
            "equity_before": num(r.equity_before),
            "initial_before": num(r.initial_before),
            "maintenance_before": num(r.maintenance_before),
            "health_before": num(r.health_before),
            "equity_after": num(r.equity_after),
            "initial_after": num(r.initial_after),
            "maintenance_after": num(r.maintenance_after),
            "health_after": num(r.health_after),
            "equity_change": num(r.equity_change),
            "liquidatable": r.liquidatable,
            "positions": [
                {
                    "market": leg.market,
                    "symbol": leg.symbol,
                    "size": num(leg.size),
                    "price_before": num(leg.price_before),
                    "price_after": num(leg.price_after),
                    "value_change": num(leg.pnl_change),
                }
                for leg in r.legs
            ],
        }
        for info, r in rows
    ]
    before = sum((r.equity_before for _, r in rows), Decimal(0))
    after = sum((r.equity_after for _, r in rows), Decimal(0))
    maint = sum((r.maintenance_after for _, r in rows), Decimal(0))
    return {
        "prices": [
            {
                "market": p.market,
                "symbol": p.symbol,
                "move": num(p.move),
                "base_price": num(p.base),
                "base_source": p.source,
                "shocked_price": num(p.shocked),
            }
            for p in rows[0][1].prices
        ],
        "accounts": out,
        "total": {
            "equity_before": num(before),
            "equity_after": num(after),
            "maintenance_after": num(maint),
            "health_after": num(after / maint) if maint else None,
            "liquidatable": [f"{info.id:#x}" for info, r in rows if r.liquidatable],
        },
    }


def correlation(c: PnlCorrelation) -> dict[str, Any]:
    return {
        "accounts": [f"{a:#x}" for a in c.accounts],
        "blocks": list(c.blocks),
        "points": c.points,
        "enough_history": c.enough,
        "matrix": None if c.matrix is None else [[num(r) for r in row] for row in c.matrix],
    }


def strategies(
    book: StrategyBook, network: str, shocked: list[tuple[AccountInfo, StressResult]] | None
) -> dict[str, Any]:
    """`perpdex portfolio --all --json`."""

    def pnl_fields(x: Any) -> dict[str, Any]:
        return {
            "realized": num(x.realized_pnl),
            "unrealized": num(x.unrealized_pnl),
            "funding": num(x.funding),
            "fees": num(x.fees),
            "total": num(x.total_pnl),
        }

    return {
        "owner": book.owner,
        "network": network,
        "block_number": book.block_number,
        "from_block": book.from_block,
        "accounts": [
            {
                **account_info(line.info),
                "equity": num(line.equity),
                "margin_used": num(line.margin_used),
                "maintenance": num(line.maintenance),
                "free": num(line.free),
                "health": num(line.health),
                "pnl": pnl_fields(line),
            }
            for line in book.lines
        ],
        "totals": {
            "equity": num(book.equity),
            "margin_used": num(book.margin_used),
            "maintenance": num(book.maintenance),
            "free": num(book.free),
            "health": num(book.health),
            "pnl": pnl_fields(book),
        },
        "correlation": correlation(book.correlation),
        "shock": stress(shocked) if shocked is not None else None,
    }


def histories(network: str, items: list[AccountHistory]) -> dict[str, Any]:
    """`perpdex history --json`: each account's events, totals and cumulative P&L."""
    return {
        "network": network,
        "accounts": [
            {
                "account": account_info(h.info),
                "from_block": h.from_block,
                "to_block": h.to_block,
                "events": [
                    {
                        "block_number": e.block_number,
                        "log_index": e.log_index,
                        "tx_hash": e.tx_hash,
                        "kind": e.kind,
                        "market": e.market,
                        "symbol": e.symbol,
                        "size_delta": num(e.size_delta),
                        "price": num(e.price),
                        "size_after": num(e.size_after),
                        "realized_pnl": num(e.realized_pnl),
                        "funding": num(e.funding),
                        "fee": num(e.fee),
                        "other": num(e.other),
                        "token": e.token,
                        "amount": num(e.amount) if e.token is not None else None,
                        "counterparty": None if e.counterparty is None else f"{e.counterparty:#x}",
                        "pnl": num(e.pnl),
                    }
                    for e in h.events
                ],
                "totals": {
                    "realized_pnl": num(h.realized_pnl),
                    "funding_settled": num(h.funding_settled),
                    "fees": num(h.fees),
                    "other": num(h.other),
                    "settled_pnl": num(h.cash_pnl),
                    "unrealized_pnl": num(h.unrealized_pnl),
                    "funding_accrued": num(h.funding_accrued),
                    "total_pnl": num(h.total_pnl),
                    "net_flows": {k: num(v) for k, v in h.flows.items()},
                },
                "series": [
                    {"block_number": p.block_number, "pnl": num(p.pnl), "label": p.label}
                    for p in h.series
                ],
            }
            for h in items
        ],
    }
