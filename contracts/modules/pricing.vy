# pragma version ~=0.4.3
"""
@title Fill price and trading fees
@custom:contract-name pricing
@license MIT
@notice Glossary:
          P      oracle price (WAD)
          K      skew = long OI - short OI of trader positions (base WAD); the vault
                 holds -K
          S      skew scale of the market (base WAD)
          d      size of the fill (signed base WAD)
        Skew premium (after Synthetix v3 `calculateFillPrice`): the premium at skew K is
        K / S; a fill moves the skew from K to K + d, and pays the mean of the premiums
        before and after:
            fill = P * (1 + (2K + d) / (2S))
        A trade that reduces |K| is filled better than the oracle. Buyers round up,
        sellers round down.
        Fees: the part of |d| that moves the skew toward zero pays the maker fee, the
        rest the taker fee; fee = ceil(fill * (maker_size * maker + taker_size * taker)).
"""

from . import constants as c
from . import fixed_point as fp


@internal
@pure
def _fill_price(price: uint256, skew: int256, delta: int256, skew_scale: uint256) -> uint256:
    """
    @dev Average skew-adjusted price over the fill; rounds against the trader.
    """
    adj: int256 = fp._smul_div(2 * skew + delta, price, 2 * skew_scale, delta > 0)
    fill: int256 = convert(price, int256) + adj
    assert fill > 0, "clearinghouse: price impact too large"
    return convert(fill, uint256)


@internal
@pure
def _fee(
    fill_price: uint256, skew: int256, delta: int256, maker_fee: uint256, taker_fee: uint256
) -> uint256:
    """
    @dev Maker fee on the part that reduces |skew|, taker fee on the rest; rounds up.
    """
    size: uint256 = convert(abs(delta), uint256)
    maker_size: uint256 = 0
    if (skew > 0 and delta < 0) or (skew < 0 and delta > 0):
        maker_size = min(size, convert(abs(skew), uint256))
    weighted: uint256 = maker_size * maker_fee + (size - maker_size) * taker_fee
    return fp._mul_div(weighted, fill_price, c.WAD * c.WAD, True)
