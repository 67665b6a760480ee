"""Review 3: adversarial tests of auto-deleveraging (ClearinghouseRisk: `auto_deleverage`,
`close_with_adl`) and the vault limits' equity figure (modules/vault_limits.vy).

Findings are `xfail(strict=True)` tests asserting the invariant the attack breaks (they
fail on the current code, figures in the docstring); the rest show an attack refused.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest
from test_signed_orders import World

from perpdex.constants import WAD
from perpdex.sdk import orders as o

BTC = 0
MAX = 2**256 - 1


@pytest.fixture(scope="module")
def w(actors: dict[str, Any], protocol: Any, chain: Any, h: Any, admin: Any) -> World:
    """$1M of LP cash (the BTC exposure cap is 40% of pool equity), and the World."""
    lp = actors["lp"]
    units = h.fund(lp, 1_000_000)
    protocol.token.approve(protocol.vault, units, sender=lp)
    protocol.vault.deposit(units, lp, sender=lp)
    return World(protocol, chain, h, admin, actors)


def _match(w: World, maker: tuple[int, Any], taker: tuple[int, Any], size: float) -> None:
    """`taker` trades `size` (signed, base) with `maker` at the oracle price."""
    mk = w.sign(w.order(maker[0], -size), maker[1])
    tk = w.sign(w.order(taker[0], size), taker[1])
    w.settle(o.MatchedFill(mk, tk, int(abs(size) * WAD)))


def _two_sided_market(w: World, stranger: Any) -> tuple[int, int, int]:
    """A whale long 30 BTC against 28 BTC of shorts (one of them the closer's 1 BTC) and
    2 BTC bought from the pool: the vault is short 2 BTC, half its cap. BTC then rallies
    +20%: the whale is up ~$600k, the shorts down ~$560k, the pool down ~$40k."""
    h, p = w.h, w.p
    whale = h.funded_account(w.taker_owner, 400_000, name="whale")
    shorts = h.funded_account(stranger, 1_000_000, name="shorts")
    closer = h.funded_account(w.maker_owner, 50_000, name="closer")
    _match(w, (shorts, stranger), (whale, w.taker_owner), 27.0)
    _match(w, (closer, w.maker_owner), (whale, w.taker_owner), 1.0)
    h.trade(w.taker_owner, whale, "BTC", "2")
    h.set_price("BTC", 120_000, w.admin)
    p.ops.refresh([BTC], sender=w.submitter)
    return whale, shorts, closer


# --- findings ----------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="finding R3-4: close_with_adl force-closes a winning position while the vault "
    "is within its limits (the estimate counts the whale's whole profit as paid out)",
)
def test_r3_4__close_with_adl_deleverages_a_whale_the_cap_never_needed(
    w: World, stranger: Any
) -> None:
    """close_with_adl's cap estimate is min(cash - the closer's realised profit - the
    whale's WHOLE unrealised profit, K). In a two-sided market the whale's profit is
    mostly paid by losing traders, not the pool, so the estimate can sit far below pool
    equity. Measured: whale long 30 BTC, shorts 28, vault short 2 BTC, BTC +20%. Pool
    equity ~$960k, exposure $240k against a $384k cap: `auto_deleverage` refuses ("vault
    within its limits") and a plain reduce of the closer passes the hot-path cap. Yet
    `close_with_adl` with a 0.01 BTC reduce sees base = $1M - $600k = $400k, cap $160k,
    and force-closes 0.70 BTC of the whale at the oracle price ($84k of a winning
    position shut, its $14k of profit realised early), repeatable by any trader holding
    a position in the market. Nothing checks that the close would have been refused."""
    p = w.p
    whale, _, closer = _two_sided_market(w, stranger)
    with ape.reverts("clearinghouse: vault within its limits"):
        p.risk.auto_deleverage(whale, BTC, sender=w.submitter)
    # the closer's reduce is not refused by any cap
    w.h.trade(w.maker_owner, closer, "BTC", "0.01")
    before = int(w.ch.position(whale, BTC)[0])
    p.risk.close_with_adl(closer, BTC, WAD // 100, MAX, whale, sender=w.maker_owner)
    after = int(w.ch.position(whale, BTC)[0])
    print(f"whale deleveraged {(before - after) / WAD:.4f} BTC while within limits")
    assert after == before, "a whale was deleveraged while the vault was within its limits"


# --- attacks refused ---------------------------------------------------------------------


def test_refused__adl_of_any_position_while_within_limits(w: World, stranger: Any) -> None:
    """Neither a winner nor a loser can be deleveraged while the vault is within its
    limits; a flat account has nothing to deleverage."""
    whale, shorts, closer = _two_sided_market(w, stranger)
    for acct in (whale, shorts, closer):
        with ape.reverts("clearinghouse: vault within its limits"):
            w.p.risk.auto_deleverage(acct, BTC, sender=w.submitter)
    flat = w.h.funded_account(stranger, 1_000, name="flat")
    with ape.reverts("clearinghouse: no position to deleverage"):
        w.p.risk.auto_deleverage(flat, BTC, sender=w.submitter)


def test_refused__close_with_adl_for_someone_else_or_self(w: World, stranger: Any) -> None:
    """close_with_adl needs the closing account's owner or operator, a reduce-only size
    and an ADL target other than the closing account."""
    whale, _shorts, closer = _two_sided_market(w, stranger)
    p = w.p
    with ape.reverts("clearinghouse: not authorized"):
        p.risk.close_with_adl(closer, BTC, WAD // 100, MAX, whale, sender=stranger)
    with ape.reverts("clearinghouse: adl account is the account"):
        p.risk.close_with_adl(closer, BTC, WAD // 100, MAX, closer, sender=w.maker_owner)
    with ape.reverts("clearinghouse: not reduce-only"):
        p.risk.close_with_adl(closer, BTC, -WAD // 100, 0, whale, sender=w.maker_owner)
    with ape.reverts("clearinghouse: not reduce-only"):
        p.risk.close_with_adl(closer, BTC, 2 * WAD, MAX, whale, sender=w.maker_owner)


def test_refused__close_with_adl_cannot_target_the_other_side(w: World, stranger: Any) -> None:
    """Pairing a close with a losing short (the other side of the skew) closes nothing of
    the short: only the closer's own reduce fills."""
    _whale, shorts, closer = _two_sided_market(w, stranger)
    held = int(w.ch.position(shorts, BTC)[0])
    tx = w.p.risk.close_with_adl(closer, BTC, WAD // 100, MAX, shorts, sender=w.maker_owner)
    assert not tx.decode_logs(w.p.risk.AutoDeleveraged)
    assert int(w.ch.position(shorts, BTC)[0]) == held


def test_refused__set_vault_limits_by_a_stranger(w: World, stranger: Any) -> None:
    with ape.reverts():
        w.p.risk.set_vault_limits(WAD, WAD, 0, sender=stranger)
