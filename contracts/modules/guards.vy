# pragma version ~=0.4.3
"""
@title Account guards: existence, ownership, operators, status
@custom:contract-name guards
@license MIT
@notice The checks every account entry point starts with (the account exists, the caller
        owns it or operates it, it is active or idle) and the self-only guard of the
        engine entry points the extensions call back.
"""

from . import state
from . import constants as c
from . import packing

uses: state


@internal
@view
def _require_exists(account: uint256) -> uint256:
    hdr: uint256 = state._header[account]
    assert hdr & c.ACCOUNT_EXISTS != 0, "clearinghouse: unknown account"
    return hdr


@internal
@view
def _require_owner(account: uint256) -> uint256:
    hdr: uint256 = self._require_exists(account)
    assert msg.sender == packing._account_owner(account), "clearinghouse: not account owner"
    return hdr


@internal
@pure
def _require_active(hdr: uint256):
    """
    @dev The account (its header `hdr`) is not in a liquidation: one copy of the check
         for the cold paths (bytecode: the Risk half holds several).
    """
    assert hdr & c.ACCOUNT_IN_LIQUIDATION == 0, "clearinghouse: account in liquidation"


@internal
@view
def _require_trader_any(account: uint256) -> uint256:
    """
    @dev The sender is the account's owner or an operator; the account's header. For the
         actions a pending delayed order does not freeze (committing and cancelling
         delayed orders, cancelling signed orders).
    """
    hdr: uint256 = self._require_exists(account)
    assert (
        msg.sender == packing._account_owner(account) or state.is_operator[account][msg.sender]
    ), "clearinghouse: not authorized"
    return hdr


@internal
@view
def _require_trader(account: uint256) -> uint256:
    """
    @dev `_require_trader_any`, and no delayed order of the account pending
         (`_require_idle`): the check of every owner or operator trade.
    """
    hdr: uint256 = self._require_exists(account)
    assert (
        msg.sender == packing._account_owner(account) or state.is_operator[account][msg.sender]
    ), "clearinghouse: not authorized"
    # `_require_idle`, inline (bytecode: the hot half has no other use of it)
    assert packing._pending_until(hdr) < block.timestamp, "clearinghouse: delayed order pending"
    return hdr


@internal
@view
def _require_idle(hdr: uint256) -> uint256:
    """
    @dev Refuses what the account's owner or operators start or signed while a delayed
         order of the account may still settle (review 4, R4-2): a trade or fill in any
         market, a withdrawal or transfer out, a loss-cap or margin-mode change. Each
         could make the order's settlement fail once its price is known, a free option;
         so until it settles, is cancelled before its window or expires, only deposits
         come in (Synthetix v3 freezes an account with a pending order the same way).
         Liquidations, auto-deleveraging and loss-cap close-outs do not come here.
         Returns `hdr`.
    """
    assert packing._pending_until(hdr) < block.timestamp, "clearinghouse: delayed order pending"
    return hdr


@internal
@view
def _token_index(token: address) -> uint256:
    idx: uint256 = state._collateral_index[token]
    assert idx != 0, "clearinghouse: unknown token"
    return idx - 1


@internal
@view
def _only_self():
    assert msg.sender == self, "clearinghouse: internal entry point"
