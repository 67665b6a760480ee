"""Typed client of an order matcher's HTTP and websocket API (perpdex/matcher/api.py).

    m = MatcherClient("http://127.0.0.1:8700")
    placed = m.place(sign(order))              # PlacedOrder: the order's state + its fills
    m.book(0).asks[0].price                    # WAD ints (1e18 = 1.0), as the API sends them
    m.cancel(placed.digest, private_key)       # or an ape / eth_account account
    async for fill in m.stream_fills(market=0):
        ...

Every refusal raises MatcherError (.code, .detail, .status) whose message says what to do.

`stream_fills` holds one websocket and never reconnects: it ends when the server closes
the connection (a restart closes it with 1012) and raises MatcherError when the server
dropped this subscriber for reading too slowly (`stream_dropped`) or the connection broke
without a close (`connection_lost`). To resume without a gap, call it again with
`after=` the last seq seen: it subscribes first, then yields the stored fills after that
seq, then the live ones, each fill once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, Protocol, TypeVar

import httpx

from perpdex.errors import PerpdexError
from perpdex.matcher import sigs
from perpdex.sdk import orders as so

T = TypeVar("T")
R = TypeVar("R")
OrderStatus = Literal["open", "filled", "cancelled", "expired", "rejected"]

HINTS = {
    "nonce_in_use": "pick a new nonce (the account's open and unsettled orders hold theirs)",
    "duplicate": "the order is already placed: orders(account) shows it",
    "post_only_would_cross": "move the price behind the best opposite level or drop post-only",
    "bad_signature": "sign with perpdex.sdk.orders.sign_order (65 bytes, low s)",
    "wrong_signer": "sign with the account owner's key for the matcher's chain and Clearinghouse",
    "missing_signature": "sign the cancel with the order owner's key",
    "not_open": "nothing to cancel: orders(account) shows the order's final status",
    "expired": "sign the order again with a later expiry",
    "unknown_market": "use a market index this matcher trades",
    "unavailable": "the matcher refuses writes until its operator restarts it; retry later",
    "internal": "retry; if it persists, tell the matcher's operator",
    "unreachable": "check the URL, or start a matcher: perpdex matcher serve",
    "stream_dropped": "read faster; resume with stream_fills(after=last seq)",
    "connection_lost": "resume with stream_fills(after=last seq)",
    "bad_response": "is the URL a perpdex matcher of this version?",
}


class MatcherError(PerpdexError):
    """The matcher refused a request (or could not be reached): `code` is the API's error
    code, `status` the HTTP status (None when no HTTP response came)."""

    def __init__(self, code: str, detail: str, status: int | None = None) -> None:
        self.code, self.detail, self.status = code, detail, status
        hint = HINTS.get(code, "fix the request as the detail says")
        where = f"{status} {code}" if status is not None else code
        super().__init__(f"matcher: {where}: {detail}; {hint}")


@dataclass(frozen=True)
class MatcherOrder:
    digest: str
    account: int
    market: int
    size: int  # signed base WAD: > 0 buys
    limit_price: int
    expiry: int
    nonce: int
    flags: int
    filled: int
    remaining: int
    status: OrderStatus
    seq: int


@dataclass(frozen=True)
class MatcherFill:
    """One match. The stream carries no settlement state (`state`, `batch_id` and `at`
    None); they do not take part in `==`, so a streamed and a stored fill compare equal."""

    seq: int
    market: int
    maker: str  # order digests
    taker: str
    maker_account: int
    taker_account: int
    size: int  # base WAD, > 0
    price: int  # the maker's limit price
    taker_side: Literal["buy", "sell"]
    state: str | None = field(default=None, compare=False)  # queued, pending, settled...
    batch_id: int | None = field(default=None, compare=False)
    at: float | None = field(default=None, compare=False)  # unix seconds


@dataclass(frozen=True)
class PlacedOrder:
    order: MatcherOrder  # its state once the submission matched
    fills: tuple[MatcherFill, ...]

    @property
    def digest(self) -> str:
        return self.order.digest


@dataclass(frozen=True)
class BookLevel:
    price: int
    size: int
    orders: int


@dataclass(frozen=True)
class Book:
    market: int
    bids: tuple[BookLevel, ...]  # best first
    asks: tuple[BookLevel, ...]


class MessageSigner(Protocol):
    """An ape account (its signature has `encode_rsv`) or an eth_account LocalAccount."""

    def sign_message(self, msg: Any, /) -> Any: ...


def _obj(cls: type[T], d: dict[str, Any]) -> T:
    """An API object as `cls`: its int fields from JSON numbers or decimal strings (exact)."""
    kw: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        v = d[f.name] if f.default is MISSING else d.get(f.name)
        kw[f.name] = int(v) if v is not None and f.type in ("int", "int | None") else v
    return cls(**kw)


def _levels(rows: list[dict[str, Any]]) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(int(r["price"]), int(r["size"]), int(r["orders"])) for r in rows)


def _detail(detail: Any) -> str:
    if isinstance(detail, list):  # validation errors: [{"loc": [...], "msg": ...}]
        return "; ".join(f"{'.'.join(e.get('loc', []))}: {e.get('msg')}" for e in detail)
    return str(detail)


class MatcherClient:
    """Blocking HTTP calls (httpx) plus the async `stream_fills`; use as a context manager
    or call `close()`."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def __enter__(self) -> MatcherClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise MatcherError("unreachable", f"{self.base_url}: {e}") from e
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code >= 400:
            if isinstance(data, dict) and "error" in data:
                raise MatcherError(str(data["error"]), _detail(data.get("detail")), r.status_code)
            raise MatcherError(f"http_{r.status_code}", r.text[:200], r.status_code)
        if not isinstance(data, dict):
            raise MatcherError("bad_response", f"not a JSON object: {r.text[:200]}", r.status_code)
        return data

    def _decode(self, fn: Callable[..., R], *args: Any) -> R:
        try:
            return fn(*args)
        except (KeyError, TypeError, ValueError) as e:
            raise MatcherError("bad_response", f"{type(e).__name__}: {e}") from e

    def place(self, signed: so.SignedOrder) -> PlacedOrder:
        """Submit a signed order; it matches at once and rests if not filled (unless IOC)."""
        j = so.signed_to_json(signed)
        data = self._call("POST", "/orders", json={**j["order"], "signature": j["signature"]})
        return self._decode(
            lambda: PlacedOrder(
                _obj(MatcherOrder, data), tuple(_obj(MatcherFill, f) for f in data["fills"])
            )
        )

    def cancel(self, digest: str, signer: str | bytes | MessageSigner) -> MatcherOrder:
        """Cancel an open order, signed by its account's owner: a private key, or an
        account object (ape or eth_account) that personal_signs the cancel text."""
        digest = digest.lower()
        if isinstance(signer, str | bytes):
            sig = sigs.sign_cancel(digest, signer)
        else:
            from eth_account.messages import encode_defunct

            out = signer.sign_message(encode_defunct(text=sigs.CANCEL_PREFIX + digest))
            if out is None:
                raise PerpdexError("the cancel was not signed (signing refused or unsupported)")
            sig = bytes(out.encode_rsv() if hasattr(out, "encode_rsv") else out.signature)
        data = self._call(
            "DELETE", f"/orders/{digest}", headers={"X-Perpdex-Signature": "0x" + sig.hex()}
        )
        return self._decode(_obj, MatcherOrder, data)

    def book(self, market: int, depth: int = 50) -> Book:
        data = self._call("GET", f"/book/{market}", params={"depth": depth})
        return self._decode(
            lambda: Book(int(data["market"]), _levels(data["bids"]), _levels(data["asks"]))
        )

    def orders(
        self, account: int, status: OrderStatus | None = None, limit: int = 100
    ) -> list[MatcherOrder]:
        """An account's orders, newest first."""
        params: dict[str, Any] = {"account": str(account), "limit": limit}
        if status is not None:
            params["status"] = status
        data = self._call("GET", "/orders", params=params)
        return self._decode(lambda: [_obj(MatcherOrder, d) for d in data["orders"]])

    def fills(
        self,
        market: int | None = None,
        account: int | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[MatcherFill]:
        """Fills with seq > `after`, oldest first."""
        params: dict[str, Any] = {"after": after, "limit": limit}
        if market is not None:
            params["market"] = market
        if account is not None:
            params["account"] = str(account)
        data = self._call("GET", "/fills", params=params)
        return self._decode(lambda: [_obj(MatcherFill, d) for d in data["fills"]])

    async def stream_fills(
        self, market: int | None = None, after: int | None = None
    ) -> AsyncIterator[MatcherFill]:
        """Every fill committed from now on (of `market`); with `after`, first the stored
        fills with a greater seq. Ends when the server closes the connection."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, WebSocketException

        url = "ws" + self.base_url.removeprefix("http") + "/ws/fills"
        if market is not None:
            url += f"?market={market}"
        try:
            ws = await connect(url, open_timeout=self.timeout)
        except (OSError, TimeoutError, WebSocketException) as e:
            raise MatcherError("unreachable", f"{url}: {e}") from e
        async with ws:
            seen: set[int] = set()
            known = -1 if after is None else after  # the caller has every seq up to it
            while after is not None:  # subscribed: the backfill cannot miss a fill
                page = await asyncio.to_thread(self.fills, market, None, after, 1000)
                for f in page:
                    seen.add(f.seq)
                    yield f
                after = page[-1].seq if len(page) == 1000 else None
            while True:
                try:
                    raw = await ws.recv()
                except ConnectionClosed as e:
                    if e.rcvd is not None:  # the server closed (1000, 1012 restart...)
                        return
                    raise MatcherError("connection_lost", f"{url}: {e}") from e
                msg = self._decode(json.loads, raw)
                if "error" in msg:
                    raise MatcherError("stream_dropped", str(msg["error"]))
                fill = self._decode(_obj, MatcherFill, msg)
                if fill.seq > known and fill.seq not in seen:
                    yield fill
