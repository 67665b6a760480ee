# pragma version ~=0.4.3
"""
@title Packing harness (test double)
@custom:contract-name PackingHarness
@license MIT
@notice Exposes the struct-typed pack/unpack pairs of modules/packing.vy so that
        tests/unit/test_packing_pairs.py checks each against the documented layout and the
        SDK's decoders (perpdex/sdk/math/packing.py). No storage, no funds.
"""

from ..modules import packing


@external
@pure
def unpack_pos(w: uint256) -> packing.Position:
    return packing._unpack_pos(w)


@external
@pure
def pack_position(p: packing.Position) -> uint256:
    return packing._pack_position(p)


@external
@pure
def snapshot_funding_delta(snapshot: uint256, index: int256) -> int256:
    return packing._snapshot_funding_delta(snapshot, index)


@external
@pure
def pos_mark_funding_delta(w: uint256, mw: uint256) -> int256:
    return packing._pos_mark_funding_delta(w, mw)


@external
@pure
def unpack_mark(w: uint256) -> packing.Mark:
    return packing._unpack_mark(w)


@external
@pure
def pack_mark_word(m: packing.Mark) -> uint256:
    return packing._pack_mark_word(m)


@external
@pure
def unpack_oi(w: uint256) -> packing.OpenInterest:
    return packing._unpack_oi(w)


@external
@pure
def pack_oi(x: packing.OpenInterest) -> uint256:
    return packing._pack_oi(x)


@external
@pure
def oi_skew(w: uint256) -> int256:
    return packing._oi_skew(w)


@external
@pure
def unpack_pool_sums(w: uint256) -> packing.PoolSums:
    return packing._unpack_pool_sums(w)


@external
@pure
def pack_pool_sums(x: packing.PoolSums) -> uint256:
    return packing._pack_pool_sums(x)


@external
@pure
def unpack_pool(w: uint256) -> packing.Pool:
    return packing._unpack_pool(w)


@external
@pure
def pack_pool_word(x: packing.Pool) -> uint256:
    return packing._pack_pool_word(x)


@external
@pure
def unpack_treasury(w: uint256) -> packing.Treasury:
    return packing._unpack_treasury(w)


@external
@pure
def pack_treasury(x: packing.Treasury) -> uint256:
    return packing._pack_treasury(x)


@external
@pure
def add_protocol_fees(w: uint256, amount: uint256) -> uint256:
    return packing._add_protocol_fees(w, amount)


@external
@pure
def unpack_header(h: uint256) -> packing.AccountHeader:
    return packing._unpack_header(h)


@external
@pure
def pack_header(x: packing.AccountHeader) -> uint256:
    return packing._pack_header(x)


@external
@pure
def with_min_nonce(h: uint256, n: uint256) -> uint256:
    return packing._with_min_nonce(h, n)


@external
@pure
def unpack_delayed_config(w: uint256) -> packing.DelayedConfig:
    return packing._unpack_delayed_config(w)


@external
@pure
def pack_delayed_config(x: packing.DelayedConfig) -> uint256:
    return packing._pack_delayed_config(x)


@external
@pure
def unpack_delayed_order(w: uint256) -> packing.DelayedOrder:
    return packing._unpack_delayed_order(w)


@external
@pure
def pack_delayed_order(x: packing.DelayedOrder) -> uint256:
    return packing._pack_delayed_order(x)


@external
@pure
def unpack_auction(w: uint256) -> packing.Auction:
    return packing._unpack_auction(w)


@external
@pure
def pack_auction(x: packing.Auction) -> uint256:
    return packing._pack_auction(x)


@external
@pure
def unpack_window(w: uint256) -> packing.LiquidationWindow:
    return packing._unpack_window(w)


@external
@pure
def pack_window(x: packing.LiquidationWindow) -> uint256:
    return packing._pack_window(x)


@external
@pure
def unpack_auction_params(w: uint256[4]) -> packing.AuctionParams:
    return packing._unpack_auction_params(w)


@external
@pure
def pack_auction_params(p: packing.AuctionParams) -> uint256[4]:
    return packing._pack_auction_params(p)


@external
@pure
def auction_params_fit(p: packing.AuctionParams) -> bool:
    return packing._auction_params_fit(p)


@external
@pure
def book_header(w: uint256) -> packing.BookHeader:
    return packing._book_header(w)


@external
@pure
def pack_book_header(h: packing.BookHeader) -> uint256:
    return packing._pack_book_header(h)


@external
@pure
def book_shock(w1: uint256, k: uint256) -> int256:
    return packing._book_shock(w1, k)


@external
@pure
def has_bit(bits: uint256, i: uint256) -> bool:
    return packing._has_bit(bits, i)


@external
@pure
def no_bits_from(bits: uint256, i: uint256) -> bool:
    return packing._no_bits_from(bits, i)


@external
@pure
def order_bits(state_: uint256, nonce: uint256) -> (uint256, uint256):
    return packing._order_word(nonce), packing._order_state_bits(state_, nonce)


@external
@pure
def unpack_oracle_config(w: uint256) -> packing.OracleConfig:
    return packing._unpack_oracle_config(w)


@external
@pure
def pack_oracle_config(x: packing.OracleConfig) -> uint256:
    return packing._pack_oracle_config(x)


@external
@pure
def oracle_config_with_sequencer(w: uint256, has_sequencer: bool) -> uint256:
    return packing._oracle_config_with_sequencer(w, has_sequencer)


@external
@pure
def unpack_oracle_source(w: uint256) -> packing.OracleSource:
    return packing._unpack_oracle_source(w)


@external
@pure
def pack_oracle_source(x: packing.OracleSource) -> uint256:
    return packing._pack_oracle_source(x)


@external
@pure
def unpack_observation(w: uint256) -> packing.Observation:
    return packing._unpack_observation(w)


@external
@pure
def pack_observation(x: packing.Observation) -> uint256:
    return packing._pack_observation(x)


@external
@pure
def unpack_oracle_globals(w: uint256) -> packing.OracleGlobals:
    return packing._unpack_oracle_globals(w)


@external
@pure
def pack_oracle_globals(x: packing.OracleGlobals) -> uint256:
    return packing._pack_oracle_globals(x)


@external
@pure
def oracle_sequencer_word(w: uint256) -> uint256:
    return packing._oracle_sequencer_word(w)


@external
@pure
def loss_window(w: uint256) -> (uint256, uint256):
    return packing._loss_window_start(w), packing._loss_window_used(w)


@external
@pure
def pack_loss_window(start: uint256, used: uint256) -> uint256:
    return packing._pack_loss_window(start, used)


# review 11b: the accessors the packing11 change put on hot and cold paths


@external
@pure
def header_fields(h: uint256) -> (uint256, uint256):
    return packing._pending_until(h), packing._min_nonce(h)


@external
@pure
def account_owner(account: uint256) -> address:
    return packing._account_owner(account)


@external
@pure
def order_place(nonce: uint256) -> (uint256, uint256):
    return packing._order_word(nonce), packing._order_bit_at(nonce)


@external
@pure
def bit_walk(bits: uint256, i: uint256) -> (bool, bool):
    return packing._has_bit(bits, i), packing._no_bits_from(bits, i)


@external
@pure
def book_word0_fits(w0: uint256) -> bool:
    return packing._book_word0_fits(w0)
