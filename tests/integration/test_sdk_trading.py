"""PerpdexClient trading and LP methods against the `protocol` fixture.

Every figure the client returns is checked against an independent read of the chain: the
lens called directly, the Clearinghouse's views and events, the vault's ERC-4626 views,
token balances. Quotes and trades are compared in the same block (pinned timestamp).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from perpdex.config import load_risk
from perpdex.errors import PerpdexError, TransactionRejected
from perpdex.sdk import math as pm
from perpdex.sdk.client import (
    REVERT_HINTS,
    Deployment,
    PerpdexClient,
    acceptable_price,
)
from perpdex.units import WAD, from_wad

USDC = 10**6
POOL_USD = 2_000_000


def _quote_view(q: Any) -> pm.QuoteView:
    return pm.QuoteView(
        **{f.name: int(getattr(q, f.name)) for f in dataclasses.fields(pm.QuoteView)}
    )


def _account_view(v: Any) -> pm.AccountView:
    skip = ("portfolio", "scenario_losses", "positions")
    kw = {
        f.name: int(getattr(v, f.name))
        for f in dataclasses.fields(pm.AccountView)
        if f.name not in skip
    }
    pos = [f.name for f in dataclasses.fields(pm.PositionView)]
    return pm.AccountView(
        portfolio=bool(v.portfolio),
        scenario_losses=tuple(int(x) for x in v.scenario_losses),
        positions=tuple(
            pm.PositionView(**{n: int(getattr(p, n)) for n in pos}) for p in v.positions
        ),
        **kw,
    )


def _set_price(p: Any, symbol: str, usd: Decimal | int, who: Any) -> None:
    for feed in p.feeds[symbol]:
        feed.set_answer(int(Decimal(usd) * 10**8), sender=who)


@pytest.fixture
def trading_pool(protocol: Any, admin: Any) -> Any:
    """The admin as the vault's first LP: POOL_USD of cash for market orders."""
    units = POOL_USD * USDC
    protocol.token.mint(admin, units, sender=admin)
    protocol.token.approve(protocol.vault, units, sender=admin)
    protocol.vault.deposit(units, admin, sender=admin)
    return protocol.vault


@pytest.fixture
def sdk_trader(protocol: Any, trader: Any) -> PerpdexClient:
    return PerpdexClient.from_protocol(protocol, trader)


@pytest.fixture
def trading_acct(sdk_trader: PerpdexClient, protocol: Any, trader: Any, trading_pool: Any) -> int:
    """The trader's isolated sub-account 0 holding $50,000."""
    protocol.token.mint(trader, 50_000 * USDC, sender=trader)
    acct = sdk_trader.open_account("main")
    sdk_trader.deposit(acct, 50_000)
    return acct


@pytest.fixture
def book_acct(sdk_trader: PerpdexClient, protocol: Any, trader: Any, trading_pool: Any) -> int:
    """A portfolio sub-account with three positions after the prices moved."""
    protocol.token.mint(trader, 100_000 * USDC, sender=trader)
    acct = sdk_trader.open_account("book", portfolio=True)
    sdk_trader.deposit(acct, 100_000)
    sdk_trader.trade(acct, "BTC", "1")
    sdk_trader.trade(acct, "ETH", "-20")
    sdk_trader.trade(acct, "SOL", "300")
    _set_price(protocol, "BTC", 101_000, trader)
    _set_price(protocol, "ETH", 2_990, trader)
    _set_price(protocol, "SOL", 151, trader)
    sdk_trader.refresh()
    return acct


# --- deployment --------------------------------------------------------------------------------


def test_deployment__records_vault_lens_and_auction(sdk_trader, protocol, tmp_path):
    d = sdk_trader.deployment
    assert (d.vault, d.lens, d.auction) == (
        protocol.vault.address,
        protocol.lens.address,
        protocol.auction.address,
    )
    loaded = Deployment.load(d.write(tmp_path / "local.json"))
    assert (loaded.vault, loaded.lens, loaded.auction) == (d.vault, d.lens, d.auction)


def test_deployment__without_lens__says_how_to_finish(sdk_trader, trading_acct):
    bare = PerpdexClient(dataclasses.replace(sdk_trader.deployment, lens=None), sdk_trader.signer)
    with pytest.raises(PerpdexError, match="records no lens contract; finish the deployment"):
        bare.quote(trading_acct, "BTC", "1")


