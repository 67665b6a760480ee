# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Mock fee-on-transfer ERC-20 token (test double)
@custom:contract-name MockFeeToken
@license MIT
@notice A plain ERC-20 that burns `fee_bps` basis points of every `transfer`
        and `transferFrom`: the receiver gets `amount - fee`. Tests use it to
        check that deposits are credited by the measured balance change, never
        by the requested amount. `mint` is open to everyone.
@custom:security Test double only: anyone can mint. Never deploy it to a live
                 network.
"""

from ethereum.ercs import IERC20

implements: IERC20

from ethereum.ercs import IERC20Detailed

implements: IERC20Detailed


# @dev The basis-point denominator.
_BPS: constant(uint256) = 10_000


# @dev The token name, symbol and decimal places (lower case to match the
# ERC-20 metadata interface, like snekmate's `erc20`).
name: public(immutable(String[25]))
symbol: public(immutable(String[5]))
decimals: public(immutable(uint8))


# @dev The share of every transfer that is burnt, in basis points.
fee_bps: public(immutable(uint256))


# @dev Returns the amount of tokens owned by an `address`.
balanceOf: public(HashMap[address, uint256])


# @dev Returns the remaining allowance of a spender over an owner's tokens.
allowance: public(HashMap[address, HashMap[address, uint256]])


# @dev Returns the amount of tokens in existence.
totalSupply: public(uint256)


@deploy
@payable
def __init__(_name: String[25], _symbol: String[5], _decimals: uint8, _fee_bps: uint256):
    """
    @dev Sets the metadata and the transfer fee.
    @param _name The token name.
    @param _symbol The token symbol.
    @param _decimals The token decimal places.
    @param _fee_bps The share of every transfer that is burnt, in basis points.
    """
    assert _fee_bps <= _BPS, "mock: fee too high"
    name = _name
    symbol = _symbol
    decimals = _decimals
    fee_bps = _fee_bps


@external
def transfer(_to: address, _amount: uint256) -> bool:
    """
    @dev Moves `_amount` from the caller; `_to` receives `_amount` minus the fee.
    @param _to The receiver.
    @param _amount The amount debited from the caller.
    @return bool Always `True` (reverts on failure).
    """
    self._transfer(msg.sender, _to, _amount)
    return True


@external
def transferFrom(_owner: address, _to: address, _amount: uint256) -> bool:
    """
    @dev Moves `_amount` from `_owner` using the caller's allowance; `_to`
         receives `_amount` minus the fee.
    @param _owner The account debited.
    @param _to The receiver.
    @param _amount The amount debited from `_owner`.
    @return bool Always `True` (reverts on failure).
    """
    current: uint256 = self.allowance[_owner][msg.sender]
    if current != max_value(uint256):
        assert current >= _amount, "mock: insufficient allowance"
        # Cannot underflow: checked on the line above.
        self.allowance[_owner][msg.sender] = unsafe_sub(current, _amount)
    self._transfer(_owner, _to, _amount)
    return True


@external
def approve(_spender: address, _amount: uint256) -> bool:
    """
    @dev Sets `_amount` as the allowance of `_spender` over the caller's tokens.
    @param _spender The spender.
    @param _amount The allowance.
    @return bool Always `True`.
    """
    self.allowance[msg.sender][_spender] = _amount
    log IERC20.Approval(owner=msg.sender, spender=_spender, value=_amount)
    return True


@external
def mint(_to: address, _amount: uint256):
    """
    @dev Creates `_amount` tokens for `_to` (no fee). Anyone may call it.
    @param _to The receiver.
    @param _amount The amount to create.
    """
    self.totalSupply += _amount
    # Cannot overflow: a balance never exceeds `totalSupply`, checked above.
    self.balanceOf[_to] = unsafe_add(self.balanceOf[_to], _amount)
    log IERC20.Transfer(sender=empty(address), receiver=_to, value=_amount)


@internal
def _transfer(_owner: address, _to: address, _amount: uint256):
    """
    @dev Debits `_amount` from `_owner`, credits `_amount - fee` to `_to` and
         burns the fee.
    @param _owner The account debited.
    @param _to The receiver.
    @param _amount The amount debited.
    """
    balance: uint256 = self.balanceOf[_owner]
    assert balance >= _amount, "mock: transfer amount exceeds balance"
    fee: uint256 = _amount * fee_bps // _BPS
    # Cannot underflow: `fee <= _amount <= balance` because `fee_bps <= 10_000`.
    received: uint256 = unsafe_sub(_amount, fee)
    self.balanceOf[_owner] = unsafe_sub(balance, _amount)
    # Cannot overflow: a balance never exceeds `totalSupply`.
    self.balanceOf[_to] = unsafe_add(self.balanceOf[_to], received)
    # Cannot underflow: `fee <= _amount <= balance <= totalSupply`.
    self.totalSupply = unsafe_sub(self.totalSupply, fee)
    log IERC20.Transfer(sender=_owner, receiver=_to, value=received)
    if fee != 0:
        log IERC20.Transfer(sender=_owner, receiver=empty(address), value=fee)
