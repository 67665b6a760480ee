# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Account farm for keeper benchmarks (test double)
@custom:contract-name AccountFarm
@license MIT
@notice Opens many Clearinghouse accounts in one transaction, each funded and holding
        one position, so the keeper scan benchmark (perpdex/devtools/keeper_bench.py) sets up
        10,000 accounts in a few dozen transactions instead of 30,000. The accounts
        belong to this contract; positions alternate long and short so the vault's
        exposure stays flat.
@custom:security Test tooling only: anyone may call `open_many`, which spends this
                 contract's settlement tokens (minted to it by the benchmark). It holds
                 no roles; never grant it any.
"""

from ethereum.ercs import IERC20


interface IClearinghouse:
    def open_account(name: String[32], portfolio: bool) -> uint256: nonpayable
    def deposit(account: uint256, token: address, amount: uint256): nonpayable
    def trade(
        account: uint256, market: uint256, size_delta: int256, acceptable_price: uint256
    ) -> uint256: nonpayable


# @dev Upper bound of accounts per call (gas bounds it well before this).
MAX_BATCH: constant(uint256) = 1_000

# @notice The Clearinghouse the accounts are opened on.
clearinghouse: public(immutable(IClearinghouse))


@deploy
def __init__(_clearinghouse: IClearinghouse):
    """
    @param _clearinghouse The Clearinghouse to open accounts on.
    """
    clearinghouse = _clearinghouse


@external
def open_many(
    _n: uint256,
    _token: IERC20,
    _deposits: DynArray[uint256, MAX_BATCH],
    _market: uint256,
    _size: int256,
):
    """
    @notice Opens `_n` isolated-margin accounts; account k gets `_deposits[k % len]`
            token units and a position of `_size` (negated for every odd k) in `_market`
            (no position when `_size` is 0).
    @param _n How many accounts to open.
    @param _token The settlement token (this contract must hold enough).
    @param _deposits Deposits in token units, cycled.
    @param _market The market every position is in.
    @param _size Base size (WAD) of the even accounts' long; odd ones are short.
    """
    assert len(_deposits) != 0, "farm: no deposits"
    assert extcall _token.approve(
        clearinghouse.address, max_value(uint256), default_return_value=True
    )
    for k: uint256 in range(MAX_BATCH):
        if k == _n:
            break
        acct: uint256 = extcall clearinghouse.open_account("farm", False)
        extcall clearinghouse.deposit(acct, _token.address, _deposits[k % len(_deposits)])
        if _size != 0:
            size: int256 = _size
            bound: uint256 = max_value(uint256)
            if k % 2 == 1:
                size = -_size
                bound = 0
            extcall clearinghouse.trade(acct, _market, size, bound)