# --- markets and quotes ------------------------------------------------------------------------


def test_markets__match_the_chain(sdk_trader, protocol, trading_acct):
    sdk_trader.trade(trading_acct, "ETH", "-3")
    for m in sdk_trader.markets():
        price, ts, index, rate = protocol.clearinghouse.mark(m.id)
        long_oi, short_oi = protocol.clearinghouse.open_interest(m.id)
        assert m.symbol == protocol.symbols[m.id]
        assert m.oracle_price == from_wad(protocol.oracle.latest(m.id)[0])
        assert (m.mark_price, m.mark_time, m.funding_rate) == (from_wad(price), ts, from_wad(rate))
        assert m.funding_index == Decimal(index) / 10**12
        assert (m.long_oi, m.short_oi) == (from_wad(long_oi), from_wad(short_oi))
    eth = sdk_trader.markets()[protocol.market_id("ETH")]
    assert eth.skew == Decimal(-3)


@pytest.mark.parametrize("market", ["btc", "BTC-PERP", 0, "0"])
def test_market_id__symbols_any_case_and_ids(sdk_trader, market):
    assert sdk_trader.market_id(market) == 0


def test_market_id__unknown__lists_the_markets(sdk_trader):
    with pytest.raises(
        PerpdexError, match="'XRP' is not a listed market; use one of: BTC, ETH, SOL"
    ):
        sdk_trader.market_id("XRP")


@pytest.mark.parametrize(("symbol", "size"), [("BTC", "0.5"), ("ETH", "-12.5"), ("SOL", "300")])
def test_quote__equals_the_lens(sdk_trader, protocol, book_acct, symbol, size):
    m = protocol.market_id(symbol)
    q = sdk_trader.quote(book_acct, symbol, Decimal(size))
    direct = protocol.lens.quote(book_acct, m, int(Decimal(size) * WAD))
    assert q.view == _quote_view(direct)
    assert q.fill_price == from_wad(direct.fill_price)
    assert q.equity_after == from_wad(direct.equity_after)
    assert (q.market, q.symbol, q.size) == (m, symbol, Decimal(size))


def test_quote__zero_size__refused_before_the_chain(sdk_trader, trading_acct):
    with pytest.raises(PerpdexError, match="other than zero"):
        sdk_trader.quote(trading_acct, "BTC", 0)


def test_quote__finer_than_18_decimals__refused(sdk_trader, trading_acct):
    with pytest.raises(PerpdexError, match="finer than 18 decimals"):
        sdk_trader.quote(trading_acct, "BTC", "0.0000000000000000001")


# --- trading --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "size"), [("BTC", "0.5"), ("ETH", "-8")])
def test_trade__fills_at_the_quoted_price_in_the_same_block(
    sdk_trader, protocol, chain, trading_acct, symbol, size
):
    sdk_trader.trade(trading_acct, "SOL", "100")  # another position, so funding and margin mix
    chain.pending_timestamp = chain.pending_timestamp + 1  # the block the trade will be in
    q = sdk_trader.quote(trading_acct, symbol, size, block_id="pending")
    fill = sdk_trader.trade(trading_acct, symbol, size, quote=q)
    assert fill.price == q.fill_price
    assert fill.fee == q.fee
    assert fill.size_delta == Decimal(size)
    assert fill.size_after == from_wad(
        protocol.clearinghouse.position(trading_acct, fill.market)[0]
    )
    after = protocol.clearinghouse.account_margin(trading_acct)
    assert (after.equity, after.initial, after.maintenance) == (
        q.view.equity_after,
        q.view.initial_after,
        q.view.maintenance_after,
    )
    # the bound is the quoted fill moved 0.5% against the order
    buy = Decimal(size) > 0
    assert fill.acceptable_price == from_wad(acceptable_price(q.view.fill_price, buy, "0.005"))
    assert (fill.acceptable_price > fill.price) if buy else (fill.acceptable_price < fill.price)


