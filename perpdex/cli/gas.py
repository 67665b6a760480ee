"""`perpdex gas`: what each operation costs on an OP-stack chain and on Arbitrum.

    perpdex gas [--rpc URL] [--l1-base-fee GWEI] [--blob-base-fee GWEI] [--l2-gas-price GWEI]
                [--arb-l1-price GWEI] [--eth-usd USD] [--per-day N [--rebalance-op OP]]

The figures come from perpdex/sdk/feemodel.py (measured gas from docs/gas.json; the L1
data fee of each operation's real signed transaction under Ecotone, Fjord and Arbitrum,
perpdex/sdk/l1fee.py). Needs no chain unless --rpc asks to read the prices from one.
Mounted lazily by main.py (`RootGroup.lazy`).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Annotated

import typer

from perpdex.cli import console
from perpdex.cli.portfolio import new_table

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


def _gwei(value: float) -> int:
    return int(Decimal(str(value)) * 10**9)


def _usd(x: Decimal) -> str:
    return f"${x:,.4f}" if x < 1 else f"${x:,.2f}"


@app.command("gas")
def gas(
    rpc: Annotated[
        str | None,
        typer.Option(
            "--rpc",
            metavar="URL",
            help="Read the prices from this L2 node (GasPriceOracle on OP stack, ArbGasInfo "
            "on Arbitrum); options given explicitly still win.",
        ),
    ] = None,
    l1_base_fee: Annotated[
        float | None, typer.Option("--l1-base-fee", metavar="GWEI", help="L1 base fee (10).")
    ] = None,
    blob_base_fee: Annotated[
        float | None, typer.Option("--blob-base-fee", metavar="GWEI", help="L1 blob fee (1).")
    ] = None,
    base_fee_scalar: Annotated[
        int | None,
        typer.Option("--base-fee-scalar", min=0, help="OP stack baseFeeScalar (1368)."),
    ] = None,
    blob_base_fee_scalar: Annotated[
        int | None,
        typer.Option("--blob-base-fee-scalar", min=0, help="OP stack blobBaseFeeScalar (810949)."),
    ] = None,
    l2_gas_price: Annotated[
        float | None,
        typer.Option("--l2-gas-price", metavar="GWEI", help="L2 gas price on both (0.01)."),
    ] = None,
    arb_l1_price: Annotated[
        float | None,
        typer.Option(
            "--arb-l1-price",
            metavar="GWEI",
            help="Arbitrum L1 price per unit (default: the OP-stack price of a byte / 16).",
        ),
    ] = None,
    brotli_level: Annotated[
        int, typer.Option("--brotli-level", min=0, max=11, help="Arbitrum's level (ArbOS 20+: 1).")
    ] = 1,
    eth_usd: Annotated[float, typer.Option("--eth-usd", min=0.0, help="ETH price in USD.")] = 3000,
    per_day: Annotated[
        int | None,
        typer.Option("--per-day", min=0, metavar="N", help="Cost of N rebalancing trades a day."),
    ] = None,
    rebalance_op: Annotated[
        str, typer.Option("--rebalance-op", metavar="OP", help="The operation --per-day repeats.")
    ] = "increase",
) -> None:
    """Fee per operation on an OP-stack chain (Ecotone, Fjord) and on Arbitrum: measured L2
    gas, calldata and signed-transaction bytes, their compressed sizes, the L1 data fee and
    the total, at gas prices you pass or read from the chain (--rpc); with --per-day N, a
    day of a strategy's rebalancing."""
    from perpdex.sdk import feemodel as fm
    from perpdex.sdk import l1fee

    op_for_day = fm.operation(rebalance_op) if per_day is not None else None
    prices = replace(fm.DEFAULTS, brotli_level=brotli_level, eth_usd=Decimal(str(eth_usd)))
    if rpc is not None:
        prices, _ = fm.read_prices(rpc, prices)
    o = prices.op
    prices = replace(
        prices,
        op=l1fee.OpPrices(
            _gwei(l1_base_fee) if l1_base_fee is not None else o.l1_base_fee,
            _gwei(blob_base_fee) if blob_base_fee is not None else o.blob_base_fee,
            base_fee_scalar if base_fee_scalar is not None else o.base_fee_scalar,
            blob_base_fee_scalar if blob_base_fee_scalar is not None else o.blob_base_fee_scalar,
        ),
    )
    if l2_gas_price is not None:
        prices = replace(
            prices, op_l2_gas_price=_gwei(l2_gas_price), arb_l2_gas_price=_gwei(l2_gas_price)
        )
    if arb_l1_price is not None:
        prices = replace(prices, arb_l1_price_per_unit=_gwei(arb_l1_price))
    elif not prices.source.endswith("(Arbitrum)"):
        # like for like: the OP-stack price of a compressed byte, per unit (1/16 byte)
        prices = replace(prices, arb_l1_price_per_unit=fm.arb_price_like_op(prices.op))
    rows = fm.costs(prices)

    t = new_table("fee per operation (USD)")
    t.add_column("operation", no_wrap=True)
    for c in ("L2 gas", "bytes: calldata / tx / FastLZ / brotli"):
        t.add_column(c, justify="right", no_wrap=True)
    for c in ("OP exec", "Ecotone L1", "Fjord L1", "OP total", "Arb exec", "Arb L1", "Arb total"):
        t.add_column(c, justify="right", no_wrap=True)
    usd = prices.usd
    for r in rows:
        t.add_row(
            r.op.name,
            f"{r.l2_gas:,}",
            f"{r.calldata_bytes} / {len(r.op_tx)} / {r.fastlz_bytes} / {r.brotli_bytes}",
            _usd(usd(r.op_l2_fee)),
            _usd(usd(r.ecotone_fee)),
            _usd(usd(r.fjord_fee)),
            f"[bold]{_usd(usd(r.op_total))}[/]",
            _usd(usd(r.arb_l2_fee)),
            _usd(usd(r.arb_l1_fee)),
            f"[bold]{_usd(usd(r.arb_total))}[/]",
        )
    out = console()
    out.print(t)
    if op_for_day is not None and per_day is not None:
        one = next(r for r in rows if r.op.name == op_for_day.name)
        d = new_table(f"a day of rebalancing: {per_day} x {op_for_day.name}")
        for col in ("chain", "per trade", "per day", "per 30 days"):
            d.add_column(col, justify="right" if col != "chain" else "left", no_wrap=True)
        for name, each in (("OP stack (Fjord)", one.op_total), ("Arbitrum", one.arb_total)):
            d.add_row(
                name,
                _usd(usd(each)),
                _usd(usd(each * per_day)),
                _usd(usd(each * per_day * 30)),
            )
        out.print(d)
    out.print(
        f"prices: {prices.source}; L1 base fee {o_gwei(prices.op.l1_base_fee)} gwei, blob base "
        f"fee {o_gwei(prices.op.blob_base_fee)} gwei, scalars {prices.op.base_fee_scalar} / "
        f"{prices.op.blob_base_fee_scalar}, L2 gas {o_gwei(prices.op_l2_gas_price)} gwei (OP) / "
        f"{o_gwei(prices.arb_l2_gas_price)} gwei (Arbitrum), Arbitrum L1 price per unit "
        f"{o_gwei(prices.arb_l1_price_per_unit)} gwei, brotli level {prices.brotli_level}, "
        f"ETH ${prices.eth_usd:,.0f}. L2 gas measured by `make bench` (docs/gas.json); each fee "
        "prices the operation's signed type-2 transaction (assumptions: docs/gas.md).",
        soft_wrap=True,
    )


def o_gwei(wei: int) -> str:
    """`10`, `0.01`, `1.0298`: gwei without trailing zeros."""
    text = f"{Decimal(wei) / 10**9:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
