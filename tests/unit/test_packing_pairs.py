"""The struct-typed pack/unpack pairs of contracts/modules/packing.vy (issue 10 item 2).

Each pair is run on chain through contracts/mocks/PackingHarness.vy and checked three ways:
the unpacked fields equal the SDK's decoders (perpdex/sdk/math/packing.py) where the SDK
mirrors the word, or the layout written out here from packing.vy's comments where it does
not; pack(unpack(w)) == w for random valid words; and packing a field one past its width
reverts (or reports "does not fit") instead of spilling into its neighbour.
"""

from __future__ import annotations

import random
from typing import Any

import ape
import pytest

from perpdex.sdk.math import packing as sdk

SAMPLES = 6


@pytest.fixture(scope="module")
def hx(project: Any, admin: Any) -> Any:
    return project.PackingHarness.deploy(sender=admin)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return random.Random(request.node.name)


def _u(rng: random.Random, bits: int) -> int:
    return rng.getrandbits(bits)


def _i(rng: random.Random, bits: int) -> int:
    return rng.randrange(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1))


def _fields(x: Any) -> dict[str, Any]:
    return dict(x.items())


def _word(fields: list[tuple[int, int]]) -> int:
    """(value, bit offset) pairs -> the word."""
    w = 0
    for value, at in fields:
        w |= value << at
    return w


def test_position_matches_the_sdk(hx: Any, rng: random.Random) -> None:
    for _ in range(SAMPLES):
        w = sdk.pack_pos(_i(rng, 96), _i(rng, 96), _u(rng, 64))
        p = hx.unpack_pos(w)
        assert (p.size, p.cost, p.funding_snapshot) == (
            sdk.pos_size(w),
            sdk.pos_cost(w),
            sdk.pos_snapshot(w),
        )
        assert hx.pack_position(_fields(p)) == w
        index = _i(rng, 72)
        assert hx.snapshot_funding_delta(p.funding_snapshot, index) == sdk.pos_funding_delta(
            w, index
        )


def test_pos_mark_funding_delta_is_the_two_accessors_in_one(hx: Any, rng: random.Random) -> None:
    # the margin scan's one-call form of pos_funding_delta(w, mark_index(mw))
    for _ in range(SAMPLES):
        w = sdk.pack_pos(_i(rng, 96), _i(rng, 96), _u(rng, 64))
        index = _i(rng, 72)
        mw = sdk.pack_mark(_u(rng, 88), _u(rng, 40), index, _i(rng, 56) * 1000)
        assert hx.pos_mark_funding_delta(w, mw) == sdk.pos_funding_delta(w, index)


def test_mark_matches_the_sdk(hx: Any, rng: random.Random) -> None:
    for _ in range(SAMPLES):
        tag = _u(rng, 6)
        w = sdk.pack_mark(_u(rng, 88), _u(rng, 34) | tag << 34, _i(rng, 72), _i(rng, 56) * 1000)
        m = hx.unpack_mark(w)
        ref = sdk.unpack_mark(w)
        assert (m.price, m.touched_at, m.block_tag, m.funding_index, m.funding_rate) == (
            ref.price,
            ref.touched_at,
            tag,
            ref.index,
            ref.rate,
        )
        assert hx.pack_mark_word(_fields(m)) == w


