"""The price pusher: drives the mock price feeds of a local network or a testnet.

Production feeds are Chainlink's; on anvil and on testnets deployed with `mocks: true`
every market has 3 `MockAggregator`s (at least 2) that anyone may set. The pusher moves them along a
price path, one step per `interval`:

    random-walk  each market's price is multiplied by exp(N(drift, vol)) per step
                 (seeded, so a run can be replayed); the start is the feeds' last answer
    FILE         a CSV with a `t` column (seconds from the start) and one column per
                 market symbol (USD prices); markets missing from the file keep their
                 last answer; the pusher stops at the last row

Each step writes the price to every feed of the market (optionally spread by a few basis
points between sources, strictly within the oracle's deviation bound: feeds that
disagree leave the market without a price quorum, frozen) and then calls
`refresh(markets)` so marks, funding and the oracle's time-weighted price follow. When
the node signs for the pusher's account (anvil's dev accounts: the crash replay, the
devnet, the tests) those transactions go out over raw JSON-RPC (`send_raw`), still one
block each with a padded gas estimate, at about a quarter of ape's cost per transaction.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from perpdex.errors import PerpdexError
from perpdex.sdk import gas

if TYPE_CHECKING:
    from perpdex.deploy import Protocol as Deployment

__all__ = [
    "FEED_DECIMALS",
    "PricePath",
    "PricePusher",
    "PriceSource",
    "RandomWalk",
    "node_signs_for",
    "send_raw",
]

log = logging.getLogger("perpdex.keepers.price_pusher")

FEED_DECIMALS = 8
CENT = Decimal("0.00000001")


class PriceSource(Protocol):
    """Yields the next prices (USD per unit, by symbol) given the current ones."""

    def next(self, current: dict[str, Decimal]) -> dict[str, Decimal] | None:
        """None: the path is over."""
        ...


@dataclass
class RandomWalk:
    """Geometric random walk: price *= exp(gauss(drift, vol)) per step, per market."""

    vol: float = 0.002
    drift: float = 0.0
    seed: int = 0
    symbols: tuple[str, ...] | None = None  # None: every market
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def next(self, current: dict[str, Decimal]) -> dict[str, Decimal] | None:
        out = {}
        for sym, price in sorted(current.items()):
            if self.symbols is not None and sym not in self.symbols:
                continue
            factor = math.exp(self._rng.gauss(self.drift, self.vol))
            out[sym] = (price * Decimal(repr(factor))).quantize(CENT)
        return out


@dataclass
class PricePath:
    """Rows of (t seconds, prices by symbol), e.g. from a CSV file."""

    rows: list[tuple[int, dict[str, Decimal]]]
    _it: Iterator[tuple[int, dict[str, Decimal]]] | None = field(default=None, repr=False)

    @classmethod
    def from_csv(cls, path: Path) -> PricePath:
        try:
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or "t" not in reader.fieldnames:
                    raise PerpdexError(
                        f"{path} needs a header `t,<SYMBOL>,...` (t = seconds from the start)"
                    )
                rows = []
                for n, row in enumerate(reader, start=2):
                    try:
                        prices = {
                            k.strip().upper(): Decimal(v)
                            for k, v in row.items()
                            if k != "t" and v not in (None, "")
                        }
                        rows.append((int(row["t"]), prices))
                    except (ArithmeticError, ValueError) as e:
                        raise PerpdexError(f"{path}:{n}: not a number ({e}); fix the row") from e
        except OSError as e:
            raise PerpdexError(f"cannot read price path {path} ({e})") from e
        if not rows:
            raise PerpdexError(f"{path} has no price rows")
        return cls(rows)

    @property
    def interval(self) -> int:
        """Seconds between the first two rows (0 for a one-row path)."""
        return self.rows[1][0] - self.rows[0][0] if len(self.rows) > 1 else 0

    def next(self, current: dict[str, Decimal]) -> dict[str, Decimal] | None:
        if self._it is None:
            self._it = iter(self.rows)
        row = next(self._it, None)
        return None if row is None else dict(row[1])


# --- raw sends from accounts the node signs for -------------------------------------------

Send = tuple[str, Any, tuple[Any, ...]]  # (what it does, ape contract method, args)
_SIGNS_FOR: dict[str, frozenset[str]] = {}


def node_signs_for(address: str) -> bool:
    """Does the node ape is connected to sign for `address` (`eth_accounts`: anvil's dev
    accounts)? Asked once per node URL."""
    from ape import chain

    from perpdex.keepers.scan import ape_transport, rpc_request

    key = str(getattr(chain.provider, "http_uri", None) or id(chain.provider))
    if key not in _SIGNS_FOR:
        try:
            found = rpc_request(ape_transport(), "eth_accounts") or []
        except Exception:  # a node without the method: nothing is unlocked
            found = []
        _SIGNS_FOR[key] = frozenset(str(a).lower() for a in found)
    return str(address).lower() in _SIGNS_FOR[key]


def send_raw(sender: str, sends: Sequence[Send]) -> None:
    """Mine each `(action, method, args)` from `sender`, an account the node signs for
    (`node_signs_for`), in order over raw JSON-RPC: one transaction per block, each with
    a padded gas estimate (perpdex.sdk.gas), its receipt checked. It skips ape's local
    signing and receipt decoding (~38 ms a transaction against ~8). A revert raises
    PerpdexError with the node's reason."""
    from perpdex.keepers.scan import BatchRefused, ape_transport, rpc_request
    from perpdex.sdk.lite.rpc import poll_receipt

    t = ape_transport()
    for action, method, args in sends:
        tx = {"from": str(sender), "to": str(method.contract.address)}
        data = method.encode_input(*args)
        tx["data"] = data if isinstance(data, str) else "0x" + bytes(data).hex()
        try:
            tx["gas"] = hex(gas.padded_gas(int(rpc_request(t, "eth_estimateGas", tx), 16)))
            txh = rpc_request(t, "eth_sendTransaction", tx)
            receipt = poll_receipt(partial(rpc_request, t, "eth_getTransactionReceipt", txh), 30)
        except BatchRefused as e:
            raise PerpdexError(f"{action} failed: {e}; check the feed and the signer") from e
        if receipt is None or int(receipt["status"], 16) != 1:
            raise PerpdexError(
                f"{action} failed (transaction {txh}, receipt {receipt}); check the node"
            )


