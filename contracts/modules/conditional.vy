# pragma version ~=0.4.3
"""
@title Conditional orders: stop-market, stop-limit and take-profit
@custom:contract-name conditional
@license MIT
@notice A conditional order is a signed order (perpdex/sdk/orders.py, modules/order_hash.vy)
        with a trigger price. It is never matched (`settle` rebuilds its orders with
        trigger 0, so a conditional order's signature does not verify there): it fires
        against the vault's pool, whole, through the market order's own path
        (`trading._pool_trade`: fill at the oracle price plus the skew premium, fees,
        caps, margin, quorum), once the oracle price has crossed its trigger.
        `execute_order` is permissionless: the matcher or any keeper calls it and earns
        the order's keeper fee.
        One mechanism, four uses; FLAG_TRIGGER_ABOVE says which way the price crosses
        (set: the order arms at oracle price >= trigger; clear: at <= trigger):
          stop-loss of a long        sell, trigger below the price
          take-profit of a long      sell, trigger above (FLAG_TRIGGER_ABOVE)
          stop-loss of a short       buy, trigger above (FLAG_TRIGGER_ABOVE)
          take-profit of a short     buy, trigger below
          stop entry (breakout)      buy above / sell below, not reduce-only
        Stop-market and stop-limit differ only in the limit price, the fill's acceptable
        price (a ceiling for buys, a floor for sells): a stop-limit sets it near the
        trigger and stays unfilled while the fill price is beyond it (it fires later,
        when the price is back within the limit and still past the trigger); a
        stop-market sets it far (the SDK's default: 5% beyond the trigger), so only an
        extreme gap keeps it from filling.
        Reduce-only: the size is clipped to the position, so a stop never flips it;
        with no position on the side the order closes it does not fire ("nothing to
        reduce") and stays live.
        Keeper fee (USD WAD): after the fill, min(keeperFee, settlement balance), rounded
        down to whole settlement-token units, leaves the account as a withdrawal would:
        through the withdrawal gate (`accounts._check_value_out`: initial margin at fresh
        marks without unrealised profit, the loss cap). If the gate refuses it the order
        still fills and the keeper gets nothing (a stop must not fail for its fee, and an
        owner executing its own order cannot take out more than it could withdraw). The
        event says what was paid; `perpdex.sdk.orders.expected_keeper_fee` estimates it.
        Signers: the owner, an operator (who may trade against the vault anyway), or an
        EIP-1271 wallet owner, checked by the code `settle` uses (`order_hash._verify`).
        Once: the fill consumes the order's nonce (the replay bits of order_hash.vy, the
        ones `settle` and the cancels use), so it never fires twice; `cancel_order` and
        `cancel_below` stop it beforehand.
@custom:security The trigger is read at the oracle price with quorum (the same read the
        fill then reuses, same block), never at a caller's price; the executor chooses
        only when, and the signer bounds the price (the limit) and the fee.
"""

from ..interfaces import IClearinghouseEngine
from . import state
from . import guards
from . import marks
from . import settlement
from . import trading
from . import accounts
from . import packing
from . import order_hash as oh

uses: state
uses: guards
uses: settlement
uses: accounts
uses: oh


