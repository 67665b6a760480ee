"""Multi-leg orders (`ClearinghouseRisk.trade_multi`, issue 12 item 5): several markets of
one sub-account traded against the vault in one transaction, margin-checked once on the
final book.

* a hedged book (long BTC, short ETH, long SOL) opens in one order with exactly the
  collateral its final requirement needs, which the worst leg order refuses leg by leg;
* every bad input reverts with its reason (and the SDK's mirror predicts it);
* the fills equal the SDK's quote (`quote_multi`, the mirror over the pending block) to
  the wei, and so does the margin after the order;
* a reduce-only rebalance passes below initial margin when the whole order lowers the
  requirement, though its first leg alone would raise it;
* docs/worked-example.md's collateral figures (the README book leg by leg and in one
  order) are the mirror's, and the chain accepts the one-order figure to the cent;
* the CLI's `perpdex trade BTC 1 ETH -30 ...` sends one multi-leg order (`--json`).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import ape
import pytest
from liquidation_helpers import funded_world
from typer.testing import CliRunner

from perpdex.cli.jsonout import num
from perpdex.cli.main import app
from perpdex.config import ROOT
from perpdex.errors import PerpdexError, TransactionRejected
from perpdex.sdk import gas
from perpdex.sdk import math as pm
from perpdex.sdk.client import Deployment, PerpdexClient
from perpdex.sdk.snapshot import Snapshot
from perpdex.showcase import worked_example as we
from perpdex.units import WAD, from_wad, to_wad

USDC = 10**6
SCALE = 10**12  # USD WAD per USDC unit
POOL_USD = 3_000_000
MAX = 2**256 - 1
BTC, ETH, SOL = 0, 1, 2
#: A hedged book: the ETH short offsets the BTC and SOL longs. Its worst leg orders (ETH
#: and SOL, then BTC) pass through a book (short ETH, long SOL) that needs about 40% more
#: than the final one.
HEDGED = {"BTC": "3", "ETH": "-100", "SOL": "1600"}


@pytest.fixture
def pool(protocol: Any, admin: Any) -> Any:
    """The admin as the vault's LP: POOL_USD of cash, room under the exposure caps."""
    units = POOL_USD * USDC
    protocol.token.mint(admin, units, sender=admin)
    protocol.token.approve(protocol.vault, units, sender=admin)
    protocol.vault.deposit(units, admin, sender=admin)
    return protocol.vault


