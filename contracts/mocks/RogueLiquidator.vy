# pragma version ~=0.4.3
"""
@title Test-only LIQUIDATOR_ROLE holder that calls the Clearinghouse's liquidation hooks
       directly, with whatever reward and discount it likes (tests/security)
@custom:contract-name RogueLiquidator
@license MIT
"""


interface IClearinghouse:
    def refresh_account(account: uint256): nonpayable
    def liquidation_begin(account: uint256, keeper_account: uint256, reward: uint256): nonpayable
    def liquidation_reward(account: uint256, keeper_account: uint256, reward: uint256): nonpayable
    def liquidation_transfer(
        account: uint256,
        taker: uint256,
        fraction: uint256,
        discount: uint256,
        penalty_rate: uint256,
    ): nonpayable
    def liquidation_end(account: uint256): nonpayable


@external
def begin(ch: IClearinghouse, account: uint256, keeper_account: uint256, reward: uint256):
    """
    @notice Refreshes the account's marks, then locks it and pays `reward`.
    """
    extcall ch.refresh_account(account)
    extcall ch.liquidation_begin(account, keeper_account, reward)


@external
def reward(ch: IClearinghouse, account: uint256, keeper_account: uint256, reward: uint256):
    """
    @notice Refreshes the account's marks, then pays a further reward.
    """
    extcall ch.refresh_account(account)
    extcall ch.liquidation_reward(account, keeper_account, reward)


@external
def transfer(
    ch: IClearinghouse,
    account: uint256,
    taker: uint256,
    fraction: uint256,
    discount: uint256,
    penalty_rate: uint256,
):
    """
    @notice Refreshes the account's marks, then moves `fraction` of its book to `taker`.
    """
    extcall ch.refresh_account(account)
    extcall ch.liquidation_transfer(account, taker, fraction, discount, penalty_rate)