@external
@nonreentrant
def execute_order(order: oh.Order, v: uint8, r: uint256, s: uint256):
    """
    @notice Executes a triggered conditional order (anyone): checks the signature (the
            account's owner or an operator; an EIP-1271 wallet owner), expiry and
            nonce, that the oracle price (with quorum) has crossed the trigger, then
            fills the whole order (a reduce-only order clipped to the position) against
            the vault with the limit price as the acceptable price, consumes the nonce
            and pays the keeper fee (the contract's notice) to the caller.
    @param order The order as signed (`perpdex.sdk.orders.Order.as_message`); its
           trigger price is not 0.
    @param v The ECDSA signature's v (27 or 28; the owner or an operator signed), or 0
           for an EIP-1271 wallet owner's 64-byte signature (r, s are its two words).
    @param r The signature's r (`perpdex.sdk.orders.split_signature`).
    @param s The signature's s.
    """
    account: uint256 = order.account
    hdr: uint256 = guards._require_exists(account)
    guards._require_active(hdr)
    # signed by the owner or an operator: not while a delayed order may settle (R4-2)
    guards._require_idle(hdr)
    assert order.triggerPrice != 0, "clearinghouse: not a conditional order"
    assert convert(order.expiry, uint256) >= block.timestamp, "clearinghouse: order expired"
    nonce: uint256 = convert(order.nonce, uint256)
    assert nonce >= packing._min_nonce(hdr), "clearinghouse: order nonce cancelled"
    # its replay bits: in the header's window or in an order_bits word (review 8)
    bits: uint256 = 0
    at: uint256 = 0
    in_header: bool = False
    bits, at, in_header = oh._replay_word(account, hdr, nonce)
    # done (filled, cancelled) or partly filled by a matched order with this nonce
    assert packing._replay_bits(bits, at) == 0, "clearinghouse: order done"
    flags: uint256 = convert(order.flags, uint256)
    assert flags & oh.FLAG_POST_ONLY == 0, "clearinghouse: post-only conditional order"
    # the signature, as `settle` checks it (`oh._verify`: bit 0 = v - 27, bit 1 = EIP-1271)
    sig: uint256 = convert(v, uint256)
    if sig == 0:
        sig = 2
    else:
        assert sig == 27 or sig == 28, "clearinghouse: bad signature"
        sig = unsafe_sub(sig, 27)
    digest: bytes32 = oh._digest(oh._domain(), order)
    # an operator trades for the account but never pays itself out of it: the keeper fee
    # is the owner's to promise (review 4, R4-1: a $49k fee on a $100 stop, self-executed)
    assert not oh._verify(account, digest, sig, r, s) or order.keeperFee == 0, (
        "clearinghouse: operator order with keeper fee"
    )
    # the trigger, at the oracle price with quorum (the fill reuses this block's mark)
    m: uint256 = order.market
    price: uint256 = 0
    oflags: uint256 = 0
    index: int256 = 0
    price, oflags, index = extcall IClearinghouseEngine(self).engine_touch(m)
    marks._require_quorum(oflags)
    # FLAG_TRIGGER_ABOVE: price >= trigger; else price <= trigger
    assert price == order.triggerPrice or (price > order.triggerPrice) == (
        flags & oh.FLAG_TRIGGER_ABOVE != 0
    ), "clearinghouse: not triggered"
    delta: int256 = order.size
    if flags & oh.FLAG_REDUCE_ONLY != 0:
        held: int256 = packing._pos_size(state._pos[account][m])
        assert held != 0 and (held > 0) != (delta > 0), "clearinghouse: nothing to reduce"
        # clipped to the position (|held| < 2**95: no overflow), never flipping it
        if delta > 0:
            delta = min(delta, unsafe_sub(0, held))
        else:
            delta = max(delta, unsafe_sub(0, held))

    # consumed before the fill: the order can never fire again (a header word read
    # again: the touch above is an external call)
    if in_header:
        bits = state._header[account]
    oh._store_replay_word(
        account, nonce, packing._with_replay_bits(bits, at, oh.ORDER_DONE), in_header
    )
    fill: uint256 = extcall IClearinghouseEngine(self).engine_pool_trade(
        account, m, delta, order.limitPrice, trading.TRADE_CHECKED
    )
    # at most the settlement balance, in whole token units (paid out exactly)
    fee: uint256 = min(order.keeperFee, convert(max(state._balance[account][0], 0), uint256))
    fee -= fee % state.SETTLEMENT_SCALE
    # value leaving the account: through the withdrawal gate, or not paid
    if fee != 0 and not raw_call(
        self,
        abi_encode(
            account,
            fee,
            msg.sender,
            method_id=method_id("conditional_keeper_fee(uint256,uint256,address)"),
        ),
        revert_on_failure=False,
    ):
        fee = 0
    log state.ConditionalOrderExecuted(
        account=account,
        order=digest,
        keeper=msg.sender,
        size_delta=delta,
        price=fill,
        oracle_price=price,
        keeper_fee=fee,
    )


@external
def conditional_keeper_fee(account: uint256, fee: uint256, keeper: address):
    """
    @notice Self-only (`execute_order`; exported by ClearinghouseOps, where the
            withdrawal gate is compiled already): pays `keeper` a keeper fee of at most
            the account's settlement balance, out of that balance, through the
            withdrawal gate; reverts (nothing paid) if the gate refuses it.
    """
    guards._only_self()
    state._balance[account][0] -= convert(fee, int256)
    accounts._check_value_out(account)
    settlement._pay_out(keeper, fee)
