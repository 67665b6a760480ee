# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Mock ERC-20 token with a transfer hook (test double)
@custom:contract-name MockHookToken
@license MIT
@notice A plain ERC-20 whose `transferFrom` first makes one armed call, as an ERC-777
        token calls the sender's `tokensToSend` hook before it moves the tokens. Its
        deployer arms the call (`arm(target, data)`, fired once, by the next
        `transferFrom`) and can make the token call anything (`execute`), e.g. open a
        Clearinghouse account: the token then owns that account, so an armed call to a
        header writer passes the owner checks, as an owner's hook contract would.
        Review 7 R7-1: `deposit` of this token into the account re-enters the
        Clearinghouse in the middle of the deposit (tests/security/test_review7.py).
        A failing armed call reverts the transfer with its own revert data.
@custom:security Test double only: anyone can mint. Never deploy it to a live network.
"""

from ethereum.ercs import IERC20

implements: IERC20

from ethereum.ercs import IERC20Detailed

implements: IERC20Detailed


# @dev The largest armed or executed calldata.
MAX_DATA: constant(uint256) = 1_024


# @dev The token name, symbol and decimal places (lower case to match the
# ERC-20 metadata interface, like snekmate's `erc20`).
name: public(immutable(String[25]))
symbol: public(immutable(String[5]))
decimals: public(immutable(uint8))


# @dev The deployer: the only caller of `arm` and `execute`.
owner: public(immutable(address))


# @dev The armed call (`hook_target` empty: none), fired once by `transferFrom`.
hook_target: public(address)
hook_data: public(Bytes[MAX_DATA])


# @dev How many armed calls `transferFrom` has made.
hooks_fired: public(uint256)


# @dev Returns the amount of tokens owned by an `address`.
balanceOf: public(HashMap[address, uint256])


# @dev Returns the remaining allowance of a spender over an owner's tokens.
allowance: public(HashMap[address, HashMap[address, uint256]])


# @dev Returns the amount of tokens in existence.
totalSupply: public(uint256)


@deploy
@payable
def __init__(_name: String[25], _symbol: String[5], _decimals: uint8):
    """
    @dev Sets the metadata; the deployer becomes `owner`.
    @param _name The token name.
    @param _symbol The token symbol.
    @param _decimals The token decimal places.
    """
    name = _name
    symbol = _symbol
    decimals = _decimals
    owner = msg.sender


@external
def arm(_target: address, _data: Bytes[MAX_DATA]):
    """
    @dev Arms one call of `_target` with `_data`, made by the next `transferFrom`
         before it moves the tokens. An empty `_target` disarms.
    @param _target The contract called from inside `transferFrom`.
    @param _data The calldata.
    """
    assert msg.sender == owner, "mock: not owner"
    self.hook_target = _target
    self.hook_data = _data


@external
def execute(_target: address, _data: Bytes[MAX_DATA]) -> Bytes[256]:
    """
    @dev Calls `_target` with `_data` from this token's address (reverts with the
         callee's revert data).
    @param _target The contract called.
    @param _data The calldata.
    @return Bytes[256] The callee's return data.
    """
    assert msg.sender == owner, "mock: not owner"
    return raw_call(_target, _data, max_outsize=256)


@external
def transfer(_to: address, _amount: uint256) -> bool:
    """
    @dev Moves `_amount` from the caller to `_to` (no hook).
    @param _to The receiver.
    @param _amount The amount.
    @return bool Always `True` (reverts on failure).
    """
    self._transfer(msg.sender, _to, _amount)
    return True


@external
def transferFrom(_owner: address, _to: address, _amount: uint256) -> bool:
    """
    @dev Makes the armed call, if any (once), then moves `_amount` from `_owner` to
         `_to` using the caller's allowance.
    @param _owner The account debited.
    @param _to The receiver.
    @param _amount The amount.
    @return bool Always `True` (reverts on failure).
    """
    target: address = self.hook_target
    if target != empty(address):
        self.hook_target = empty(address)
        self.hooks_fired += 1
        raw_call(target, self.hook_data)
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
    @dev Creates `_amount` tokens for `_to`. Anyone may call it.
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
    @dev Debits `_amount` from `_owner` and credits it to `_to`.
    @param _owner The account debited.
    @param _to The receiver.
    @param _amount The amount.
    """
    balance: uint256 = self.balanceOf[_owner]
    assert balance >= _amount, "mock: transfer amount exceeds balance"
    self.balanceOf[_owner] = unsafe_sub(balance, _amount)
    # Cannot overflow: a balance never exceeds `totalSupply`.
    self.balanceOf[_to] = unsafe_add(self.balanceOf[_to], _amount)
    log IERC20.Transfer(sender=_owner, receiver=_to, value=_amount)