@pytest.fixture
def client(protocol: Any, trader: Any, pool: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


def deposit(client: PerpdexClient, protocol: Any, trader: Any, acct: int, units: int) -> None:
    protocol.token.mint(trader, units, sender=trader)
    client.deposit(acct, Decimal(units).scaleb(-6))


def units_for(usd_wad: int) -> int:
    """USDC units covering `usd_wad` (rounded up)."""
    return -(-usd_wad // SCALE)


def legs_of(book: dict[str, Any]) -> list[tuple[int, int]]:
    symbols = ["BTC", "ETH", "SOL"]
    return [(symbols.index(s), to_wad(Decimal(str(v)))) for s, v in book.items()]


def collateral(client: PerpdexClient, acct: int, book: dict[str, Any]) -> we.LegOrderCollateral:
    snap = Snapshot.load(client, acct, "pending")
    return we.leg_order_collateral(snap, legs_of(book), client.deployment.markets)


def positions(protocol: Any, acct: int) -> dict[str, Decimal]:
    ch = protocol.clearinghouse
    out = {s: from_wad(int(ch.position(acct, m)[0])) for m, s in enumerate(protocol.symbols)}
    return {s: v for s, v in out.items() if v}


def set_price(protocol: Any, symbol: str, usd: Decimal, who: Any) -> None:
    for feed in protocol.feeds[symbol]:
        feed.set_answer(int(usd * 10**8), sender=who)


def repost(protocol: Any, who: Any) -> None:
    """Every feed posts its last answer again (fresh after time passed)."""
    for feeds in protocol.feeds.values():
        for feed in feeds:
            feed.set_answer(int(feed.latestRoundData()[1]), sender=who)


def raw_legs(*legs: tuple[int, int]) -> list[tuple[int, int, int]]:
    """(market, size, bound) with the loosest bound for the side."""
    return [(m, d, MAX if d > 0 else 0) for m, d in legs]


# --- a hedged book in one order ---------------------------------------------------------


def test_hedged_book__one_order_needs_the_final_requirement__worst_leg_order_refused(
    client, protocol, trader, chain
):
    acct = client.open_account("hedged", portfolio=True)
    c = collateral(client, acct, HEDGED)
    order, worst = c.worst
    assert set(order[:2]) == {"ETH", "SOL"}  # the (short ETH, long SOL) book on the way
    assert c.extra(worst) > Decimal("0.35")
    assert c.best[1] >= c.one_order  # leg by leg never needs less
    deposit(client, protocol, trader, acct, units_for(c.one_order))
    before = chain.snapshot()
    with pytest.raises(TransactionRejected) as refused:
        for sym in order:
            client.trade(acct, sym, HEDGED[sym])
    assert refused.value.reason == "clearinghouse: below initial margin"
    chain.restore(before)
    before = chain.snapshot()
    multi = client.trade_multi(acct, HEDGED)
    assert positions(protocol, acct) == {s: Decimal(v) for s, v in HEDGED.items()}
    assert [leg.symbol for leg in multi.legs] == list(HEDGED)
    m = protocol.clearinghouse.account_margin(acct)
    assert 0 <= m.equity - m.initial < SCALE  # exactly the final requirement
    # a cent less and the one order is refused too: the final check is the binding one
    chain.restore(before)
    protocol.ops.withdraw(acct, protocol.token, 10**4, trader, sender=trader)
    with pytest.raises(TransactionRejected, match="below initial margin"):
        client.trade_multi(acct, HEDGED)
    # ... as the SDK's quote says before anything is sent
    assert client.quote_multi(acct, HEDGED).refusal == "clearinghouse: below initial margin"


def test_hedged_book__worst_leg_order_passes_with_what_the_mirror_says_it_needs(
    client, protocol, trader
):
    acct = client.open_account("leg by leg", portfolio=True)
    c = collateral(client, acct, HEDGED)
    order, worst = c.worst
    deposit(client, protocol, trader, acct, units_for(worst))
    for sym in order:
        client.trade(acct, sym, HEDGED[sym])
    assert positions(protocol, acct) == {s: Decimal(v) for s, v in HEDGED.items()}


# --- bad input: every refusal with its reason --------------------------------------------


@pytest.fixture
def funded(client: PerpdexClient, protocol: Any, trader: Any) -> int:
    acct = client.open_account("multi", portfolio=True)
    deposit(client, protocol, trader, acct, 100_000 * USDC)
    return acct


BAD_LEGS = [
    pytest.param([], "clearinghouse: no legs", id="no legs"),
    pytest.param(
        raw_legs(*[(BTC, WAD)] * 9), "clearinghouse: too many legs", id="nine legs (max 8)"
    ),
    pytest.param(
        raw_legs((BTC, WAD), (ETH, WAD), (BTC, -WAD)),
        "clearinghouse: market twice",
        id="market twice",
    ),
    pytest.param(raw_legs((BTC, WAD), (ETH, 0)), "clearinghouse: zero size", id="zero size"),
    pytest.param(
        raw_legs((BTC, WAD), (7, WAD)), "clearinghouse: unknown market", id="unknown market"
    ),
    pytest.param(
        [(BTC, WAD, MAX), (ETH, -10 * WAD, 10**30)],
        "clearinghouse: price worse than acceptable",
        id="one leg's price bound",
    ),
    pytest.param(
        raw_legs((BTC, WAD), (SOL, WAD // 2)),
        "clearinghouse: min position size",
        id="min position size",
    ),
    pytest.param(
        raw_legs((BTC, 10 * WAD), (ETH, -WAD)),
        "clearinghouse: below initial margin",
        id="beyond margin",
    ),
]


@pytest.mark.parametrize(("legs", "reason"), BAD_LEGS)
def test_trade_multi__bad_legs__revert_and_the_mirror_agrees(
    client, protocol, trader, funded, legs, reason
):
    with ape.reverts(reason):
        protocol.risk.trade_multi(funded, legs, sender=trader)
    assert positions(protocol, funded) == {}  # nothing filled, the first legs neither
    snap = Snapshot.load(client, funded, "pending")
    with pytest.raises(pm.Revert, match=reason):
        pm.simulate_multi(snap, [(m, d, b) for m, d, b in legs])


def test_trade_multi__unauthorized_caller__reverts(protocol, funded, stranger):
    with ape.reverts("clearinghouse: not authorized"):
        protocol.risk.trade_multi(funded, raw_legs((BTC, WAD)), sender=stranger)


def test_trade_multi__operator__may_trade(client, protocol, funded, keeper):
    client.set_operator(funded, keeper, True)
    protocol.risk.trade_multi(funded, raw_legs((BTC, WAD), (ETH, -WAD)), sender=keeper)
    assert positions(protocol, funded) == {"BTC": 1, "ETH": -1}


def test_trade_multi__unknown_account__reverts(protocol, trader):
    with ape.reverts("clearinghouse: unknown account"):
        protocol.risk.trade_multi(12345, raw_legs((BTC, WAD)), sender=trader)


def test_trade_multi__account_in_liquidation__reverts(
    actors, protocol, chain, admin, lp, trader, keeper
):
    liq = funded_world(protocol, chain, admin, lp, 1_000)
    keeper_acct = liq.account(keeper, 200_000, name="keeper")
    victim = liq.btc_long(trader, 12_000)
    liq.hold({"BTC": liq.price_for_health(victim.account, Decimal("0.9"))})
    liq.auction.start(victim.account, keeper_acct, sender=keeper)
    with ape.reverts("clearinghouse: account in liquidation"):
        protocol.risk.trade_multi(victim.account, raw_legs((BTC, -WAD // 2)), sender=trader)


def test_engine_pool_trade__deferred_mode__refused_to_outsiders(protocol, funded, trader):
    # the mode that skips the margin check is reachable only from the Clearinghouse itself
    with ape.reverts("clearinghouse: internal entry point"):
        protocol.clearinghouse.engine_pool_trade(funded, BTC, 50 * WAD, MAX, 2, sender=trader)


def test_sdk__bad_orders__refused_before_the_chain(client, funded):
    with pytest.raises(PerpdexError, match="other than zero"):
        client.quote_multi(funded, {"BTC": "1", "ETH": "0"})
    with pytest.raises(PerpdexError, match="not a listed market"):
        client.trade_multi(funded, {"BTC": "1", "DOGE": "5"})
    with pytest.raises(TransactionRejected, match="market twice") as twice:
        client.quote_multi(funded, [("BTC", "1"), ("btc", "2")])
    assert "add the sizes of that market up" in twice.value.hint
    q = client.quote_multi(funded, {"BTC": "1"})
    with pytest.raises(PerpdexError, match="quote this order first"):
        client.trade_multi(funded, {"BTC": "2"}, quote=q)


# --- fills equal the SDK's quote to the wei ------------------------------------------------


def test_trade_multi__fills_equal_the_quote_to_the_wei(client, protocol, trader, chain, funded):
    ch = protocol.clearinghouse
    client.trade_multi(funded, {"BTC": "0.5", "ETH": "-20", "SOL": "300"})
    chain.pending_timestamp += 1_800  # funding accrues on the open positions
    repost(protocol, trader)
    set_price(protocol, "ETH", Decimal(3_030), trader)
    chain.pending_timestamp = chain.pending_timestamp + 1  # the block the order will be in
    # grow BTC, flip ETH, reduce SOL: realised PnL and funding on two legs
    order = {"ETH": "35", "BTC": "0.25", "SOL": "-100"}
    q = client.quote_multi(funded, order)
    assert q.accepted
    fill = client.trade_multi(funded, order, quote=q)
    assert fill.block_number is not None
    events = [
        f
        for f in ch.Fill.range(fill.block_number, fill.block_number + 1)
        if int(f.account) == funded
    ]
    assert [int(e.market) for e in events] == [ETH, BTC, SOL]  # one Fill per leg, in order
    for e, leg in zip(events, q.legs, strict=True):
        v = leg.view
        assert (int(e.price), int(e.fee), int(e.realized_pnl), int(e.funding_paid)) == (
            v.fill_price,
            v.fee,
            v.realized_pnl,
            v.funding_paid,
        )
        assert int(e.size) == v.size_after
    assert [leg.price for leg in fill.legs] == [leg.fill_price for leg in q.legs]
    assert fill.legs[0].realized_pnl != 0  # the ETH short closed at a loss, then flipped
    m = ch.account_margin(funded)
    assert (m.equity, m.initial, m.maintenance) == (
        q.margin_after.equity,
        q.margin_after.initial,
        q.margin_after.maintenance,
    )
    # the bound of each leg is its quoted fill moved 0.5% against it
    for leg, lq in zip(fill.legs, q.legs, strict=True):
        assert leg.acceptable_price == from_wad(lq.acceptable_price("0.005"))


def test_trade_multi__slippage_and_explicit_prices(client, protocol, trader, funded):
    q = client.quote_multi(funded, {"BTC": "1", "ETH": "-10"})
    fill = client.trade_multi(funded, {"BTC": "1", "ETH": "-10"}, slippage="0.02", quote=q)
    assert [leg.acceptable_price for leg in fill.legs] == [
        from_wad(lq.acceptable_price("0.02")) for lq in q.legs
    ]
    # an explicit bound the fill is already past refuses the whole order
    with pytest.raises(TransactionRejected, match="price worse than acceptable"):
        client.trade_multi(
            funded, {"BTC": "1", "SOL": "100"}, acceptable_prices={"SOL": Decimal("100")}
        )
    assert positions(protocol, funded) == {"BTC": 1, "ETH": -10}


# --- a reduce-only rebalance ----------------------------------------------------------------


def test_reduce_only_rebalance__below_initial_margin(client, protocol, trader, chain):
    """The hedged book below initial margin (ETH up 2% against the short): scaling every
    leg down 5% lowers the requirement and passes in one order, still below initial
    margin, though its first leg alone (the ETH short, the hedge: the crash scenario
    loses more without it) would raise the requirement and is refused; reducing only the
    hedges raises it and is refused."""
    ch = protocol.clearinghouse
    acct = client.open_account("rebalance", portfolio=True)
    c = collateral(client, acct, HEDGED)
    deposit(client, protocol, trader, acct, units_for(c.one_order) + 2_000 * USDC)
    client.trade_multi(acct, HEDGED)
    set_price(protocol, "ETH", Decimal(3_060), trader)
    client.refresh()
    before = ch.account_margin(acct)
    assert 0 < before.equity < before.initial  # below initial, not liquidatable
    down = {"ETH": "5", "BTC": "-0.15", "SOL": "-80"}  # every leg reduces, ETH first
    hedges = {"ETH": "20", "SOL": "-1"}
    with pytest.raises(TransactionRejected, match="below initial margin"):
        client.trade(acct, "ETH", "5")  # the hedge first, alone: refused
    assert client.quote_multi(acct, hedges).refusal == "clearinghouse: below initial margin"
    with pytest.raises(TransactionRejected, match="below initial margin"):
        client.trade_multi(acct, hedges)
    q = client.quote_multi(acct, down)
    assert q.accepted
    client.trade_multi(acct, down, quote=q)
    after = ch.account_margin(acct)
    assert after.initial < before.initial
    assert after.equity < after.initial  # still below initial: the reduce rule let it pass
    assert positions(protocol, acct) == {"BTC": Decimal("2.85"), "ETH": -95, "SOL": 1520}


# --- the worked example's figures -------------------------------------------------------------


def test_worked_example_figures__readme_book_leg_by_leg_and_in_one_order(client, protocol, trader):
    """docs/worked-example.md's collateral table is the mirror's (regenerate it with
    `we.leg_order_markdown`, printed here); the chain accepts the README book in one
    order with the one-order figure."""
    doc = (Path(ROOT) / "docs" / "worked-example.md").read_text()
    readme_book = we.net_positions()
    hedged_book = {s: Decimal(v) for s, v in HEDGED.items()}
    acct = client.open_account("readme book", portfolio=True)
    readme = collateral(client, acct, readme_book)
    hedged = collateral(client, acct, hedged_book)
    table = we.leg_order_markdown(
        [("this example", readme_book, readme), ("hedged", hedged_book, hedged)]
    )
    print(table)
    assert table in doc, "docs/worked-example.md's leg-order table is stale"
    # every leg order ends at the same book: leg by leg never needs less than one order
    for c in (readme, hedged):
        assert min(need for _, need in c.by_order) >= c.one_order
    deposit(client, protocol, trader, acct, units_for(readme.one_order))
    client.trade_multi(acct, readme_book)
    m = protocol.clearinghouse.account_margin(acct)
    assert 0 <= m.equity - m.initial < SCALE


# --- gas headroom ----------------------------------------------------------------------------


def test_padded_gas__one_oracle_read_per_leg():
    assert gas.padded_gas(100_000, 3) == gas.padded_gas(100_000) + 2 * gas.ORACLE_PATH_GAS
    assert gas.padded_gas(100_000, 0) == gas.padded_gas(100_000)


def test_estimate__taken_on_marks_refreshed_in_its_block__padding_covers_every_leg(
    client, protocol, trader, keeper, chain, funded
):
    """Estimated right after a keeper's refresh, every leg reuses its mark and skips the
    oracle; the order lands a block later and reads all three. The SDK's padding
    (one oracle read per leg) covers it."""
    client.trade_multi(funded, {"BTC": "0.5", "ETH": "-10", "SOL": "100"})
    legs = raw_legs((BTC, WAD // 10), (ETH, -WAD), (SOL, 10 * WAD))
    protocol.ops.refresh([BTC, ETH, SOL], sender=keeper)
    est = int(protocol.risk.trade_multi.estimate_gas_cost(funded, legs, sender=trader))
    chain.mine(1, deltatime=2)
    limit = gas.padded_gas(est, len(legs))
    r = protocol.risk.trade_multi(
        funded, legs, sender=trader, gas_limit=limit, raise_on_revert=False
    )
    print(f"estimate {est:,}; limit {limit:,}; used {r.gas_used:,}")
    assert not r.failed


# --- the standalone client (no ape) ------------------------------------------------------------


def test_lite_trade_client__multi_leg_order_equals_its_quote(
    client, protocol, trader, chain, funded
):
    from perpdex.sdk.lite import TradeClient

    lite = TradeClient(
        str(chain.provider.uri), Deployment.from_protocol(protocol), trader.private_key
    )
    order = {"SOL": "-300", "BTC": "0.2"}
    q = lite.quote_multi(funded, order)
    assert q == client.quote_multi(funded, order)  # the same mirror over the same block
    fill = lite.trade_multi(funded, order, quote=q)
    assert [leg.price for leg in fill.legs] == [leg.fill_price for leg in q.legs]
    assert positions(protocol, funded) == {"BTC": Decimal("0.2"), "SOL": -300}


# --- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(protocol: Any, networks: Any, tmp_path: Path) -> Any:
    manifest = Deployment.from_protocol(protocol).write(tmp_path / "local.json")
    choice = str(networks.provider.network_choice)

    def invoke(*args: str) -> Any:
        options = ["--network", choice, "--deployment", str(manifest), "--account", "test:1"]
        return CliRunner().invoke(app, [*options, *args], env={"COLUMNS": "220"})

    return invoke


def test_cli_trade__several_pairs__one_multi_leg_order(cli, protocol, chain, funded):
    import json

    result = cli("trade", "BTC", "+1", "ETH", "-30", "--sub", "0", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [leg["symbol"] for leg in out["legs"]] == ["BTC", "ETH"]
    assert [leg["size_delta"] for leg in out["legs"]] == ["1", "-30"]
    assert all(leg["fill_price"] == leg["quoted_fill_price"] for leg in out["legs"])
    tx = chain.provider.get_receipt(out["tx_hash"])
    assert len([f for f in tx.decode_logs(protocol.clearinghouse.Fill)]) == 2  # one tx
    assert positions(protocol, funded) == {"BTC": 1, "ETH": -30}
    m = protocol.clearinghouse.account_margin(funded)
    assert out["margin_after"]["equity"] == num(from_wad(int(m.equity)))


def test_cli_trade__tables_and_refusals(cli, protocol, funded):
    result = cli("trade", "BTC", "0.5", "SOL", "-200", "ETH", "10")
    assert result.exit_code == 0, result.output
    print(result.output)
    assert "multi-leg order, 3 legs, one margin check" in result.output
    assert result.output.count("✓") == 3
    assert "3 fills in one transaction, one margin check; tx 0x" in result.output
    assert positions(protocol, funded) == {"BTC": Decimal("0.5"), "ETH": 10, "SOL": -200}
    for args, message in (
        (("BTC", "1", "ETH"), "has no size"),
        (("BTC", "1", "btc", "2"), "given twice"),
        (("BTC", "1", "ETH", "2", "--limit", "100000"), "one price"),
    ):
        result = cli("trade", *args)
        assert result.exit_code != 0 and message in result.output, result.output
    # one pair keeps today's single market order
    result = cli("trade", "SOL", "100", "--json")
    assert result.exit_code == 0, result.output
    assert protocol.clearinghouse.position(funded, SOL)[0] == -100 * WAD
