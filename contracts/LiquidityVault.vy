# pragma version ~=0.4.3
"""
@title perpdex liquidity vault
@custom:contract-name LiquidityVault
@license MIT
@notice ERC-4626 vault of the settlement token. LP assets live in the Clearinghouse as
        the pool's cash; the pool is the counterparty of every market order, so its PnL
        (traders' losses and gains, funding, its share of fees, socialised bad debt) is
        the LPs'. `totalAssets` is the pool's equity: cash minus traders' unrealised PnL
        plus funding traders owe, at marks refreshed before every deposit and withdrawal
        (computed by ClearinghouseLens.vault_equity), less the bad debt provisioned for
        accounts under liquidation that insurance cannot cover: a deficit is shared by
        every LP from the moment its liquidation starts, so leaving ahead of the
        settlement does not pass it to the LPs who stay.

        Shares are snekmate's ERC-20. The conversion is snekmate's ERC-4626 formula with
        virtual shares and assets (a decimals offset), which makes a first-depositor
        inflation attack unprofitable. snekmate's `erc4626` module itself is not used
        because it prices shares from `asset.balanceOf(self)`, and our assets are a
        claim inside the Clearinghouse.

        Front-running protection: shares are priced at the current oracle price of
        every market with open interest (`sync_marks` re-reads them all before every
        deposit and withdrawal), so nobody can deposit at a mark the feeds have already
        left. What remains is an LP who sees an oracle update coming (the transaction
        that moves the feeds) and deposits before a move that favours the pool, or
        leaves before one that hurts it. One update round can move every market at
        once (correlated assets), so the largest share-price move it causes is
            sum over markets m of  d_m x |exposure_m| / equity  <=  d x h x sum_m cap_m
        with d_m the feeds' deviation threshold (Chainlink: 0.5%), cap_m the market's
        vault-exposure cap (a fraction of the pool) and h = 1.5 the headroom LP exits
        may use above the caps. With the configured caps (BTC 0.5, ETH 0.5, SOL 0.4:
        sum 1.4) that is 0.5% x 1.5 x 1.4 = 105 bp. Every
        withdrawal pays `withdraw_fee_bps` (105 bp) into the pool, to the LPs who stay,
        so neither trade pays. The fee can never be set below `min_withdraw_fee_bps`,
        that bound, fixed at deployment (perpdex.config checks the configuration;
        docs/architecture.md has the arithmetic).
@custom:security Marks are refreshed (`sync_marks`) before shares are priced. Deposits are
        refused while the pool's equity is not positive (new money would absorb old
        losses). `@nonreentrant` on every function that moves tokens.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed
from ethereum.ercs import IERC4626
from snekmate.auth import ownable
from snekmate.tokens import erc20
from snekmate.utils import math
from .interfaces import IClearinghouse
from .modules import constants as c

implements: IERC20
implements: IERC20Detailed
implements: IERC4626

initializes: ownable
initializes: erc20[ownable := ownable]

exports: (
    erc20.totalSupply,
    erc20.balanceOf,
    erc20.transfer,
    erc20.transferFrom,
    erc20.approve,
    erc20.allowance,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    ownable.owner,
    ownable.transfer_ownership,
)


interface ILens:
    def vault_equity() -> int256: view
    def clearinghouse() -> address: view


event WithdrawFeeUpdated:
    old_fee_bps: uint256
    new_fee_bps: uint256


MAX_WITHDRAW_FEE_BPS: constant(uint256) = 200

# @notice The underlying settlement token.
asset: public(immutable(address))
# @notice The Clearinghouse whose pool this vault owns.
clearinghouse: public(immutable(IClearinghouse))
# @notice The lens that values the pool (ClearinghouseLens.vault_equity).
lens: public(immutable(ILens))
_ASSET: immutable(IERC20)
_SCALE: immutable(uint256)
_DECIMALS_OFFSET: immutable(uint256)

# @notice Fee (bp of the assets redeemed) paid into the pool on every withdrawal.
withdraw_fee_bps: public(uint256)
# @notice Lowest withdrawal fee the owner may set (bp): the largest share-price move one
#         oracle update across every market can cause (see the contract's notice).
min_withdraw_fee_bps: public(immutable(uint256))


@deploy
def __init__(
    lens_: ILens, decimals_offset: uint8, withdraw_fee_bps_: uint256, min_withdraw_fee_bps_: uint256
):
    """
    @param lens_ The ClearinghouseLens of the Clearinghouse whose pool this vault owns (the
           Clearinghouse's admin must then `set_vault` this vault).
    @param decimals_offset Virtual-share offset (shares have asset decimals + offset).
    @param withdraw_fee_bps_ Initial withdrawal fee in basis points.
    @param min_withdraw_fee_bps_ Floor of the fee: feed deviation threshold x the sum of
           the markets' vault-exposure caps, in basis points (perpdex.config computes it).
    """
    assert withdraw_fee_bps_ <= MAX_WITHDRAW_FEE_BPS, "vault: fee too high"
    assert withdraw_fee_bps_ >= min_withdraw_fee_bps_, "vault: fee below the exposure bound"
    min_withdraw_fee_bps = min_withdraw_fee_bps_
    lens = lens_
    clearinghouse_: IClearinghouse = IClearinghouse(staticcall lens_.clearinghouse())
    clearinghouse = clearinghouse_
    asset = staticcall clearinghouse_.settlement_token()
    _ASSET = IERC20(asset)
    _SCALE = staticcall clearinghouse_.SETTLEMENT_SCALE()
    _DECIMALS_OFFSET = convert(decimals_offset, uint256)
    asset_decimals: uint8 = staticcall IERC20Detailed(asset).decimals()
    ownable.__init__()
    erc20.__init__("perpdex LP", "pdLP", asset_decimals + decimals_offset, "perpdex LP", "1")
    self.withdraw_fee_bps = withdraw_fee_bps_
    log WithdrawFeeUpdated(old_fee_bps=0, new_fee_bps=withdraw_fee_bps_)


# --- ERC-4626 views ----------------------------------------------------------------------


@external
@view
def totalAssets() -> uint256:
    """
    @notice The pool's equity in asset units (rounded down), at the cached marks.
    """
    return self._total_assets()


@external
@view
def convertToShares(assets: uint256) -> uint256:
    """
    @notice Shares worth `assets`, rounded down.
    """
    return self._to_shares(assets, False)


@external
@view
def convertToAssets(shares: uint256) -> uint256:
    """
    @notice Assets `shares` are worth before the withdrawal fee, rounded down.
    """
    return self._to_assets(shares, False)


@external
@view
def maxDeposit(receiver: address) -> uint256:
    """
    @notice Unlimited while the pool's equity is positive, else 0 (and 0 for the zero
            address, to which deposits are refused).
    """
    if self._total_assets() == 0 or receiver == empty(address):
        return 0
    return max_value(uint256)


@external
@view
def maxMint(receiver: address) -> uint256:
    """
    @notice Unlimited while the pool's equity is positive, else 0 (and 0 for the zero
            address).
    """
    if self._total_assets() == 0 or receiver == empty(address):
        return 0
    return max_value(uint256)


@external
@view
def maxWithdraw(owner: address) -> uint256:
    """
    @notice Assets `owner` can take out after the fee (exposure caps may still refuse).
    """
    return self._net_of_fee(self._to_assets(erc20.balanceOf[owner], False))


@external
@view
def maxRedeem(owner: address) -> uint256:
    """
    @notice All of `owner`'s shares.
    """
    return erc20.balanceOf[owner]


@external
@view
def previewDeposit(assets: uint256) -> uint256:
    """
    @notice Shares minted for `assets`, rounded down.
    """
    return self._to_shares(assets, False)


@external
@view
def previewMint(shares: uint256) -> uint256:
    """
    @notice Assets needed to mint `shares`, rounded up.
    """
    return self._to_assets(shares, True)


@external
@view
def previewWithdraw(assets: uint256) -> uint256:
    """
    @notice Shares burnt to receive `assets` after the fee, rounded up.
    """
    return self._shares_for_withdraw(assets)


@external
@view
def previewRedeem(shares: uint256) -> uint256:
    """
    @notice Assets received for `shares` after the fee, rounded down.
    """
    return self._net_of_fee(self._to_assets(shares, False))


# --- ERC-4626 actions --------------------------------------------------------------------


@external
@nonreentrant
def deposit(assets: uint256, receiver: address) -> uint256:
    """
    @notice Deposits `assets` into the pool and mints shares to `receiver`.
    @return Shares minted.
    """
    self._sync()
    shares: uint256 = self._to_shares(assets, False)
    self._deposit(assets, shares, receiver)
    return shares


@external
@nonreentrant
def mint(shares: uint256, receiver: address) -> uint256:
    """
    @notice Mints exactly `shares` to `receiver` for the assets they cost (rounded up).
    @return Assets taken.
    """
    self._sync()
    assets: uint256 = self._to_assets(shares, True)
    self._deposit(assets, shares, receiver)
    return assets


@external
@nonreentrant
def withdraw(assets: uint256, receiver: address, owner: address) -> uint256:
    """
    @notice Burns the shares (rounded up) that pay exactly `assets` after the fee.
    @return Shares burnt.
    """
    self._sync()
    shares: uint256 = self._shares_for_withdraw(assets)
    self._withdraw(assets, shares, receiver, owner)
    return shares


@external
@nonreentrant
def redeem(shares: uint256, receiver: address, owner: address) -> uint256:
    """
    @notice Burns `shares` and pays their assets less the fee (rounded down). Shares worth
            less than one token unit are burnt for nothing.
    @return Assets paid.
    """
    self._sync()
    assets: uint256 = self._net_of_fee(self._to_assets(shares, False))
    self._withdraw(assets, shares, receiver, owner)
    return assets


@external
def set_withdraw_fee(fee_bps: uint256):
    """
    @notice Sets the withdrawal fee (bp, at most 200 and at least `min_withdraw_fee_bps`).
            Owner only.
    """
    ownable._check_owner()
    assert fee_bps <= MAX_WITHDRAW_FEE_BPS, "vault: fee too high"
    assert fee_bps >= min_withdraw_fee_bps, "vault: fee below the exposure bound"
    log WithdrawFeeUpdated(old_fee_bps=self.withdraw_fee_bps, new_fee_bps=fee_bps)
    self.withdraw_fee_bps = fee_bps


# --- internals ---------------------------------------------------------------------------


@internal
def _sync():
    extcall clearinghouse.sync_marks()


@internal
def _deposit(assets: uint256, shares: uint256, receiver: address):
    assert assets != 0 and shares != 0, "vault: zero amount"
    assert receiver != empty(address), "vault: zero receiver"
    assert self._total_assets() != 0 or erc20.totalSupply == 0, "vault: pool is insolvent"
    assert extcall _ASSET.transferFrom(
        msg.sender, self, assets, default_return_value=True
    ), "vault: transfer failed"
    assert extcall _ASSET.approve(
        clearinghouse.address, assets, default_return_value=True
    ), "vault: approve failed"
    before: int256 = staticcall clearinghouse.pool_cash()
    extcall clearinghouse.vault_deposit(assets)
    credited: int256 = staticcall clearinghouse.pool_cash() - before
    assert credited == convert(assets * _SCALE, int256), "vault: fee-on-transfer asset"
    erc20._mint(receiver, shares)
    log IERC4626.Deposit(sender=msg.sender, owner=receiver, assets=assets, shares=shares)


@internal
def _withdraw(assets: uint256, shares: uint256, receiver: address, owner: address):
    # shares worth less than one token unit after the fee are burnt for nothing, so an LP
    # can always leave with everything it holds
    assert shares != 0, "vault: zero amount"
    assert receiver != empty(address), "vault: zero receiver"
    if msg.sender != owner:
        erc20._spend_allowance(owner, msg.sender, shares)
    erc20._burn(owner, shares)
    if assets != 0:
        extcall clearinghouse.vault_withdraw(assets, receiver)
    log IERC4626.Withdraw(
        sender=msg.sender, receiver=receiver, owner=owner, assets=assets, shares=shares
    )


@internal
@view
def _total_assets() -> uint256:
    equity: int256 = staticcall lens.vault_equity()
    if equity <= 0:
        return 0
    return convert(equity, uint256) // _SCALE


@internal
@view
def _to_shares(assets: uint256, roundup: bool) -> uint256:
    return math._mul_div(
        assets, erc20.totalSupply + 10**_DECIMALS_OFFSET, self._total_assets() + 1, roundup
    )


@internal
@view
def _to_assets(shares: uint256, roundup: bool) -> uint256:
    return math._mul_div(
        shares, self._total_assets() + 1, erc20.totalSupply + 10**_DECIMALS_OFFSET, roundup
    )


@internal
@view
def _net_of_fee(gross: uint256) -> uint256:
    return gross * (c.BPS - self.withdraw_fee_bps) // c.BPS


@internal
@view
def _shares_for_withdraw(assets: uint256) -> uint256:
    gross: uint256 = math._mul_div(assets, c.BPS, c.BPS - self.withdraw_fee_bps, True)
    return self._to_shares(gross, True)
