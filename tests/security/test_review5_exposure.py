"""Review 5: attacks on the single vault exposure rule (state._exposure_limit) shared by
trader fills, LP exits (vault_withdraw, 1.5x headroom) and ADL (vault_limits)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ape

from perpdex.sdk.client import PerpdexClient
from perpdex.units import WAD

WITHIN = "clearinghouse: vault within its limits"
CAP = "clearinghouse: vault exposure cap reached"


def _lp(protocol: Any, h: Any, who: Any, dollars: int) -> None:
    units = h.fund(who, dollars)
    protocol.token.approve(protocol.vault, units, sender=who)
    protocol.vault.deposit(units, who, sender=who)


def _cap(protocol: Any, m: int) -> Decimal:
    return Decimal(int(protocol.clearinghouse.market_params(m).max_vault_exposure)) / WAD


def test_r5_1__exit_ahead_of_update_when_another_market_carries_a_pool_loss(
    protocol, h, trader, hedger, lp, stranger, admin, keeper
):
    """(a) The withdrawal fee (105 bp = 0.5% x 1.5 x sum of caps) assumes each market's
    exposure is at most 1.5 x cap x pool EQUITY. The rule measured a market against raw
    cash + that market's own unrealised loss only, so a pool loss parked in another
    market was invisible to it. $1.3M pool ($1M LP + $300k attacker LP). ETH longs at
    0.97 x cap, ETH x3, then an equal ETH short: ETH skew 0, the pool owes ETH traders
    ~$680k it still holds as cash. BTC and SOL longs fill to 0.97 x cap x cash. Before
    the fix the attacker redeemed everything just before a correlated BTC+SOL +0.5%
    round (exposure 2.54x equity) and the LP who stayed lost 127.1 bp against a 105 bp
    fee. Now exits also measure every market against pool equity (cash + the pool's
    unrealised PnL and funding in every market - uncovered provision, state._pool_equity,
    the figure ADL's cap uses): the attacker may take only what keeps each market within
    1.5 x cap x equity (the SDK's exit room, to the unit), and
    the stayer's loss in the round is within the fee."""
    ch = protocol.clearinghouse
    btc, eth = protocol.market_id("BTC"), protocol.market_id("ETH")
    _lp(protocol, h, lp, 1_000_000)
    _lp(protocol, h, stranger, 300_000)
    cash = Decimal(int(ch.pool_cash())) / WAD
    eth_p = Decimal(h.price("ETH")) / WAD
    eth_size = (cash * _cap(protocol, eth) * Decimal("0.97") / eth_p).quantize(Decimal("0.001"))
    longs = h.funded_account(trader, 2_000_000, name="eth long")
    h.trade(trader, longs, "ETH", eth_size)
    h.set_price("ETH", eth_p * 3, admin)
    protocol.ops.refresh([eth], sender=keeper)
    shorts = h.funded_account(hedger, 2_000_000, name="eth short")
    h.trade(hedger, shorts, "ETH", -eth_size)  # skew back to 0
    cash = Decimal(int(ch.pool_cash())) / WAD
    bl = h.funded_account(trader, 3_000_000, name="btc+sol long")
    exposure = Decimal(0)
    prices = {}
    for sym in ("BTC", "SOL"):
        m = protocol.market_id(sym)
        prices[sym] = Decimal(h.price(sym)) / WAD
        size = (cash * _cap(protocol, m) * Decimal("0.97") / prices[sym]).quantize(Decimal("0.001"))
        h.trade(trader, bl, sym, size)
        exposure += size * prices[sym]
    attacker = PerpdexClient.from_protocol(protocol, stranger)
    room = attacker.lp_status().exit_room * 10**6  # token units
    shares = int(protocol.vault.balanceOf(stranger))
    with ape.reverts(CAP):
        protocol.vault.redeem(shares, stranger, stranger, sender=stranger)
    if room > 0:
        protocol.vault.withdraw(int(room), stranger, stranger, sender=stranger)
        with ape.reverts(CAP):
            protocol.vault.withdraw(1, stranger, stranger, sender=stranger)
    shares = int(protocol.vault.balanceOf(lp))
    before = int(protocol.vault.previewRedeem(shares))
    equity = Decimal(int(protocol.lens.vault_equity())) / WAD
    for sym in ("BTC", "SOL"):  # one correlated round against the pool
        h.set_price(sym, prices[sym] * Decimal("1.005"), admin)
    protocol.ops.refresh([btc, protocol.market_id("SOL")], sender=keeper)
    after = int(protocol.vault.previewRedeem(shares))
    drop_bp = (before - after) * 10_000 / before
    fee = int(protocol.vault.withdraw_fee_bps())
    print(
        f"R5-1: attacker may take ${room / 10**6:,.2f} of $300k; equity after "
        f"${equity:,.0f}, BTC+SOL exposure ${exposure:,.0f} ({exposure / equity:.2f}x "
        f"equity); stayer loses {drop_bp:.1f} bp in one 0.5% round, fee {fee} bp"
    )
    assert drop_bp <= fee


def test_r5_2__lp_exit_past_the_cap_deleverages_only_the_excess_at_the_oracle_price(
    protocol, h, trader, lp, keeper
):
    """(c) Accepted by design (docs/security.md R5-2): a trader long 3.9 BTC, within the
    cap ($1M pool, cap 0.4: ADL refuses). An LP redeems a quarter of the pool (allowed:
    up to 1.5x the cap): BTC is now above the rule, and anyone may auto-deleverage the
    trader. That is the release valve "no single trader can freeze LP exits" needs: a
    trader at the cap would otherwise hold every LP in. What bounds it: the ADL fills at
    the oracle price with no premium and no fee (the trader's equity does not move by
    more than rounding), and closes only what brings BTC back within the cap (a second
    ADL refuses)."""
    ch = protocol.clearinghouse
    btc = protocol.market_id("BTC")
    _lp(protocol, h, lp, 1_000_000)
    acct = h.funded_account(trader, 300_000, name="honest")
    h.trade(trader, acct, "BTC", "3.9")
    with ape.reverts(WITHIN):
        protocol.risk.auto_deleverage(acct, btc, sender=keeper)
    protocol.vault.redeem(int(protocol.vault.balanceOf(lp)) // 4, lp, lp, sender=lp)
    size0 = int(ch.position(acct, btc)[0])
    protocol.ops.refresh([btc], sender=keeper)
    equity0 = int(ch.account_margin(acct)[0])
    tx = protocol.risk.auto_deleverage(acct, btc, sender=lp)
    fill = next(f for f in ch.Fill.from_receipt(tx) if f.account == acct)
    assert int(fill.fee) == 0 and int(fill.price) == int(ch.mark(btc)[0])
    size1 = int(ch.position(acct, btc)[0])
    equity1 = int(ch.account_margin(acct)[0])
    print(
        f"R5-2: LP took a quarter; ADL closed {(size0 - size1) / WAD:.4f} of 3.9 BTC at the "
        f"oracle price; trader equity moved ${(equity1 - equity0) / WAD:,.6f}"
    )
    assert 0 < size0 - size1 < size0 // 3
    assert abs(equity1 - equity0) <= WAD // 100  # funding of one block at most
    with ape.reverts(WITHIN):
        protocol.risk.auto_deleverage(acct, btc, sender=lp)


def test_r5_3__trader_cannot_trigger_adl_on_another_within_limits(
    protocol, h, trader, hedger, lp, keeper
):
    """(c) refused: a trader fills BTC to the cap next to an honest long; the fill is
    held to the rule, so ADL still refuses against the honest one, and a further fill
    over the cap is refused."""
    btc = protocol.market_id("BTC")
    _lp(protocol, h, lp, 1_000_000)
    honest = h.funded_account(trader, 300_000, name="honest")
    h.trade(trader, honest, "BTC", "1")
    whale = h.funded_account(hedger, 300_000, name="whale")
    h.trade(hedger, whale, "BTC", "2.9")
    with ape.reverts("clearinghouse: vault exposure cap reached"):
        h.trade(hedger, whale, "BTC", "0.5")
    with ape.reverts(WITHIN):
        protocol.risk.auto_deleverage(honest, btc, sender=keeper)


def test_r5_4__trader_at_the_cap_cannot_freeze_exits(protocol, h, trader, lp, keeper):
    """(b) refused: traders at the cap, the LP still takes a quarter of the pool out, and
    when held back the ADL is open to release it."""
    btc = protocol.market_id("BTC")
    _lp(protocol, h, lp, 1_000_000)
    acct = h.funded_account(trader, 300_000, name="at cap")
    h.trade(trader, acct, "BTC", "3.9")
    protocol.vault.redeem(int(protocol.vault.balanceOf(lp)) // 4, lp, lp, sender=lp)
    with ape.reverts("clearinghouse: vault exposure cap reached"):
        protocol.vault.redeem(int(protocol.vault.balanceOf(lp)), lp, lp, sender=lp)
    protocol.risk.auto_deleverage(acct, btc, sender=keeper)
    protocol.vault.redeem(int(protocol.vault.balanceOf(lp)) // 10, lp, lp, sender=lp)
