"""Review 6: attacks on the sixth code half (ClearinghouseTreasury, 2e9de4c), the R5-1
pool floor (LP exits and ADL measured against state._pool_equity's floor, 6f430ab) and
the owner's one-transaction kill switch `revoke_operator` (eb4ca5a).

R6-1..R6-3 were fixed by dropping the floor: LP exits measure against pool equity itself
(gains and funding included, deficits provisioned: the figure ADL's cap already used),
and the SDK and the ADL keeper read insurance as the chain does; their tests now pass.

A finding is a strict xfail that asserts the safe behaviour and prints its figures; a
refused attack is a plain test. In the xfails, set-up steps that must hold raise
`SetupError` (not AssertionError), so only the final safety assertion can make them
"xfail": a broken set-up fails the test instead of hiding behind the mark.
R6-1 hedged pair lowers the floor (ADL of a bystander); R6-2 SDK/keeper count the
sweep's insurance share wrongly; R6-3 the floor ignores funding the pool owes; R6-4 a
delayed order outlives revoke_operator.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import ape
import pytest
from ape.exceptions import ContractLogicError
from eth_utils import function_signature_to_4byte_selector
from liquidation_helpers import LiqWorld

from perpdex.keepers.adl import AdlKeeper
from perpdex.sdk.client import PerpdexClient
from perpdex.sdk.manifest import CODE_HALVES, DeploymentNotFound, ManifestWarning, verify_halves
from perpdex.sdk.math import vault_limits as vl
from perpdex.units import WAD

WITHIN = "clearinghouse: vault within its limits"
CAP = "clearinghouse: vault exposure cap reached"
MISSING_ROLE = "access_control: account is missing role"
BPS = 10_000
DAY = 86_400
ANY_PRICE = 2**256 - 1
HALVES = CODE_HALVES


class SetupError(Exception):
    """A precondition of an attack did not hold: the test is broken, not the contract."""


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise SetupError(what)


def _refused(call: Callable[[], Any], reason: str) -> bool:
    """Whether `call` reverts with a message containing `reason`."""
    try:
        call()
    except ContractLogicError as e:
        return reason in str(e)
    return False


# --- pool reads: the contract's own figures, rebuilt from its views ------------------------


def _lp(protocol: Any, h: Any, who: Any, dollars: int) -> None:
    units = h.fund(who, dollars)
    protocol.token.approve(protocol.vault, units, sender=who)
    protocol.vault.deposit(units, who, sender=who)


def _pending_split(ch: Any) -> tuple[int, int]:
    """(pending fees, the insurance share a sweep would take of them)."""
    pending = int(ch.pending_fees())
    return pending, pending * int(ch.system_params().insurance_bps) // BPS


def _raw_cash(ch: Any) -> int:
    """The pool's cash word (pool_cash() adds the vault's share of unswept fees)."""
    pending = int(ch.pending_fees())
    sysp = ch.system_params()
    to_vault = (
        pending - pending * int(sysp.insurance_bps) // BPS - pending * int(sysp.protocol_bps) // BPS
    )
    return int(ch.pool_cash()) - to_vault


def _raw_insurance(ch: Any) -> int:
    """The treasury word's insurance, unswept: insurance_fund() already adds the share of
    pending fees a sweep would give it."""
    return int(ch.insurance_fund()) - _pending_split(ch)[1]


def _markets(ch: Any) -> list[vl.PoolMarket]:
    return [
        vl.pool_market(*(getattr(ch, view)(m) for view in vl.POOL_MARKET_VIEWS))
        for m in range(int(ch.market_count()))
    ]


def _equity(ch: Any) -> int:
    """state._pool_equity() as auto_deleverage reads it (fees not swept)."""
    cash, markets = _raw_cash(ch), _markets(ch)
    return vl.pool_equity(cash, markets, int(ch.bad_debt_provision()), _raw_insurance(ch))


def _exit_room(ch: Any, unit: int) -> int:
    """vault_withdraw's limit by the SDK mirror: the sweep gives insurance its share once
    (insurance_fund() has it)."""
    return vl.max_exit(
        int(ch.pool_cash()),
        _markets(ch),
        unit,
        provision=int(ch.bad_debt_provision()),
        insurance=int(ch.insurance_fund()),
    )


def _usd(wad: int | Decimal) -> str:
    return f"${Decimal(wad) / WAD:,.2f}"


def _account_equity(ch: Any, acct: int) -> int:
    return int(ch.account_margin(acct)[0])


# === 1. the sixth code half ================================================================


def test_r6_halves__no_selector_shadowed_and_treasury_reached(project, protocol, stranger):
    """Refused: no function selector is exported by two halves (an earlier half would
    shadow the later one through the __default__ chain), each of the eight calls moved to
    ClearinghouseTreasury answers on the Clearinghouse address with its own access
    check (not 'no such function'), and the admin's setter lands in the shared storage."""
    owner: dict[bytes, str] = {}
    clashes = []
    for half in HALVES:
        for a in getattr(project, half).contract_type.abi:
            if a.type != "function" or a.name == "extension_config":
                continue
            sel = function_signature_to_4byte_selector(a.selector)
            if sel in owner:
                clashes.append(f"{a.selector}: {owner[sel]} shadows {half}")
            owner.setdefault(sel, half)
    treasury_fns = {
        a.selector
        for a in project.ClearinghouseTreasury.contract_type.abi
        if a.type == "function" and a.name != "extension_config"
    }
    print(f"selectors: {len(owner)} across six halves, clashes {clashes}")
    assert not clashes
    # the eight calls moved here, and (review 8) settle's self-only margin check of the
    # uncommon cases, refused to outsiders in tests/unit/clearinghouse/test_engine_entry_points.py
    check_fill = "engine_check_fill(uint256,uint256,int256,bool,bool,uint256)"
    assert check_fill in treasury_fns
    assert len(treasury_fns - {check_fill}) == 8
    assert {owner[function_signature_to_4byte_selector(s)] for s in treasury_fns} == {
        "ClearinghouseTreasury"
    }
    admin_abi, risk = protocol.admin, protocol.risk
    refusals = {
        "vault_deposit": (lambda: admin_abi.vault_deposit(1, sender=stranger), "not the vault"),
        "vault_withdraw": (
            lambda: admin_abi.vault_withdraw(1, stranger, sender=stranger),
            "not the vault",
        ),
        "withdraw_protocol_fees": (
            lambda: admin_abi.withdraw_protocol_fees(stranger, sender=stranger),
            MISSING_ROLE,
        ),
        "buy_collateral": (
            lambda: admin_abi.buy_collateral(1, 1, 1, sender=stranger),
            "clearinghouse: unknown token",
        ),
        "fund_insurance": (lambda: admin_abi.fund_insurance(0, sender=stranger), "zero amount"),
        "set_vault_limits": (
            lambda: risk.set_vault_limits(3 * WAD, WAD, WAD // 2, sender=stranger),
            MISSING_ROLE,
        ),
        "set_delayed_params": (
            lambda: risk.set_delayed_params(0, 0, 0, 0, 0, sender=stranger),
            MISSING_ROLE,
        ),
    }
    for name, (call, reason) in refusals.items():
        assert _refused(call, reason), name
    admin_abi.sync_marks(sender=stranger)  # anyone, as before


def test_r6_halves__the_halfs_own_address_moves_nothing(project, protocol, admin, stranger):
    """Refused: the Treasury half's own address has its own (empty) storage. Its deployer
    holds the admin role there, yet setting the vault limits on it leaves the
    Clearinghouse's untouched; the vault's calls refuse everyone (no vault recorded)."""
    ch = protocol.clearinghouse
    ops_half = ape.Contract(ch.OPS(), contract_type=project.ClearinghouseOps.contract_type)
    admin_half = ape.Contract(
        ops_half.ADMIN(), contract_type=project.ClearinghouseAdmin.contract_type
    )
    orders_half = ape.Contract(
        admin_half.ORDERS(), contract_type=project.ClearinghouseOrders.contract_type
    )
    risk_half = ape.Contract(
        orders_half.RISK(), contract_type=project.ClearinghouseRisk.contract_type
    )
    half = ape.Contract(
        risk_half.TREASURY(), contract_type=project.ClearinghouseTreasury.contract_type
    )
    before = (int(protocol.ops.max_pnl_factor()), int(protocol.ops.adl_target_factor()))
    half.set_vault_limits(3 * WAD, WAD, WAD // 2, sender=admin)
    assert (int(protocol.ops.max_pnl_factor()), int(protocol.ops.adl_target_factor())) == before
    assert _refused(lambda: half.vault_withdraw(1, stranger, sender=stranger), "not the vault")
    assert _refused(lambda: half.vault_deposit(1, sender=stranger), "not the vault")
    assert tuple(half.extension_config()) == (protocol.oracle.address, protocol.token.address)


def test_r6_halves__manifest_names_the_treasury_half(project, protocol):
    """Refused: a manifest without `clearinghouse_treasury` loads with a warning naming
    the chain's half; one recording another address is refused."""
    ch = str(protocol.clearinghouse.address)
    from perpdex.sdk.manifest import chain_halves

    live = chain_halves(ch)
    recorded: dict[str, str | None] = dict(live)
    recorded["clearinghouse_treasury"] = None
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        assert verify_halves("test", ch, recorded) == live
    assert any(issubclass(w.category, ManifestWarning) for w in got)
    recorded["clearinghouse_treasury"] = str(protocol.oracle.address)
    with pytest.raises(DeploymentNotFound):
        verify_halves("test", ch, recorded)


# === 2. the pool floor (R5-1) ==============================================================


def test_r6_1__hedged_pair_lowers_the_floor_and_deleverages_an_honest_trader(
    protocol, h, trader, stranger, lp, admin, keeper
):
    """$1M pool. An honest SOL long at 98% of SOL's cap (ADL refuses: within its limits).
    The attacker's account X goes long BTC and short ETH for the same notional ($315k,
    under both caps). BTC and ETH rise 10% together: X's legs offset (net ~0), the pool
    loses $31.5k in BTC and gains as much in ETH; its equity does not move, but the floor
    counts only the BTC loss. A second account Y then nets both skews to zero: the
    attacker carries no market risk, ADL in BTC and ETH refuses ('within its limits':
    no exposure), and the floor stays $31.5k lower for as long as the four positions
    stay open (before the fix: LP exit room $346.8k -> $315.7k and 19.17 SOL of the
    honest long deleveraged). Safe: with equity unchanged, the honest SOL trader is still
    within the limits and ADL refuses."""
    ch, risk = protocol.clearinghouse, protocol.risk
    btc, eth, sol = (protocol.market_id(s) for s in ("BTC", "ETH", "SOL"))
    _lp(protocol, h, lp, 1_000_000)
    cash = Decimal(_raw_cash(ch)) / WAD
    f_sol = Decimal(int(ch.market_params(sol).max_vault_exposure)) / WAD
    sol_p = Decimal(h.price("SOL")) / WAD
    honest = h.funded_account(trader, 150_000, name="honest sol")
    sol_size = (cash * f_sol * Decimal("0.98") / sol_p).quantize(Decimal("0.001"))
    h.trade(trader, honest, "SOL", sol_size)
    _need(
        _refused(lambda: risk.auto_deleverage(honest, sol, sender=keeper), WITHIN),
        "the honest SOL long must start within the limits",
    )
    equity0 = _equity(ch)
    room0 = PerpdexClient.from_protocol(protocol, lp).lp_status().exit_room

    notional = Decimal(315_000)
    prices = {s: Decimal(h.price(s)) / WAD for s in ("BTC", "ETH")}
    sizes = {s: (notional / prices[s]).quantize(Decimal("0.001")) for s in prices}
    x = h.funded_account(stranger, 150_000, name="pair x")
    y = h.funded_account(stranger, 150_000, name="pair y")
    deposits = 2 * 150_000 * WAD
    h.trade(stranger, x, "BTC", sizes["BTC"])
    h.trade(stranger, x, "ETH", -sizes["ETH"])
    for s in prices:  # one correlated round, +10%
        h.set_price(s, prices[s] * Decimal("1.1"), admin)
    protocol.ops.refresh([btc, eth], sender=keeper)
    h.trade(stranger, y, "BTC", -sizes["BTC"])
    h.trade(stranger, y, "ETH", sizes["ETH"])
    for m in (btc, eth):
        long_oi, short_oi = (int(v) for v in ch.open_interest(m))
        _need(long_oi == short_oi, "the attacker's second account nets the skew to zero")
    _need(
        _refused(lambda: risk.auto_deleverage(x, btc, sender=keeper), WITHIN)
        and _refused(lambda: risk.auto_deleverage(y, eth, sender=keeper), WITHIN),
        "ADL in the netted markets cannot release the floor",
    )
    equity1 = _equity(ch)
    room1 = PerpdexClient.from_protocol(protocol, lp).lp_status().exit_room
    cost = deposits - _account_equity(ch, x) - _account_equity(ch, y)
    _need(abs(equity1 - equity0) < 100 * WAD, "pool equity unchanged (the pair is hedged)")

    size0 = int(ch.position(honest, sol)[0])
    try:
        tx = risk.auto_deleverage(honest, sol, sender=keeper)
    except ContractLogicError as e:
        _need(WITHIN in str(e), f"unexpected refusal: {e}")
        closed = 0
    else:
        closed = size0 - int(ch.position(honest, sol)[0])
        _need(len(tx.decode_logs(risk.AutoDeleveraged)) == 1, "one ADL event")
    print(
        f"R6-1: pool equity {_usd(equity0)} -> {_usd(equity1)}; "
        f"LP exit room ${room0:,.0f} -> ${room1:,.0f}; "
        f"attacker's cost (fees, premium) {_usd(cost)}; honest SOL long "
        f"{sol_size} ({_usd(int(sol_size * sol_p * WAD))}) deleveraged by "
        f"{Decimal(closed) / WAD:.3f} SOL"
    )
    assert closed == 0, "an honest trader within every cap was auto-deleveraged"


def _provisioned_world(
    protocol: Any, chain: Any, admin: Any, lp: Any, trader: Any, hedger: Any, keeper: Any
) -> tuple[LiqWorld, int, int]:
    """$1M pool; a 3.4 BTC long on $40k liquidated at BTC 80k (bad-debt provision
    ~$28k, insurance ~$0: uncovered), an honest 0.5 BTC long beside it; fees left
    unswept by ETH round trips. Returns (world, honest account, fee-payer account)."""
    w = LiqWorld(protocol, chain, admin)
    btc = protocol.market_id("BTC")
    w.lp_deposit(lp, 1_000_000)
    keeper_acct = w.account(keeper, 200_000, name="keeper")
    victim = w.account(trader, 40_000, name="victim")
    honest = w.account(hedger, 100_000, name="honest btc")
    w.trade(trader, victim, btc, "3.4")
    w.trade(hedger, honest, btc, "0.5")
    w.hold({"BTC": 80_000})
    _need(int(w.margin(victim).equity) < -20_000 * WAD, "the victim is underwater")
    w.auction.start(victim, keeper_acct, sender=keeper)
    payer = w.account(hedger, 500_000, name="fees")
    _churn(w, hedger, payer)
    ch = protocol.clearinghouse
    _need(
        int(ch.bad_debt_provision()) > int(ch.insurance_fund()) + 10_000 * WAD,
        "insurance must not cover the provision",
    )
    return w, honest, payer


def _churn(w: LiqWorld, who: Any, acct: int) -> None:
    """Three ETH round trips of 50 ETH: ~$450 of fees, left unswept."""
    eth = w.p.market_id("ETH")
    for _ in range(3):
        w.trade(who, acct, eth, "50")
        w.trade(who, acct, eth, "-50")
    _need(_pending_split(w.ch)[1] > 20 * WAD, "the sweep's insurance share is material")


def _withdraw_passes(vault: Any, lp: Any, units: int) -> bool:
    try:
        vault.withdraw.call(units, lp, lp, sender=lp)
    except ContractLogicError as e:
        _need(CAP in str(e), f"unexpected refusal: {e}")
        return False
    return True


def test_r6_2__exit_room_with_an_uncovered_provision(
    protocol, chain, admin, lp, trader, hedger, keeper
):
    """The SDK's `vault_pool` adds pending x insurance_bps to insurance_fund(), which
    already holds that share; the chain's vault_withdraw sweeps once. With a provision
    insurance does not cover, each dollar of insurance over-counted is a dollar of floor
    and of exit room the SDK promises. Safe: `exit_room` is what the chain lets leave
    (the docstring: 'a withdrawal of exit_room passes and one token unit more is
    refused')."""
    _provisioned_world(protocol, chain, admin, lp, trader, hedger, keeper)
    ch, vault = protocol.clearinghouse, protocol.vault
    unit = 10 ** (18 - protocol.system.settlement_decimals)
    room_sdk = int(PerpdexClient.from_protocol(protocol, lp).lp_status().exit_room * 10**6)
    # the chain's rule: the sweep gives insurance its share once (insurance_fund() has it)
    room_chain = _exit_room(ch, unit)
    _need(room_chain > 0, "the exit must not be frozen outright")
    _need(_withdraw_passes(vault, lp, room_chain), "the chain's room passes")
    _need(not _withdraw_passes(vault, lp, room_chain + 1), "one unit more is refused")
    sdk_passes = _withdraw_passes(vault, lp, room_sdk)
    print(
        f"R6-2: lp status exit_room ${room_sdk / 10**6:,.2f}, the chain lets "
        f"${room_chain / 10**6:,.2f} leave (over by ${(room_sdk - room_chain) / 10**6:,.2f}"
        f" = the sweep's insurance share {_usd(_pending_split(ch)[1])}); withdrawing the "
        f"SDK's figure {'passes' if sdk_passes else 'reverts: ' + CAP}"
    )
    assert room_sdk == room_chain and sdk_passes


def test_r6_2__adl_keeper_reads_the_pool_as_the_chain_does(
    protocol, chain, admin, lp, trader, hedger, keeper, tmp_path
):
    """After an LP exit to the limit (BTC over the floor's cap: ADL open) and new unswept
    fees, the keeper's `read_pool` against the AutoDeleveraged event of the ADL it would
    send. Safe: the same pool equity (up to the one second of funding the ADL's mark
    refresh accrues, < $1)."""
    w, honest, payer = _provisioned_world(protocol, chain, admin, lp, trader, hedger, keeper)
    ch, vault = protocol.clearinghouse, protocol.vault
    btc = protocol.market_id("BTC")
    unit = 10 ** (18 - protocol.system.settlement_decimals)
    vault.withdraw(_exit_room(ch, unit), lp, lp, sender=lp)
    _churn(w, hedger, payer)
    pool = AdlKeeper(protocol, keeper, state_path=tmp_path / "adl.json").read_pool()
    equity = _equity(ch)
    tx = protocol.risk.auto_deleverage(honest, btc, sender=keeper)
    ev = tx.decode_logs(protocol.risk.AutoDeleveraged)[0]
    print(
        f"R6-2 keeper: pool equity keeper {_usd(pool.equity)}, chain event "
        f"{_usd(ev.pool_equity)} (off by {_usd(pool.equity - int(ev.pool_equity))}); "
        "pending insurance share "
        f"{_usd(_pending_split(ch)[1])}"
    )
    _need(abs(equity - int(ev.pool_equity)) < WAD, "the rebuilt chain figure is the event's")
    assert abs(pool.equity - int(ev.pool_equity)) < WAD


def test_r6_3__pool_owing_funding_lifts_the_floor_above_equity(
    protocol, h, chain, trader, hedger, lp, admin, keeper
):
    """treasury.vault_withdraw's docstring: exits are measured against 'cash plus its
    unrealised losses and funding in every market', so 'every market's exposure stays
    within 1.5x its cap x pool equity'. The floor counts no funding. $1M pool; longs hold
    3.9 BTC for 30 days (the rate climbs to its 1%/day bound, longs pay the pool), close;
    shorts take 3.9 BTC and hold 20 days: the rate, still positive, now has the pool
    (long) pay ~$48k it has not settled. An LP then exits as far as the rule allows.
    Safe: BTC exposure within 1.5 x cap x pool equity after the exit."""
    ch = protocol.clearinghouse
    btc = protocol.market_id("BTC")
    prices = {s: Decimal(h.price(s)) / WAD for s in protocol.symbols}

    def later(days: int) -> None:
        chain.pending_timestamp += days * DAY
        for s, p in prices.items():
            h.set_price(s, p, admin)
        protocol.ops.refresh([btc], sender=keeper)

    _lp(protocol, h, lp, 1_000_000)
    longs = h.funded_account(trader, 250_000, name="longs")
    h.trade(trader, longs, "BTC", "3.9")
    later(30)
    h.trade(trader, longs, "BTC", "-3.9")
    shorts = h.funded_account(hedger, 250_000, name="shorts")
    h.trade(hedger, shorts, "BTC", "-3.9")
    later(20)
    _need(int(ch.mark(btc)[3]) > 0, "the funding rate is still positive (shorts earn)")
    equity_lens = int(protocol.lens.vault_equity())
    owes = sum(vl.trader_pnl(m) - vl.traders_price_pnl(m) for m in _markets(ch))
    _need(owes > 20_000 * WAD, "the pool owes shorts a material funding sum")
    room = int(PerpdexClient.from_protocol(protocol, lp).lp_status().exit_room * 10**6)
    _need(room > 0, "exits are open")
    protocol.vault.withdraw(room, lp, lp, sender=lp)
    mk = _markets(ch)[btc]
    exposure = vl.exposure(mk)
    equity = int(protocol.lens.vault_equity())
    f = mk.max_vault_exposure
    ratio = Decimal(exposure) / Decimal(equity)
    fee = int(protocol.vault.withdraw_fee_bps())
    print(
        f"R6-3: pool equity {_usd(equity_lens)} before the exit (pool owes {_usd(owes)} of "
        f"funding); LP took ${room / 10**6:,.0f}; BTC "
        f"exposure {_usd(exposure)} = {ratio:.3f} x equity against 1.5 x cap = "
        f"{Decimal(f) * Decimal('1.5') / WAD:.3f}; a 0.5% round then costs stayers "
        f"{ratio * 50:.1f} bp (fee {fee} bp)"
    )
    assert exposure * BPS <= f * equity // WAD * 15_000


def test_r6_floor__parked_loss_holds_exits_and_adl_releases_exactly(
    protocol, h, trader, hedger, lp, admin, keeper
):
    """Refused (freeze): a loss parked in ETH (longs, ETH x1.5, then netted to skew 0)
    lowers pool equity; a BTC long the trade path still admits (cash + BTC's own loss)
    puts BTC over its cap against equity. ADL of the BTC long brings BTC back to that cap
    (no more than a unit of rounding beyond it), a second ADL refuses, and the LP exit
    room is what the SDK says (one unit more refused)."""
    ch, risk, vault = protocol.clearinghouse, protocol.risk, protocol.vault
    btc, eth = protocol.market_id("BTC"), protocol.market_id("ETH")
    _lp(protocol, h, lp, 1_000_000)
    cash = Decimal(_raw_cash(ch)) / WAD
    f = {m: Decimal(int(ch.market_params(m).max_vault_exposure)) / WAD for m in (btc, eth)}
    eth_p = Decimal(h.price("ETH")) / WAD
    eth_size = (cash * f[eth] * Decimal("0.97") / eth_p).quantize(Decimal("0.001"))
    longs = h.funded_account(trader, 1_000_000, name="eth long")
    h.trade(trader, longs, "ETH", eth_size)
    h.set_price("ETH", eth_p * Decimal("1.5"), admin)
    protocol.ops.refresh([eth], sender=keeper)
    shorts = h.funded_account(hedger, 1_000_000, name="eth short")
    h.trade(hedger, shorts, "ETH", -eth_size)
    cash = Decimal(_raw_cash(ch)) / WAD
    whale = h.funded_account(trader, 500_000, name="btc whale")
    btc_p = Decimal(h.price("BTC")) / WAD
    h.trade(
        trader, whale, "BTC", (cash * f[btc] * Decimal("0.97") / btc_p).quantize(Decimal("0.001"))
    )
    mk = _markets(ch)[btc]
    assert vl.exposure(mk) > vl.exposure_cap(mk, _equity(ch))  # over the cap vs equity
    tx = risk.auto_deleverage(whale, btc, sender=keeper)
    ev = tx.decode_logs(risk.AutoDeleveraged)[0]
    mk = _markets(ch)[btc]
    cap = vl.exposure_cap(mk, _equity(ch))
    over = Decimal(cap - vl.exposure(mk)) / WAD
    print(
        f"equity-cap ADL closed {-Decimal(ev.size_delta) / WAD} BTC; now ${over:,.2f} under the cap"
    )
    assert vl.exposure(mk) <= cap
    assert cap - vl.exposure(mk) < 10 * WAD  # closed no more than rounding beyond the need
    with ape.reverts(WITHIN):
        risk.auto_deleverage(whale, btc, sender=keeper)
    room = int(PerpdexClient.from_protocol(protocol, lp).lp_status().exit_room * 10**6)
    assert room > 0
    vault.withdraw(room, lp, lp, sender=lp)
    with ape.reverts(CAP):
        vault.withdraw(1, lp, lp, sender=lp)


# === 3. revoke_operator ====================================================================


def test_r6_4__bots_last_delayed_order_settles_after_a_late_kill__accepted(
    protocol, h, chain, trader, keeper, stranger, lp, admin
):
    """R6-4, accepted (docs/security.md): the bot (an operator) commits a 2 BTC delayed
    order; the owner's kill (`revoke_operator`) lands once the order's settlement window
    opened. The owner's cancel is refused ('settlement window open') and anyone may settle
    the bot's order. Letting the kill (or the owner) cancel it then would hand back the
    free option R4-2 closed: commit through a bot, see the price, kill. Bounded: one
    order per market, filled at a price nobody knew at commit, within its acceptable
    price, the account's margin and loss cap; a kill before the window opens lets the
    owner cancel it."""
    ch, risk = protocol.clearinghouse, protocol.risk
    btc = protocol.market_id("BTC")
    _lp(protocol, h, lp, 1_000_000)
    risk.set_delayed_params(btc, 0, 30, 300, 0, sender=admin)
    acct = h.funded_account(trader, 100_000, name="bot's")
    protocol.ops.set_operator(acct, keeper, True, sender=trader)
    risk.commit_order(acct, btc, 2 * WAD, ANY_PRICE, sender=keeper)
    chain.pending_timestamp += 31
    h.set_price("BTC", Decimal(h.price("BTC")) / WAD, admin)  # a reading after the delay
    tx = protocol.admin.revoke_operator(keeper, [acct], sender=trader)
    _need(not ch.is_operator(acct, keeper), "the kill revoked the bot")
    _need(len(tx.decode_logs(protocol.ops.OperatorSet)) == 1, "one OperatorSet event")
    _need(
        _refused(
            lambda: risk.cancel_delayed_order(acct, btc, sender=trader), "settlement window open"
        ),
        "the owner cannot cancel once the window opened",
    )
    try:
        risk.settle_order(acct, btc, sender=stranger)
    except ContractLogicError as e:
        print(f"settle refused: {e}")
    size = int(ch.position(acct, btc)[0])
    print(
        f"R6-4: after revoke_operator the bot's delayed order filled {Decimal(size) / WAD} BTC "
        "(settled by a stranger; the owner's cancel refused)"
    )
    assert size == 2 * WAD  # the accepted residual: the last order settles


def test_r6_revoke__only_the_owner_and_it_works_while_paused(
    protocol, h, trader, keeper, stranger, admin
):
    """Refused: the operator and a stranger cannot revoke (nor block the owner's batch);
    the owner's kill works while the clearinghouse is paused, logs one OperatorSet per
    revocation (none for a duplicate or an account never operated), and the bot can no
    longer trade once unpaused."""
    ch, gov, ops = protocol.clearinghouse, protocol.admin, protocol.ops
    a = h.funded_account(trader, 10_000, name="a")
    b = h.funded_account(trader, 10_000, name="b")
    c = h.open(trader, "never operated")
    for acct in (a, b):
        ops.set_operator(acct, keeper, True, sender=trader)
    for who in (keeper, stranger):
        with ape.reverts("clearinghouse: not account owner"):
            gov.revoke_operator(keeper, [a], sender=who)
    gov.pause(sender=admin)
    tx = gov.revoke_operator(keeper, [a, a, b, c], sender=trader)
    logs = [(int(e.account), bool(e.allowed)) for e in tx.decode_logs(ops.OperatorSet)]
    assert logs == [(a, False), (b, False)]
    gov.unpause(sender=admin)
    for acct in (a, b):
        assert not ch.is_operator(acct, keeper)
        with ape.reverts("clearinghouse: not authorized"):
            h.trade(keeper, acct, "BTC", "0.001")
