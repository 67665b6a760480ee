"""Issue 12, item 6: vault fills at a price the trader could not know.

The attack (main at a5d64ae): `trade` fills against the vault at the oracle's latest
on-chain price. Whoever knows the next feed update before the chain does (the report in
flight, a faster venue that moved first) buys before an update up, or sells before one
down, and closes right after it: 2 BTC ahead of a +0.5% update at $100k earn about $1,000
less ~$200 of fees and premium, paid by the vault's LPs.

The defence (modules/delayed.vy): per market, `set_delayed_params` makes adding vault
trades (mode 1) or every vault trade (mode 2) go through `commit_order` and a later
`settle_order`, which anyone may call once the oracle's reading of the market was
observed at least `min_delay` seconds after the commit (OracleRouter.price_time): the
update the trader knew lands too early to fill the order, which fills at the first price
observed after the delay, which at commit nobody knew. The same round trip then only pays
fees. Mode 1 leaves immediate reduces: a holder who knows the next update can still close
ahead of it (the residual edge, shown below); mode 2 takes it away too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ape
import pytest

from perpdex.units import WAD

MIN_DELAY = 30
MAX_AGE = 300
KEEPER_FEE = 2 * WAD
ANY_PRICE = 2**256 - 1


@pytest.fixture(scope="module")
def pool(actors: dict[str, Any], protocol: Any, h: Any) -> None:
    lp = actors["lp"]
    units = h.fund(lp, 2_000_000)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)


@pytest.fixture
def btc(protocol: Any) -> int:
    return protocol.market_id("BTC")


@pytest.fixture
def risk(protocol: Any) -> Any:
    return protocol.risk


def _delayed(risk: Any, admin: Any, m: int, mode: int, fee: int = KEEPER_FEE) -> Any:
    return risk.set_delayed_params(m, mode, MIN_DELAY, MAX_AGE, fee, sender=admin)


def _push(h: Any, usd: int | str | Decimal, who: Any, after: int = 0) -> None:
    """Every BTC feed observes `usd`, `after` seconds from now."""
    if after:
        ape.chain.pending_timestamp += after
    h.set_price("BTC", usd, who)


def _wad(size: str) -> int:
    return int(Decimal(size) * WAD)


def _round_trip_gain(ch: Any, acct: int, start: int) -> int:
    return int(ch.balance_of(acct, 0)) - start


# --- the attack ----------------------------------------------------------------------------


def test_attack__immediate_trade_ahead_of_a_known_update_profits(
    protocol, ch, h, pool, btc, trader, keeper
):
    """Mode 0 (the default, immediate): the vault pays whoever knows the next price."""
    acct = h.funded_account(trader, 100_000, name="front-runner")
    start = int(ch.balance_of(acct, 0))
    h.trade(trader, acct, "BTC", "2")  # at $100,000 (+ premium, + fee)
    _push(h, 100_500, keeper)  # the update the trader saw coming
    h.trade(trader, acct, "BTC", "-2")  # closes at $100,500
    assert ch.position(acct, btc)[0] == 0
    gain = _round_trip_gain(ch, acct, start)
    assert gain > 700 * WAD, f"front-running a +0.5% update made only {gain / WAD}"


# --- the defence -----------------------------------------------------------------------------


def test_defence__the_same_attack_through_a_delayed_order_pays_only_fees(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000, name="front-runner")
    start = int(ch.balance_of(acct, 0))
    with ape.reverts("clearinghouse: use commit_order"):
        h.trade(trader, acct, "BTC", "2")
    tx = risk.commit_order(acct, btc, _wad("2"), ANY_PRICE, sender=trader)
    committed = tx.decode_logs(risk.DelayedOrderCommitted)[0]
    _push(h, 100_500, keeper, after=1)  # the update the trader knew: observed too early
    assert protocol.oracle.price_time(btc) < committed.commit_time + MIN_DELAY
    with ape.reverts("clearinghouse: no price after commit yet"):
        risk.settle_order(acct, btc, sender=keeper)
    _push(h, 100_500, keeper, after=MIN_DELAY)  # the first price observed after the delay
    tx = risk.settle_order(acct, btc, sender=keeper)
    fill = next(f for f in tx.decode_logs(ch.Fill) if f.account == acct)
    assert fill.price > 100_500 * WAD  # the new price plus the skew premium
    h.trade(trader, acct, "BTC", "-2")  # reduce-only: immediate in mode 1
    assert ch.position(acct, btc)[0] == 0
    gain = _round_trip_gain(ch, acct, start)
    assert gain < 0, f"the delayed round trip made {gain / WAD}"
    assert gain > -(600 * WAD)  # fees, premium and the keeper fee, nothing more


def test_residual__mode_1_lets_a_holder_close_ahead_of_a_known_update(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """Mode 1 keeps immediate reduces: a long that knows the next update is down closes at
    the old price (the one-update edge a close still has); mode 2 refuses that close."""
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000, name="holder")
    risk.commit_order(acct, btc, _wad("2"), ANY_PRICE, sender=trader)
    _push(h, 100_000, keeper, after=MIN_DELAY)
    risk.settle_order(acct, btc, sender=keeper)
    before = int(ch.account_margin(acct).equity)
    h.trade(trader, acct, "BTC", "-2")  # at $100,000, ahead of the drop below
    _push(h, 99_500, keeper)
    dodged = int(ch.account_margin(acct).equity) - before
    assert dodged > -(200 * WAD)  # fees only: the -$1,000 of the drop was dodged

    _delayed(risk, admin, btc, 2)
    acct2 = h.funded_account(trader, 100_000, name="holder-2")
    risk.commit_order(acct2, btc, _wad("2"), ANY_PRICE, sender=trader)
    _push(h, 100_000, keeper, after=MIN_DELAY)
    risk.settle_order(acct2, btc, sender=keeper)
    with ape.reverts("clearinghouse: use commit_order"):
        h.trade(trader, acct2, "BTC", "-2")
    risk.commit_order(acct2, btc, _wad("-2"), 0, sender=trader)
    _push(h, 99_500, keeper, after=1)  # the drop the holder knew: observed too early
    with ape.reverts("clearinghouse: no price after commit yet"):
        risk.settle_order(acct2, btc, sender=keeper)
    _push(h, 99_500, keeper, after=MIN_DELAY)
    tx = risk.settle_order(acct2, btc, sender=keeper)
    fill = next(f for f in tx.decode_logs(ch.Fill) if f.account == acct2)
    assert fill.price < 99_600 * WAD  # the close took the drop
    assert ch.position(acct2, btc)[0] == 0


def test_defence__immediate_reduce_in_mode_1_and_other_markets_unaffected(
    protocol, ch, h, pool, btc, risk, admin, trader
):
    acct = h.funded_account(trader, 100_000)
    h.trade(trader, acct, "BTC", "1")
    h.trade(trader, acct, "ETH", "10")
    _delayed(risk, admin, btc, 1)
    with ape.reverts("clearinghouse: use commit_order"):
        h.trade(trader, acct, "BTC", "0.5")
    with ape.reverts("clearinghouse: use commit_order"):
        h.trade(trader, acct, "BTC", "-2")  # a flip adds risk
    h.trade(trader, acct, "BTC", "-0.5")
    h.trade(trader, acct, "ETH", "10")  # ETH stays immediate
    # set_market_params keeps the delayed bits (they are set_delayed_params' alone)
    protocol.admin.set_market_params(btc, protocol.system.markets[btc].params(), sender=admin)
    with ape.reverts("clearinghouse: use commit_order"):
        h.trade(trader, acct, "BTC", "0.5")
    # mode 0 with delays set: immediate trades again, delayed orders still possible
    _delayed(risk, admin, btc, 0)
    h.trade(trader, acct, "BTC", "0.5")
    risk.commit_order(acct, btc, _wad("0.1"), ANY_PRICE, sender=trader)


# --- settlement: price, fee, events ------------------------------------------------------


def test_settle__pays_the_keeper_and_logs(protocol, ch, h, pool, btc, risk, admin, trader, keeper):
    token = protocol.token
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000)
    bound = 101_000 * WAD
    tx = risk.commit_order(acct, btc, _wad("1"), bound, sender=trader)
    ev = tx.decode_logs(risk.DelayedOrderCommitted)[0]
    assert (ev.account, ev.market, ev.size_delta, ev.acceptable_price, ev.keeper_fee) == (
        acct,
        btc,
        _wad("1"),
        bound,
        KEEPER_FEE,
    )
    assert ev.commit_time == ape.chain.blocks[tx.block_number].timestamp
    word = int(protocol.ops.delayed_order(acct, btc))
    assert word & (2**96 - 1) == _wad("1")
    assert (word >> 96) & (2**96 - 1) == bound
    assert (word >> 192) & (2**40 - 1) == ev.commit_time
    assert word >> 232 == KEEPER_FEE // 10**14
    _push(h, 100_200, keeper, after=MIN_DELAY)
    published = int(protocol.oracle.price_time(btc))
    paid_before = int(token.balanceOf(keeper))
    bal_before = int(ch.balance_of(acct, 0))
    tx = risk.settle_order(acct, btc, sender=keeper)
    done = tx.decode_logs(risk.DelayedOrderSettled)[0]
    fill = next(f for f in tx.decode_logs(ch.Fill) if f.account == acct)
    assert (done.account, done.market, done.keeper, done.keeper_fee) == (
        acct,
        btc,
        keeper.address,
        KEEPER_FEE,
    )
    assert done.price == fill.price and done.price_time == published
    assert fill.size_delta == _wad("1") and fill.price <= bound
    assert int(token.balanceOf(keeper)) - paid_before == h.usd(2)
    assert int(ch.balance_of(acct, 0)) == bal_before - KEEPER_FEE - int(fill.fee)
    assert int(protocol.ops.delayed_order(acct, btc)) == 0
    with ape.reverts("clearinghouse: no delayed order"):
        risk.settle_order(acct, btc, sender=keeper)  # never twice


def test_settle__acceptable_price_and_margin_hold(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000)
    risk.commit_order(acct, btc, _wad("1"), 100_100 * WAD, sender=trader)
    _push(h, 100_500, keeper, after=MIN_DELAY)  # the market moved past the bound
    with ape.reverts("clearinghouse: price worse than acceptable"):
        risk.settle_order(acct, btc, sender=keeper)
    small = h.funded_account(trader, 1_000, name="small")
    risk.commit_order(small, btc, _wad("5"), ANY_PRICE, sender=trader)
    _push(h, 100_500, keeper, after=MIN_DELAY)
    with ape.reverts("clearinghouse: below initial margin"):
        risk.settle_order(small, btc, sender=keeper)


def test_settle__fills_at_the_reading_it_checked_not_a_mark_cached_in_the_block(
    protocol, ch, h, pool, btc, risk, admin, trader, keeper
):
    """One block: a refresh caches the old price, the feeds then move, then the order
    settles. The settlement re-reads the oracle: the fill is at the new reading, whose
    observation time it checked, not at the mark cached earlier in the block (a trade
    would reuse that mark)."""
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 100_000)
    risk.commit_order(acct, btc, _wad("1"), ANY_PRICE, sender=trader)
    ape.chain.pending_timestamp += MIN_DELAY
    web3 = ape.chain.provider.web3
    request = ape.chain.provider.make_request
    answer = 101_000 * 10**8
    sends = [(keeper, ch.address, protocol.ops.refresh.encode_input([btc]))]
    sends += [(keeper, f.address, f.set_answer.encode_input(answer)) for f in protocol.feeds["BTC"]]
    sends.append((keeper, ch.address, risk.settle_order.encode_input(acct, btc)))
    request("evm_setAutomine", [False])
    try:
        sent = [
            web3.eth.send_transaction(
                {"from": who.address, "to": to, "data": data, "gas": 2_000_000}
            )
            for who, to, data in sends
        ]
        request("evm_mine", [])
    finally:
        request("evm_setAutomine", [True])
    receipts = [web3.eth.get_transaction_receipt(x) for x in sent]
    assert len({r["blockNumber"] for r in receipts}) == 1
    assert all(r["status"] == 1 for r in receipts)
    settled = ape.chain.provider.get_receipt(receipts[-1]["transactionHash"].hex())
    fill = next(f for f in settled.decode_logs(ch.Fill) if f.account == acct)
    assert fill.price >= 101_000 * WAD
    assert int(ch.mark(btc)[0]) == 101_000 * WAD


# --- revert reasons ----------------------------------------------------------------------------


def test_set_delayed_params__refusals(protocol, btc, risk, admin, stranger):
    with ape.reverts("access_control: account is missing role"):
        risk.set_delayed_params(btc, 1, 5, 60, 0, sender=stranger)
    with ape.reverts("clearinghouse: unknown market"):
        risk.set_delayed_params(99, 1, 5, 60, 0, sender=admin)
    with ape.reverts("clearinghouse: bad delayed mode"):
        risk.set_delayed_params(btc, 3, 5, 60, 0, sender=admin)
    for min_delay, max_age in ((0, 60), (301, 600), (60, 60), (5, 3_601)):
        with ape.reverts("clearinghouse: bad order delays"):
            risk.set_delayed_params(btc, 1, min_delay, max_age, 0, sender=admin)
    for fee in (1_001 * WAD, 10**14 + 1):
        with ape.reverts("clearinghouse: bad keeper fee"):
            risk.set_delayed_params(btc, 1, 5, 60, fee, sender=admin)
    before = int(protocol.ops.delayed_config(btc))  # config/markets.yaml's, from the deploy
    tx = risk.set_delayed_params(btc, 2, 5, 60, 10**14, sender=admin)
    ev = tx.decode_logs(risk.DelayedParamsUpdated)[0]
    cfg = 5 | 60 << 32 | 10**14 << 64 | 2 << 192
    assert (ev.market, ev.old_config, ev.new_config) == (btc, before, cfg)
    assert int(protocol.ops.delayed_config(btc)) == cfg
    tx = risk.set_delayed_params(btc, 0, 0, 0, 0, sender=admin)  # off
    assert tx.decode_logs(risk.DelayedParamsUpdated)[0].new_config == 0


def test_commit__refusals(protocol, ch, h, btc, risk, admin, trader, stranger):
    acct = h.funded_account(trader, 10_000)
    risk.set_delayed_params(btc, 0, 0, 0, 0, sender=admin)  # none in the market
    with ape.reverts("clearinghouse: no delayed orders in market"):
        risk.commit_order(acct, btc, WAD, ANY_PRICE, sender=trader)
    _delayed(risk, admin, btc, 1)
    with ape.reverts("clearinghouse: not authorized"):
        risk.commit_order(acct, btc, WAD, ANY_PRICE, sender=stranger)
    with ape.reverts("clearinghouse: unknown account"):
        risk.commit_order(acct + 1, btc, WAD, ANY_PRICE, sender=trader)
    with ape.reverts("clearinghouse: unknown market"):
        risk.commit_order(acct, 99, WAD, ANY_PRICE, sender=trader)
    with ape.reverts("clearinghouse: zero size"):
        risk.commit_order(acct, btc, 0, ANY_PRICE, sender=trader)
    with ape.reverts("clearinghouse: size too large"):
        risk.commit_order(acct, btc, 2**95, ANY_PRICE, sender=trader)
    with ape.reverts("clearinghouse: size too large"):
        risk.commit_order(acct, btc, -(2**95), ANY_PRICE, sender=trader)
    risk.commit_order(acct, btc, WAD, ANY_PRICE, sender=trader)
    with ape.reverts("clearinghouse: delayed order pending"):
        risk.commit_order(acct, btc, -WAD, 0, sender=trader)
    # an expired order is replaced (its cancel logged first)
    ape.chain.pending_timestamp += MAX_AGE + 1
    tx = risk.commit_order(acct, btc, -WAD, 0, sender=trader)
    gone = tx.decode_logs(risk.DelayedOrderCancelled)
    assert [(g.account, g.market, g.expired) for g in gone] == [(acct, btc, True)]
    assert int(protocol.ops.delayed_order(acct, btc)) & (2**96 - 1) == 2**96 - WAD


def test_settle__refusals(protocol, ch, h, pool, btc, risk, admin, trader, keeper):
    acct = h.funded_account(trader, 100_000)
    _delayed(risk, admin, btc, 1)
    with ape.reverts("clearinghouse: no delayed order"):
        risk.settle_order(acct, btc, sender=keeper)
    with ape.reverts("clearinghouse: no delayed order"):
        risk.settle_order(acct, 99, sender=keeper)
    risk.commit_order(acct, btc, WAD, ANY_PRICE, sender=trader)
    with ape.reverts("clearinghouse: no price after commit yet"):
        risk.settle_order(acct, btc, sender=keeper)  # no new price at all
    ape.chain.pending_timestamp += MIN_DELAY + 5
    with ape.reverts("clearinghouse: no price after commit yet"):
        risk.settle_order(acct, btc, sender=keeper)  # late enough, but the feeds are old
    _push(h, 100_000, keeper, after=MAX_AGE)
    with ape.reverts("clearinghouse: delayed order expired"):
        risk.settle_order(acct, btc, sender=keeper)
    # turning the market's delayed orders off expires its pending ones
    risk.commit_order(acct, btc, WAD, ANY_PRICE, sender=trader)
    risk.set_delayed_params(btc, 0, 0, 0, 0, sender=admin)
    _push(h, 100_000, keeper, after=MIN_DELAY)
    with ape.reverts("clearinghouse: delayed order expired"):
        risk.settle_order(acct, btc, sender=keeper)
    risk.cancel_delayed_order(acct, btc, sender=keeper)


def test_cancel__owner_before_the_window_anyone_once_expired(
    protocol, h, btc, risk, admin, trader, stranger, keeper
):
    _delayed(risk, admin, btc, 1)
    acct = h.funded_account(trader, 10_000)
    with ape.reverts("clearinghouse: no delayed order"):
        risk.cancel_delayed_order(acct, btc, sender=trader)
    with ape.reverts("clearinghouse: no delayed order"):
        risk.cancel_delayed_order(acct, 99, sender=trader)
    risk.commit_order(acct, btc, WAD, ANY_PRICE, sender=trader)
    with ape.reverts("clearinghouse: not authorized"):
        risk.cancel_delayed_order(acct, btc, sender=stranger)
    tx = risk.cancel_delayed_order(acct, btc, sender=trader)
    ev = tx.decode_logs(risk.DelayedOrderCancelled)[0]
    assert (ev.account, ev.market, ev.sender, ev.expired) == (acct, btc, trader.address, False)
    assert int(protocol.ops.delayed_order(acct, btc)) == 0
    # once a settling price may exist the owner can no longer take the order back
    risk.commit_order(acct, btc, WAD, ANY_PRICE, sender=trader)
    ape.chain.pending_timestamp += MIN_DELAY
    with ape.reverts("clearinghouse: settlement window open"):
        risk.cancel_delayed_order(acct, btc, sender=trader)
    ape.chain.pending_timestamp += MAX_AGE
    tx = risk.cancel_delayed_order(acct, btc, sender=stranger)
    ev = tx.decode_logs(risk.DelayedOrderCancelled)[0]
    assert (ev.sender, ev.expired) == (stranger.address, True)


def test_in_liquidation__no_commit_no_settle(protocol, ch, h, pool, btc, risk, admin, trader):
    from liquidation_helpers import LiqWorld

    keeper = admin
    liq = LiqWorld(protocol, ape.chain, keeper)
    keeper_acct = liq.account(keeper, 200_000, name="keeper")
    victim = liq.btc_long(trader, 12_000)
    risk.set_delayed_params(btc, 1, MIN_DELAY, 3_600, KEEPER_FEE, sender=admin)
    risk.commit_order(victim.account, btc, -WAD // 2, 0, sender=trader)
    liq.hold({"BTC": liq.price_for_health(victim.account, Decimal("0.9"))})
    liq.auction.start(victim.account, keeper_acct, sender=keeper)
    with ape.reverts("clearinghouse: account in liquidation"):
        risk.settle_order(victim.account, btc, sender=keeper)
    ape.chain.pending_timestamp += 3_601
    risk.cancel_delayed_order(victim.account, btc, sender=keeper)
    with ape.reverts("clearinghouse: account in liquidation"):
        risk.commit_order(victim.account, btc, -WAD // 2, 0, sender=trader)


# --- the oracle's observation time ------------------------------------------------------------


def test_price_time__oldest_fresh_observation(protocol, btc, keeper):
    feeds = protocol.feeds["BTC"]
    oracle = protocol.oracle
    answer = 100_000 * 10**8
    now = ape.chain.pending_timestamp
    feeds[0].set_round_data(answer, now - 20, now - 10, sender=keeper)  # observed at -20
    feeds[1].set_round_data(answer, now - 5, now - 5, sender=keeper)
    feeds[2].set_round_data(answer, 0, now - 3, sender=keeper)  # no startedAt: updatedAt
    assert oracle.price_time(btc) == now - 20
    feeds[0].set_round_data(answer, now - 2, now - 1, sender=keeper)
    assert oracle.price_time(btc) == now - 5
    # a stale source (past max_age) counts in no price, so not here either
    feeds[1].set_round_data(answer, now - 4_000, now - 4_000, sender=keeper)
    assert oracle.price_time(btc) == now - 3
    for f in feeds:
        f.set_round_data(answer, now - 4_000, now - 4_000, sender=keeper)
    assert oracle.price_time(btc) == 0
    with ape.reverts("oracle: unknown market"):
        oracle.price_time(31)