def test_open_interest_pool_sums_pool_and_treasury(hx: Any, rng: random.Random) -> None:
    for _ in range(SAMPLES):
        lo, hi = _u(rng, 128), _u(rng, 128)
        w = sdk.pack_u128(lo, hi)
        assert _fields(hx.unpack_oi(w)) == {"long_oi": lo, "short_oi": hi}
        assert hx.oi_skew(w) == lo - hi
        assert hx.pack_oi({"long_oi": lo, "short_oi": hi}) == w
        assert _fields(hx.unpack_treasury(w)) == {"insurance_fund": lo, "protocol_fees": hi}
        assert hx.pack_treasury({"insurance_fund": lo, "protocol_fees": hi}) == w
        assert hx.add_protocol_fees(w // 4, 7) == sdk.pack_u128(
            (w // 4) & (2**128 - 1), (w // 4 >> 128) + 7
        )

        cost, fund = _i(rng, 128), _i(rng, 128)
        s = sdk.pack_i128(cost, fund)
        assert _fields(hx.unpack_pool_sums(s)) == {"sum_cost": cost, "sum_funding": fund}
        assert hx.pack_pool_sums({"sum_cost": cost, "sum_funding": fund}) == s

        pool = sdk.pack_pool(cost, hi)
        assert tuple(_fields(hx.unpack_pool(pool)).values()) == sdk.unpack_pool(pool)
        assert hx.pack_pool_word({"cash": cost, "pending_fees": hi}) == pool
    with ape.reverts("clearinghouse: value too large"):
        hx.pack_oi({"long_oi": 2**128, "short_oi": 0})


def test_loss_cap_window(hx: Any, rng: random.Random) -> None:
    """state.loss_cap_window[m]: start << 128 | used, as the SDK's `force_close` reads it
    (perpdex/sdk/math/trading.py)."""
    for _ in range(SAMPLES):
        start, used = _u(rng, 128), _u(rng, 128)
        w = _word([(used, 0), (start, 128)])
        assert hx.loss_window(w) == (start, used)
        assert hx.pack_loss_window(start, used) == w
    with ape.reverts("clearinghouse: value too large"):
        hx.pack_loss_window(0, 2**128)
    with ape.reverts("clearinghouse: value too large"):
        hx.pack_loss_window(2**128, 0)


def test_account_header(hx: Any, rng: random.Random) -> None:
    for _ in range(SAMPLES):
        f = {
            "flags": _u(rng, 8),
            "positions": _u(rng, 32),
            "collaterals": _u(rng, 8),
            "position_count": _u(rng, 8),
            "pending_count": _u(rng, 8),
            "pending_until": _u(rng, 40),
            "min_nonce": _u(rng, 64),
        }
        w = _word([(v, at) for v, at in zip(f.values(), (0, 8, 40, 48, 56, 64, 192), strict=True)])
        assert _fields(hx.unpack_header(w)) == f
        assert hx.pack_header(f) == w
        assert sdk.positions_bitmap(w) == f["positions"]
        assert sdk.collateral_bitmap(w) == f["collaterals"]
        assert sdk.pending_until(w) == f["pending_until"]
        assert hx.with_min_nonce(w, 5) == (w & (2**192 - 1)) | 5 << 192
    with ape.reverts("clearinghouse: value too large"):
        hx.pack_header({**f, "positions": 2**32})


def test_delayed_words(hx: Any, rng: random.Random) -> None:
    for _ in range(SAMPLES):
        cfg = {
            "min_delay": _u(rng, 32),
            "max_age": _u(rng, 32),
            "keeper_fee": _u(rng, 128),
            "mode": _u(rng, 2),
        }
        w = _word([(v, at) for v, at in zip(cfg.values(), (0, 32, 64, 192), strict=True)])
        assert _fields(hx.unpack_delayed_config(w)) == cfg
        assert hx.pack_delayed_config(cfg) == w

        size = _i(rng, 96)
        order = {
            "size_delta": size,
            "acceptable_price": _u(rng, 96),
            "commit_time": _u(rng, 40),
            "keeper_fee_units": _u(rng, 24),
        }
        o = _word(
            [
                (size % 2**96, 0),
                (order["acceptable_price"], 96),
                (order["commit_time"], 192),
                (order["keeper_fee_units"], 232),
            ]
        )
        assert _fields(hx.unpack_delayed_order(o)) == order
        assert hx.pack_delayed_order(order) == o
    # a price above the field is stored as "no limit"
    no_limit = hx.pack_delayed_order({**order, "acceptable_price": 2**200})
    assert hx.unpack_delayed_order(no_limit).acceptable_price == 2**96 - 1
    with ape.reverts("clearinghouse: value too large"):
        hx.pack_delayed_config({**cfg, "max_age": 2**32})


def test_auction_word_and_window(hx: Any, rng: random.Random) -> None:
    for _ in range(SAMPLES):
        a = {
            "started_at": _u(rng, 40),
            "lot": _u(rng, 64),
            "kick_notional": _u(rng, 96),
            "until": _u(rng, 32),
            "step": _u(rng, 16),
            "active": rng.random() < 0.5,
            "critical": rng.random() < 0.5,
        }
        w = _word(
            [
                (a["started_at"], 0),
                (a["lot"], 40),
                (a["kick_notional"], 104),
                (a["until"], 200),
                (a["step"], 232),
                (int(a["active"]), 248),
                (int(a["critical"]), 249),
            ]
        )
        assert _fields(hx.unpack_auction(w)) == a
        assert hx.pack_auction(a) == w
        win = {"start": _u(rng, 40), "used": _u(rng, 200)}
        ww = win["start"] | win["used"] << 40
        assert _fields(hx.unpack_window(ww)) == win
        assert hx.pack_window(win) == ww
    with ape.reverts():
        hx.pack_auction({**a, "lot": 2**64})


AUCTION_WIDTHS = {
    # field: (word, bit offset, width)
    "target_health": (0, 0, 64),
    "critical_health": (0, 64, 64),
    "min_step": (0, 128, 64),
    "max_step": (0, 192, 64),
    "start_discount": (1, 0, 64),
    "max_discount": (1, 64, 64),
    "cusp": (1, 128, 64),
    "penalty": (1, 192, 64),
    "keeper_tip": (2, 0, 128),
    "keeper_cap": (2, 128, 128),
    "small_account": (3, 0, 96),
    "keeper_fee": (3, 96, 64),
    "cooldown": (3, 160, 32),
    "duration": (3, 192, 32),
    "window": (3, 224, 32),
}


def test_auction_params(hx: Any, rng: random.Random) -> None:
    for _ in range(SAMPLES):
        p = {name: _u(rng, width) for name, (_, _, width) in AUCTION_WIDTHS.items()}
        words = [0, 0, 0, 0]
        for name, (i, at, _) in AUCTION_WIDTHS.items():
            words[i] |= p[name] << at
        got = _fields(hx.unpack_auction_params(words))
        assert got == p
        assert list(hx.pack_auction_params(p)) == words
        assert hx.auction_params_fit(p)
    for name, (_, _, width) in AUCTION_WIDTHS.items():
        assert not hx.auction_params_fit({**p, name: 2**width}), name


def test_risk_book_header_and_shocks(hx: Any, rng: random.Random) -> None:
    h = {"n_markets": 5, "n_scenarios": 9, "floor_bps": 300, "mmr_bps": 5_000}
    w = hx.pack_book_header(h)
    assert w == 5 | 9 << 8 | 300 << 16 | 5_000 << 32
    assert _fields(hx.book_header(w)) == h
    shocks = [_i(rng, 16) for _ in range(16)]
    w1 = _word([(x % 2**16, 16 * k) for k, x in enumerate(shocks)])
    assert [hx.book_shock(w1, k) for k in range(16)] == shocks


def test_bitmaps_and_order_bits(hx: Any) -> None:
    bits = 0b1010_0100
    assert [m for m in range(10) if hx.has_bit(bits, m)] == [2, 5, 7]
    assert not hx.no_bits_from(bits, 7) and hx.no_bits_from(bits, 8)
    # nonce 300: word 2, bits 88-89 of it (2 bits per nonce, 128 nonces per word)
    assert hx.order_bits(2, 300) == (2, 2 << 88)


def _addr(rng: random.Random) -> str:
    return "0x" + f"{_u(rng, 160):040x}"


def _lower(x: Any) -> str:
    return str(x).lower()


# OracleRouter.vy's own words (packing.vy "oracle router words"): field -> (bit, width)
ORACLE_WORDS: dict[str, dict[str, tuple[int, int]]] = {
    "config": {
        "min_price": (0, 96),
        "max_price": (96, 96),
        "max_deviation_bps": (192, 16),
        "twap_window": (208, 24),
        "min_fresh": (232, 8),
        "count": (240, 8),
    },
    "source": {"decimals": (160, 8), "factor": (168, 64), "max_age": (232, 24)},
    "observation": {
        "last_price": (0, 96),
        "ema": (96, 96),
        "last_ts": (192, 40),
        "snapshot_nonce": (232, 24),
    },
    "globals": {"grace_period": (160, 64), "market_count": (224, 8), "next_nonce": (232, 24)},
}


def _oracle_word(kind: str, fields: dict[str, Any]) -> int:
    w = _word([(fields[k], at) for k, (at, _) in ORACLE_WORDS[kind].items()])
    for name in ("feed", "sequencer_feed"):
        if name in fields:
            w |= int(fields[name], 16)
    if fields.get("has_sequencer"):
        w |= 1 << 248
    return w


def test_oracle_router_words(hx: Any, rng: random.Random) -> None:
    pairs = {
        "config": (hx.unpack_oracle_config, hx.pack_oracle_config),
        "source": (hx.unpack_oracle_source, hx.pack_oracle_source),
        "observation": (hx.unpack_observation, hx.pack_observation),
        "globals": (hx.unpack_oracle_globals, hx.pack_oracle_globals),
    }
    for _ in range(SAMPLES):
        for kind, (unpack, pack) in pairs.items():
            f: dict[str, Any] = {k: _u(rng, width) for k, (_, width) in ORACLE_WORDS[kind].items()}
            if kind == "config":
                f["has_sequencer"] = rng.random() < 0.5
            if kind == "source":
                f["feed"] = _addr(rng)
            if kind == "globals":
                f["sequencer_feed"] = _addr(rng)
            w = _oracle_word(kind, f)
            got = {k: (_lower(v) if isinstance(v, str) else v) for k, v in unpack(w).items()}
            assert got == f, kind
            assert pack(f) == w, kind
            # a field at its widest fills its own bits and nothing else (the router bounds
            # every field before packing: packing.vy says how)
            for name, (at, width) in ORACLE_WORDS[kind].items():
                full = {**{k: 0 for k in ORACLE_WORDS[kind]}, name: 2**width - 1}
                for addr in ("feed", "sequencer_feed"):
                    if addr in f:
                        full[addr] = "0x" + "00" * 20
                if kind == "config":
                    full["has_sequencer"] = False
                assert pack(full) == (2**width - 1) << at, (kind, name)
        cfg = _word([(_u(rng, width), at) for at, width in ORACLE_WORDS["config"].values()])
        assert hx.oracle_config_with_sequencer(cfg, True) == cfg | 1 << 248
        assert hx.oracle_config_with_sequencer(cfg | 1 << 248, False) == cfg
        # a snapshot's last word: the globals' feed and grace period, not count or nonce
        glb = _oracle_word("globals", f)
        assert hx.oracle_sequencer_word(glb) == glb & (2**224 - 1)
