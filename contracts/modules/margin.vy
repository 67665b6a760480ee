# pragma version ~=0.4.3
"""
@title Margin engine: isolated and portfolio (scenario) requirements
@custom:contract-name margin
@license MIT
@notice Glossary, per position i (size s_i, price P_i):
          N_i     notional |s_i| * P_i (USD WAD, rounded up)
          m_i     initial margin ratio = imr_min + imr_slope * |s_i| / margin_scale
                  (IM_i = |s_i|*P_i*imr_min and N_i*imr_slope*|s_i|/margin_scale, each
                  rounded up once)
                  (grows with size, after Synthetix v3 `calculateRequiredMargins`)
          L_k     loss of the whole book in stress scenario k, whose shocks x_ik (bp)
                  move every market at once:  L_k = -sum_i s_i * P_i * x_ik
        Isolated mode   IM = sum_i N_i * m_i
        Portfolio mode  IM = min(IM_isolated, max(max_k L_k, f * sum_i N_i) + A)
                        A  = sum_i N_i * imr_slope * |s_i| / margin_scale (size add-on)
                        f  = floor ratio: a perfectly hedged book still posts margin
        Maintenance     MM = IM * mmr (one governed fraction for both modes)
        Properties this gives (tests/fuzz prove them): portfolio <= isolated for any
        book; equal for a single position (the book must hold, for every market, a
        scenario moving it down and one moving it up by at least imr_min, and
        f <= imr_min; set_risk_book enforces both); monotone when the book is scaled
        up; never below the floor.

        The scenarios and margin ratios form the *risk book*, stored as contract code
        (SSTORE2): a margin check copies 8 markets' slots of the book at once (512
        bytes of code cost less than two storage reads; `gates._scan` moves the window
        only for an account holding a market past it) instead of reading words per
        market. The book has a fixed size, 2,592 bytes, whatever the number of markets
        listed (unused slots are zero). Layout (byte offsets into the data, after one STOP):
          [0, 32)              header: n_markets u8 | n_scenarios u8 | floor_bps u16 |
                               mmr_bps u16  (bits, low first)
          [32 + 64m, +32)      market m word 0: imr_min_bps u16 | imr_slope_bps u16 |
                               margin_scale u128 (base WAD)
          [64 + 64m, +32)      market m word 1: 16 shocks, int16 (two's complement)
                               bp each, scenario k at bits 16k; unused slots are 0
          [2080 + 32k, +32)    scenario k name (bytes32)
"""

from . import constants as c
from . import fixed_point as fp
from . import packing

HEADER_BYTES: constant(uint256) = 32
MARKET_BYTES: constant(uint256) = 64
MAX_BOOK_BYTES: constant(uint256) = 2_592  # 32 + 64 * 32 + 32 * 16
# the book's word layouts are in modules/packing.vy ("risk book"); the margin scan
# (gates._scan) reads these masks to unpack word 0's fields for `_isolated`
MASK_16: constant(uint256) = packing.MASK_16
MASK_128: constant(uint256) = packing.MASK_128


@internal
@pure
def _collateral_worth(balance: uint256, price: uint256, haircut: uint256) -> uint256:
    """
    @dev What `balance` of a collateral token counts for in margin: its value at `price`
         less the haircut (WAD), rounded down (against the account).
    """
    return fp._mul_div(balance, price * (c.WAD - haircut), c.WAD * c.WAD, False)


@internal
@pure
def _isolated(
    abs_value: uint256,
    abs_size: uint256,
    imr_min_bps: uint256,
    imr_slope_bps: uint256,
    margin_scale: uint256,
) -> (uint256, uint256):
    """
    @dev Isolated initial margin of one position and its size-scaled part, both
         rounded up: the formula's one definition (the margin scan `gates._scan`,
         `gates._lone_isolated_margin` (the one-position check of the vault trade and of
         a signed fill), the Lens and the SDK mirror call it). `abs_value` is |s| * P
         unscaled (WAD^2): the imr_min part rounds once from it, exactly like a scenario
         loss, so a lone position's portfolio requirement (a shock of imr_min) equals its
         isolated one to the wei; the size part takes the notional N = ceil(abs_value /
         WAD), rounded here (a caller that also sums notionals rounds them alike).
         `abs_size` is |s|; `imr_min_bps`, `imr_slope_bps`, `margin_scale` are the market's risk-book word 0
         fields (packing's `_book_*` accessors; the scan, which holds the word in its
         loop, unpacks them inline: the fields, not the word, so that this stays the one
         formula and the scan pays no accessor calls). Unchecked arithmetic (the hot
         path), on bounds every caller keeps: |s| < 2**95 (a packed position's size; the
         Lens asserts it of quoted sizes) and P < 2**88 (MAX_PRICE), so abs_value <
         2**183, notional < 2**124, and with ratios below 2**16 every product stays below
         2**235. margin_scale != 0: `set_risk_book` refuses a book with a zero one.
    """
    scale: uint256 = unsafe_mul(c.BPS, margin_scale)
    # N = ceil(abs_value / WAD), in the one expression that uses it
    slope: uint256 = unsafe_div(
        unsafe_add(
            unsafe_mul(
                unsafe_mul(unsafe_div(unsafe_add(abs_value, c.WAD - 1), c.WAD), imr_slope_bps),
                abs_size,
            ),
            unsafe_sub(scale, 1),
        ),
        scale,
    )
    base: uint256 = unsafe_div(
        unsafe_add(unsafe_mul(abs_value, imr_min_bps), c.WAD * c.BPS - 1), c.WAD * c.BPS
    )
    return unsafe_add(base, slope), slope


@internal
@pure
def _combine(
    isolated: uint256,
    worst_loss_raw: int256,
    gross_raw: uint256,
    addon: uint256,
    floor_bps: uint256,
    portfolio: bool,
) -> uint256:
    """
    @dev Initial requirement of the account for its mode.
         `worst_loss_raw` is max_k sum_i -s_i * P_i * x_ik (WAD^2 * bp);
         `gross_raw` is sum_i |s_i| * P_i (WAD^2). Both round up.
    """
    if not portfolio:
        return isolated
    # worst_loss_raw < 2**215 and gross_raw * floor_bps < 2**207 (16 positions of value
    # < 2**191, shocks and ratios < 2**16): plain arithmetic cannot overflow
    worst: uint256 = 0
    if worst_loss_raw > 0:
        worst = unsafe_div(
            unsafe_add(convert(worst_loss_raw, uint256), c.WAD * c.BPS - 1), c.WAD * c.BPS
        )
    floor_req: uint256 = unsafe_div(
        unsafe_add(unsafe_mul(gross_raw, floor_bps), c.WAD * c.BPS - 1), c.WAD * c.BPS
    )
    return min(isolated, max(worst, floor_req) + addon)


@internal
@view
def _book_word(book: address, offset: uint256) -> uint256:
    """
    @dev One 32-byte word of the book at `offset` bytes into its data (after the STOP).
    """
    # a 32-byte slice converts as a whole (no extract32 bounds checks); the slice itself
    # still reverts past the end of the code
    return convert(convert(slice(book.code, 1 + offset, 32), bytes32), uint256)


@internal
@view
def _book_header_of(book: address) -> packing.BookHeader:
    """
    @dev The header (word 0) of the published book `book`, unpacked.
    """
    return packing._book_header(self._book_word(book, 0))
