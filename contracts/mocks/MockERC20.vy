# pragma version ~=0.4.3
# pragma nonreentrancy off
"""
@title Mock ERC-20 token (test double)
@custom:contract-name MockERC20
@license MIT
@notice snekmate's `erc20` module with a configurable name, symbol and decimals
        and a `mint` that anyone can call. Used as collateral (e.g. a 6-decimal
        USDC stand-in) in unit, integration and fuzz tests.
@custom:security Test double only: anyone can mint. Never deploy it to a live
                 network.
"""

from ethereum.ercs import IERC20

implements: IERC20

from ethereum.ercs import IERC20Detailed

implements: IERC20Detailed

from snekmate.auth import ownable

initializes: ownable

from snekmate.tokens import erc20

initializes: erc20[ownable := ownable]


# @dev The ERC-20 functions (plus `burn`, `burn_from` and EIP-2612 `permit`)
# of the `erc20` module; the minter and ownership administration is left out
# because `mint` below is open to everyone.
exports: (
    erc20.totalSupply,
    erc20.balanceOf,
    erc20.allowance,
    erc20.transfer,
    erc20.transferFrom,
    erc20.approve,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    erc20.burn,
    erc20.burn_from,
    erc20.permit,
    erc20.nonces,
    erc20.DOMAIN_SEPARATOR,
    erc20.eip712Domain,
)


@deploy
@payable
def __init__(_name: String[25], _symbol: String[5], _decimals: uint8):
    """
    @dev The EIP-712 domain uses `_name` and version "1".
    @param _name The token name.
    @param _symbol The token symbol.
    @param _decimals The token decimal places.
    """
    ownable.__init__()
    erc20.__init__(_name, _symbol, _decimals, _name, "1")


@external
def mint(_to: address, _amount: uint256):
    """
    @dev Creates `_amount` tokens for `_to`. Anyone may call it (test double).
    @param _to The receiver.
    @param _amount The amount to create.
    """
    erc20._mint(_to, _amount)