def test_trade__slippage_bound_refuses_a_worse_fill(sdk_trader, protocol, trader, trading_acct):
    q = sdk_trader.quote(trading_acct, "BTC", "0.5")
    _set_price(protocol, "BTC", from_wad(q.view.oracle_price) * Decimal("1.01"), trader)
    nonce = trader.nonce
    with pytest.raises(TransactionRejected) as e:
        sdk_trader.trade(trading_acct, "BTC", "0.5", quote=q, max_slippage="0.005")
    assert e.value.reason == "clearinghouse: price worse than acceptable"
    assert e.value.hint == REVERT_HINTS["clearinghouse: price worse than acceptable"]
    assert trader.nonce == nonce  # refused in the preflight: nothing signed
    assert protocol.clearinghouse.position(trading_acct, 0)[0] == 0
    # a wider bound accepts the new price
    fill = sdk_trader.trade(trading_acct, "BTC", "0.5", quote=q, max_slippage="0.02")
    assert fill.price > q.fill_price * Decimal("1.005")


def test_trade__explicit_limit_below_the_fill__refused(sdk_trader, trading_acct):
    q = sdk_trader.quote(trading_acct, "BTC", "0.5")
    with pytest.raises(TransactionRejected, match="price worse than acceptable"):
        sdk_trader.trade(trading_acct, "BTC", "0.5", acceptable_price=q.fill_price - 1)


def test_trade__quote_for_another_order__refused(sdk_trader, trading_acct):
    q = sdk_trader.quote(trading_acct, "BTC", "0.5")
    with pytest.raises(PerpdexError, match="quote this order first"):
        sdk_trader.trade(trading_acct, "BTC", "0.6", quote=q)


def test_trade__beyond_margin__hint(sdk_trader, trader, trading_acct):
    nonce = trader.nonce
    with pytest.raises(TransactionRejected) as e:
        sdk_trader.trade(trading_acct, "BTC", "7")  # $700k of BTC on $50k, inside the $800k cap
    assert e.value.reason == "clearinghouse: below initial margin"
    assert "reduce positions or deposit first" in str(e.value)
    assert trader.nonce == nonce


