"""Signed conditional orders on disk: one JSON object per line.

`perpdex orders stop|take-profit` appends the orders a trader signs to a file (default
`.orders/<network>.jsonl`); `perpdex keeper orders` reads that file, or every `*.jsonl`
file of a directory (several traders, one file each), and executes the orders whose
trigger the oracle price has crossed. Nothing here is secret: a signed order authorises
only what it says, and anyone may execute it once triggered (that is the point).

A line:

    {"version": 1, "chain_id": 31337, "clearinghouse": "0x...", "digest": "0x...",
     "symbol": "BTC", "created": 1700000000,
     "order": {"account": "...", "market": "0", "size": "-1000000000000000000", ...},
     "signature": "0x<130 hex digits>"}

integers as decimal strings (WAD values do not fit a JSON double). Reading never fails
on one bad line (a half-written last line, a hand edit): it is skipped and reported, so a
keeper keeps serving every other order. The same order twice counts once (by digest).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perpdex.errors import PerpdexError
from perpdex.sdk import orders as o

__all__ = [
    "DEFAULT_DIR",
    "STORE_VERSION",
    "StoredOrder",
    "append",
    "default_path",
    "load",
    "next_nonce",
]

STORE_VERSION = 1
DEFAULT_DIR = Path(".orders")
# Conditional orders take nonces from 2**32 up: an account's nonces are one space shared
# with the matcher's orders (which count from 0), and a nonce consumed by either kills
# the other's order with that nonce. `cancel_below` under 2**32 leaves the stops alive.
NONCE_BASE = 2**32


def default_path(network: str) -> Path:
    """Where `perpdex orders` keeps a network's orders (`network`: the manifest key)."""
    return DEFAULT_DIR / f"{network}.jsonl"


@dataclass(frozen=True)
class StoredOrder:
    """A signed conditional order for one deployment."""

    signed: o.SignedOrder
    chain_id: int
    clearinghouse: str
    symbol: str = ""
    created: int = 0
    source: str = ""  # file:line it was read from

    @property
    def order(self) -> o.Order:
        return self.signed.order

    @property
    def digest(self) -> bytes:
        return o.order_digest(self.order, self.chain_id, self.clearinghouse)

    @property
    def id(self) -> str:
        """The order's EIP-712 digest, 0x hex: its id on chain (events) and here."""
        return "0x" + self.digest.hex()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STORE_VERSION,
            "chain_id": self.chain_id,
            "clearinghouse": self.clearinghouse,
            "digest": self.id,
            "symbol": self.symbol,
            "created": self.created,
            **o.signed_to_json(self.signed),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "") -> StoredOrder:
        """A record of `to_json`; OrderError when it is malformed or its digest does not
        match its fields."""
        if data.get("version") != STORE_VERSION:
            raise o.OrderError(f"record version {data.get('version')!r}, not {STORE_VERSION}")
        try:
            chain_id = int(data["chain_id"])
            clearinghouse = str(data["clearinghouse"])
        except (KeyError, TypeError, ValueError) as e:
            raise o.OrderError(f"record lacks its chain or clearinghouse ({e})") from e
        stored = cls(
            signed=o.signed_from_json(data),
            chain_id=chain_id,
            clearinghouse=clearinghouse,
            symbol=str(data.get("symbol", "")),
            created=int(data.get("created", 0)),
            source=source,
        )
        if "digest" in data and str(data["digest"]).lower() != stored.id:
            raise o.OrderError("record's digest does not match its order (edited by hand?)")
        return stored


def append(path: Path, stored: StoredOrder) -> None:
    """Appends one order as one line (created with its parent folder if missing); the line
    is written with one `write` on a file opened for appending, so writers never
    interleave and a reader sees whole lines (or a last one it skips)."""
    if not stored.created:
        stored = StoredOrder(
            stored.signed, stored.chain_id, stored.clearinghouse, stored.symbol, int(time.time())
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(stored.to_json(), separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.glob("*.jsonl") if p.is_file())
    if path.exists():
        return [path]
    return []


def _lines(path: Path) -> Iterator[tuple[str, str]]:
    for f in _files(path):
        try:
            text = f.read_text()
        except OSError as e:
            yield f"{f}", f"!unreadable: {e}"
            continue
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield f"{f}:{n}", line


def load(
    path: Path, chain_id: int | None = None, clearinghouse: str | None = None
) -> tuple[list[StoredOrder], list[str]]:
    """Every order in `path` (a file, or a directory of `*.jsonl` files), first occurrence
    of each digest, optionally only those for `chain_id` and `clearinghouse`; and one
    message per line skipped (malformed, another deployment's orders are not counted)."""
    out: list[StoredOrder] = []
    problems: list[str] = []
    seen: set[bytes] = set()
    for where, line in _lines(path):
        if line.startswith("!unreadable"):
            problems.append(f"{where}: {line[1:]}")
            continue
        try:
            stored = StoredOrder.from_json(json.loads(line), where)
        except (ValueError, o.OrderError) as e:
            problems.append(f"{where}: skipped ({e})")
            continue
        if chain_id is not None and stored.chain_id != chain_id:
            continue
        if clearinghouse is not None and stored.clearinghouse.lower() != clearinghouse.lower():
            continue
        if stored.digest in seen:
            continue
        seen.add(stored.digest)
        out.append(stored)
    return out, problems


def require_path(path: Path) -> Path:
    """`path` if it is a file or a directory; PerpdexError saying how to create one."""
    if not path.exists():
        raise PerpdexError(
            f"no orders at {path}; sign one with `perpdex orders stop ...` (it writes "
            f"{path if path.suffix else path / '<network>.jsonl'}) or pass --orders PATH"
        )
    return path


def next_nonce(orders: list[StoredOrder], account: int, min_nonce: int = 0) -> int:
    """A fresh nonce for the account's next conditional order: above every nonce it has
    in `orders`, at least NONCE_BASE and the account's minimum nonce on chain (the
    header's top 64 bits, raised by `cancel_below`)."""
    used = [s.order.nonce for s in orders if s.order.account == account]
    return max([NONCE_BASE, min_nonce, *(n + 1 for n in used)])