class PricePusher:
    """Writes prices to every mock feed of a deployment, then refreshes the markets."""

    def __init__(
        self,
        protocol: Deployment,
        signer: Any,
        source: PriceSource,
        refresh: bool = True,
        spread_bps: int = 0,
    ) -> None:
        self.p = protocol
        self.signer = signer
        self.source = source
        self.refresh = refresh
        self.spread_bps = spread_bps
        self._spread_checked = False
        self.pushed = 0

    def current(self) -> dict[str, Decimal]:
        """The first feed's answer of every market (USD)."""
        return {
            sym: Decimal(int(feeds[0].latestRoundData()[1])) / 10**FEED_DECIMALS
            for sym, feeds in self.p.feeds.items()
        }

    def push(self, prices: dict[str, Decimal]) -> None:
        """Set every feed of the named markets; refresh all markets."""
        from ape.exceptions import ApeException

        self._check_spread()
        sends: list[Send] = []
        for sym, price in prices.items():
            feeds = self.p.feeds.get(sym)
            if feeds is None:
                raise PerpdexError(
                    f"no market {sym!r}; the deployment lists {', '.join(self.p.feeds)}"
                )
            if price <= 0:
                raise PerpdexError(f"{sym} price {price} must be above zero")
            for i, f in enumerate(feeds):
                # sources spread symmetrically around the price: -s, 0, +s basis points
                offset = (i - (len(feeds) - 1) / 2) * self.spread_bps / 10_000
                answer = int(price * Decimal(repr(1 + offset)) * 10**FEED_DECIMALS)
                sends.append((f"{sym} price", f.set_answer, (answer,)))
        if self.refresh:
            sends.append(("mark refresh", self.p.ops.refresh, (list(range(len(self.p.feeds))),)))
        if node_signs_for(self.signer.address):
            send_raw(self.signer.address, sends)
        else:
            for action, method, args in sends:
                try:
                    gas.send(action, method, *args, sender=self.signer)
                except ApeException as e:
                    if method.contract.address == self.p.ops.address:
                        raise
                    raise PerpdexError(
                        f"{action}: cannot set the feed {method.contract.address} ({e}); the "
                        "pusher only drives MockAggregator feeds (local networks and testnets "
                        "with `mocks: true`)"
                    ) from e
        self.pushed += 1
        log.info("pushed %s", ", ".join(f"{s} {p:,.2f}" for s, p in sorted(prices.items())))

    def _check_spread(self) -> None:
        """Refuse a spread that would leave a market's feeds disagreeing: the oracle then
        has no price quorum and the market freezes (once per pusher)."""
        if self.spread_bps == 0 or self._spread_checked:
            return
        for i, (sym, feeds) in enumerate(self.p.feeds.items()):
            bound = int(self.p.oracle.market_config(i).max_deviation_bps)
            # feeds sit at -s .. +s around the price: they span s * (n - 1) bp; strictly
            # below the bound, so rounding of the answers cannot push them past it
            if self.spread_bps * (len(feeds) - 1) >= bound:
                raise PerpdexError(
                    f"--spread-bps {self.spread_bps} spreads the {len(feeds)} {sym} feeds over "
                    f"{self.spread_bps * (len(feeds) - 1)} bp, not below the oracle's "
                    f"{bound} bp deviation bound: the market would lose its price quorum "
                    "and freeze; use a smaller spread"
                )
        self._spread_checked = True

    def step(self) -> dict[str, Decimal] | None:
        """Push the source's next prices; None when the path is over."""
        prices = self.source.next(self.current())
        if prices is None:
            return None
        self.push(prices)
        return prices

    def run(
        self,
        interval: float,
        steps: int | None = None,
        warp: bool = False,
        stop: threading.Event | None = None,
        on_step: Callable[[dict[str, Decimal]], None] | None = None,
    ) -> int:
        """Push every `interval` seconds (with `warp`, on a development chain, move the
        chain's clock by `interval` instead of waiting). Returns the steps pushed."""
        from ape import chain

        stop = stop or threading.Event()
        n = 0
        while not stop.is_set() and (steps is None or n < steps):
            if n and warp:
                chain.pending_timestamp += int(interval)
            prices = self.step()
            if prices is None:
                log.info("price path finished after %d step(s)", n)
                break
            if on_step:
                on_step(prices)
            n += 1
            if not warp and (steps is None or n < steps):
                stop.wait(interval)
        return n