@pytest.mark.parametrize(
    ("fill", "buy", "slip", "bound"),
    [
        (100 * WAD, True, "0.005", 100_500_000_000_000_000_000),
        (100 * WAD, False, "0.005", 99_500_000_000_000_000_000),
        (3 * WAD + 1, True, "0.01", ((3 * WAD + 1) * 101 + 99) // 100),  # rounds up for a buy
        (3 * WAD + 1, False, "0.01", (3 * WAD + 1) * 99 // 100),  # down for a sell
        (100 * WAD, True, "0", 100 * WAD),
    ],
)
def test_acceptable_price__moves_the_fill_against_the_order(fill, buy, slip, bound):
    assert acceptable_price(fill, buy, slip) == bound


@pytest.mark.parametrize("slip", ["-0.01", "1", "nan"])
def test_acceptable_price__bad_slippage__refused(slip):
    with pytest.raises(PerpdexError, match="fraction from 0 up to 1"):
        acceptable_price(100 * WAD, True, slip)


def test_close__realises_pnl(sdk_trader, protocol, trader, trading_acct):
    ch = protocol.clearinghouse
    sdk_trader.trade(trading_acct, "BTC", "1.2")
    size, cost, _ = ch.position(trading_acct, 0)
    _set_price(protocol, "BTC", 104_000, trader)
    before = ch.balance_of(trading_acct, 0)
    fill = sdk_trader.close(trading_acct, "BTC")
    assert ch.position(trading_acct, 0)[0] == 0
    assert fill.size_delta == -from_wad(size)
    assert fill.size_after == 0
    # realised PnL = what closing the position at the fill price realises
    _, _, realized = pm.apply_fill(int(size), int(cost), -int(size), int(fill.price * WAD))
    assert fill.realized_pnl == from_wad(realized)
    assert fill.realized_pnl > 1.2 * 3_000  # the price rose 4% on $120k
    assert from_wad(ch.balance_of(trading_acct, 0) - before) == fill.cash_flow


def test_close__no_position__says_what_to_do(sdk_trader, trading_acct):
    with pytest.raises(PerpdexError, match="no ETH position to close; `perpdex portfolio`"):
        sdk_trader.close(trading_acct, "ETH")


def test_refresh__touches_every_market(sdk_trader, protocol, chain, trader, trading_pool):
    chain.pending_timestamp += 600
    for symbol in protocol.symbols:
        _set_price(
            protocol,
            symbol,
            from_wad(protocol.oracle.latest(protocol.market_id(symbol))[0]),
            trader,
        )
    receipt = sdk_trader.refresh()
    stamp = chain.blocks[receipt.block_number].timestamp
    assert [protocol.clearinghouse.mark(m)[1] for m in range(3)] == [stamp] * 3


# --- portfolio ---------------------------------------------------------------------------------


def test_portfolio__equals_the_lens(sdk_trader, protocol, book_acct):
    pf = sdk_trader.portfolio(book_acct)
    raw = protocol.lens.account_summary(book_acct)
    assert pf.view == _account_view(raw)
    assert pf.portfolio_mode
    assert (pf.equity, pf.initial, pf.maintenance) == (
        from_wad(raw.equity),
        from_wad(raw.initial),
        from_wad(raw.maintenance),
    )
    assert pf.health == from_wad(raw.health)
    assert [p.symbol for p in pf.positions] == ["BTC", "ETH", "SOL"]
    for line, p in zip(pf.positions, raw.positions, strict=True):
        assert line.size == from_wad(p.size)
        assert line.unrealized_pnl == from_wad(p.unrealized_pnl)
        assert line.funding_owed == from_wad(p.funding_owed)
        assert line.liquidation_price == (from_wad(p.liquidation_price) or None)
    # scenario names come from the on-chain book, in book order
    assert [s.name for s in pf.scenarios] == [s.name for s in load_risk().scenarios]
    assert [s.loss for s in pf.scenarios] == [from_wad(x) for x in raw.scenario_losses]
    binding = [s for s in pf.scenarios if s.binding]
    assert [s.index for s in binding] == [raw.binding_scenario]
    assert binding[0].loss == max(s.loss for s in pf.scenarios) == pf.worst_loss
    # portfolio mode: the requirement is the combined one, the saving against isolated
    assert pf.portfolio_initial == pf.initial
    assert pf.margin_saved == from_wad(raw.isolated_initial - raw.initial)
    assert pf.margin_saved > 0
    assert pf.binds in {binding[0].name, "floor", "isolated"}


def test_portfolio__isolated_account_sees_what_switching_saves(sdk_trader, protocol, book_acct):
    sdk_trader.set_margin_mode(book_acct, False)
    iso = sdk_trader.portfolio(book_acct)
    assert not iso.portfolio_mode
    assert iso.initial == iso.isolated_initial
    predicted = iso.portfolio_initial
    assert predicted < iso.initial
    sdk_trader.set_margin_mode(book_acct, True)
    assert from_wad(protocol.lens.account_summary(book_acct).initial) == predicted
    assert iso.margin_saved == iso.initial - predicted


def test_portfolio__binds_names_the_worst_scenario(sdk_trader, book_acct):
    pf = sdk_trader.portfolio(book_acct)
    worst = pf.binding_scenario
    assert worst is not None
    if pf.isolated_initial <= pf.stress_requirement:
        assert pf.binds == "isolated"
    elif pf.floor > pf.worst_loss:
        assert pf.binds == "floor"
    else:
        assert pf.binds == worst.name


def test_portfolio__unknown_account__says_open_one(sdk_trader, trader):
    with pytest.raises(PerpdexError, match="open-account"):
        sdk_trader.portfolio(sdk_trader.account_id(trader, 5))


# --- the liquidity vault --------------------------------------------------------------------------


@pytest.fixture
def sdk_lp(protocol: Any, lp: Any, trading_pool: Any) -> PerpdexClient:
    protocol.token.mint(lp, 50_000 * USDC, sender=lp)
    return PerpdexClient.from_protocol(protocol, lp)


def test_lp__deposit_and_redeem_round_trip_pays_the_fee(sdk_lp, protocol, lp, admin):
    vault, token = protocol.vault, protocol.token
    admin_worth = vault.convertToAssets(vault.balanceOf(admin))
    move = sdk_lp.lp_deposit(Decimal(10_000))
    assert move.assets == 10_000
    assert move.shares * 10**12 == vault.balanceOf(lp)
    assert token.balanceOf(lp) == 40_000 * USDC
    preview = vault.previewRedeem(vault.balanceOf(lp))
    out = sdk_lp.lp_redeem()
    assert vault.balanceOf(lp) == 0
    assert out.assets * USDC == preview == token.balanceOf(lp) - 40_000 * USDC
    fee = 10_000 * USDC * int(vault.withdraw_fee_bps()) // 10_000  # 1.05%
    assert 10_000 * USDC - fee - 1 <= preview <= 10_000 * USDC - fee
    # the fee stayed in the pool, with the LP who stayed
    assert vault.convertToAssets(vault.balanceOf(admin)) >= admin_worth + fee - 2


def test_lp__withdraw_pays_exactly_the_amount(sdk_lp, protocol, lp):
    vault, token = protocol.vault, protocol.token
    sdk_lp.lp_deposit(Decimal(10_000))
    shares = vault.balanceOf(lp)
    burn = vault.previewWithdraw(2_500 * USDC)
    move = sdk_lp.lp_withdraw(Decimal(2_500))
    assert token.balanceOf(lp) == 42_500 * USDC
    assert move.assets == 2_500
    assert move.shares * 10**12 == burn == shares - vault.balanceOf(lp)


def test_lp__redeem_more_than_held__hint(sdk_lp, lp):
    sdk_lp.lp_deposit(Decimal(100))
    held = sdk_lp.lp_status().shares
    with pytest.raises(TransactionRejected) as e:
        sdk_lp.lp_redeem(held + 1)
    assert e.value.reason == "erc20: burn amount exceeds balance"
    assert "perpdex lp status" in e.value.hint


def test_lp__redeem_without_shares__says_deposit_first(protocol, stranger, trading_pool):
    with pytest.raises(PerpdexError, match="holds no LP shares; deposit first"):
        PerpdexClient.from_protocol(protocol, stranger).lp_redeem()


def test_lp_status__equals_the_chain(sdk_lp, sdk_trader, protocol, lp, trading_acct):
    ch, vault = protocol.clearinghouse, protocol.vault
    sdk_lp.lp_deposit(Decimal(25_000))
    sdk_trader.trade(trading_acct, "BTC", "2")
    sdk_trader.trade(trading_acct, "ETH", "-10")
    st = sdk_lp.lp_status()
    assert st.owner == lp.address
    assert st.shares * 10**12 == vault.balanceOf(lp)
    assert st.assets * USDC == vault.convertToAssets(vault.balanceOf(lp))
    assert st.redeemable * USDC == vault.previewRedeem(vault.balanceOf(lp))
    assert st.total_assets * USDC == vault.totalAssets()
    assert st.pool_equity == from_wad(protocol.lens.vault_equity())
    assert st.pool_cash == from_wad(ch.pool_cash())
    assert st.insurance == from_wad(ch.insurance_fund()) > 0  # the trades paid fees
    assert st.withdraw_fee == Decimal("0.0105")
    # one whole share is worth the share price (the vault's own conversion, in units)
    assert abs(st.share_price * USDC - vault.convertToAssets(10**12)) <= 1
    btc = st.markets[0]
    # the chain's exposure rule (state._exposure_limit), by hand: max_vault_exposure x (the
    # raw cash word + the pool's unrealised loss in BTC, none here: the long paid a premium)
    pending, sysp = int(ch.pending_fees()), ch.system_params()
    shares = (
        pending * int(sysp.insurance_bps) // 10_000 + pending * int(sysp.protocol_bps) // 10_000
    )
    raw = int(ch.pool_cash()) - (pending - shares)
    mark = int(ch.mark(0)[0])
    base = raw + min(int(ch.pool_sums(0)[0]) - 2 * mark, 0)
    cap = base * int(ch.market_params(0).max_vault_exposure) // WAD
    assert btc.exposure == 2 * from_wad(mark)
    assert btc.cap == from_wad(cap)
    assert btc.utilisation == Decimal(2 * mark) / Decimal(cap)
    # LP exits may take the pool's cash down to where each market is at 1.5x its cap
    assert 0 < st.exit_room < st.pool_cash
    assert (btc.vault_side, st.markets[1].vault_side, st.markets[2].vault_side) == (
        "short",
        "long",
        "flat",
    )
