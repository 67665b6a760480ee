"""The matcher's HTTP and websocket API (FastAPI).

  POST   /orders              a signed order: {account, market, size, limit_price, expiry,
                              nonce, flags?, trigger_price?, keeper_fee?, signature}; integers
                              as JSON numbers or decimal strings (WAD amounts overflow
                              JavaScript numbers: send strings); 201 once committed; 409
                              `nonce_in_use` when an open or not yet settled order of the
                              account has that nonce (the chain's replay state is per
                              account and nonce)
  DELETE /orders/{digest}     header X-Perpdex-Signature: the owner's personal_sign of
                              "perpdex matcher: cancel order <digest>" (sigs.sign_cancel)
  GET    /book/{market}       aggregated levels, best first (?depth=N)
  GET    /orders?account=ID   an account's orders, newest first (?status=open&limit=N)
  GET    /fills               fills, oldest first (?market=&account=&after=SEQ&limit=N)
  WS     /ws/fills            every committed fill as JSON (?market= to filter)
  GET    /health

Every error is JSON {"error": code, "detail": text}: 4xx for the caller's mistakes (bad
JSON, unknown field, oversized body, bad signature, unknown market, ...), 503 when the
matcher stopped accepting writes. A bad request never changes state.

POST /orders (the hot path) is answered by `MatcherApp` directly, without FastAPI's
middleware, routing and dependency layers (about a third of the CPU of an order): the same
handler (`create_app.<locals>.place_order`), body limit and error bodies as the FastAPI
route, which stays registered and serves it when FastAPI's native telemetry is on (so its
spans and metrics still cover every order) or under a root path.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import to_json
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perpdex.matcher import sigs
from perpdex.matcher.core import Matcher, NotFound, Unauthorized
from perpdex.matcher.engine import BookOrder, Rejected
from perpdex.matcher.service import Service, Unavailable, fill_message
from perpdex.sdk import orders as o

MAX_BODY = 4096  # a signed order is ~600 bytes of JSON
HEX_SIG = re.compile(r"^0x[0-9a-fA-F]{130}$")
HEX_DIGEST = re.compile(r"^0x[0-9a-f]{64}$")
DIGITS = re.compile(r"^-?[0-9]{1,80}$")


def _integer(v: Any) -> int:
    """An integer given as a JSON number or a decimal string; refuses floats and bools."""
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError("must be an integer or a decimal string")
    if isinstance(v, str):
        if not DIGITS.match(v):
            raise ValueError("must be a decimal integer string (WAD amounts: 1e18 = 1.0)")
        return int(v)
    return v


Int = Annotated[int, BeforeValidator(_integer)]


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: Int
    market: Int
    size: Int
    limit_price: Int
    expiry: Int
    nonce: Int
    flags: Int = 0
    trigger_price: Int = 0
    keeper_fee: Int = 0
    signature: str

    def order(self) -> o.Order:
        return o.Order(
            account=self.account,
            market=self.market,
            size=self.size,
            limit_price=self.limit_price,
            expiry=self.expiry,
            nonce=self.nonce,
            flags=self.flags,
            trigger_price=self.trigger_price,
            keeper_fee=self.keeper_fee,
        )


def order_json(bo: BookOrder) -> dict[str, Any]:
    od = bo.order
    return {
        "digest": bo.digest,
        "account": str(od.account),
        "market": od.market,
        "size": str(od.size),
        "limit_price": str(od.limit_price),
        "expiry": od.expiry,
        "nonce": str(od.nonce),
        "flags": od.flags,
        "filled": str(bo.filled),
        "remaining": str(bo.remaining),
        "status": bo.status,
        "seq": bo.seq,
    }


def _details(errors: Any) -> list[dict[str, Any]]:
    return [
        {"loc": [str(x) for x in err.get("loc", ())], "msg": str(err.get("msg", ""))}
        for err in errors
    ]


def _problem(code: str, detail: str | list[Any]) -> dict[str, Any]:
    return {"error": code, "detail": detail}


def _error(status: int, code: str, detail: str | list[Any]) -> JSONResponse:
    return JSONResponse(_problem(code, detail), status_code=status)


def _json(content: Any) -> bytes:
    """What starlette's JSONResponse renders, byte for byte."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


async def _send_json(send: Send, status: int, content: Any) -> None:
    """A JSONResponse (same headers, same body) without building one. A 201 holds only
    what this module wrote (numbers, digits, hex, status words): pydantic-core's to_json
    renders it byte for byte as json.dumps does, in a quarter of the time."""
    body = to_json(content) if status == 201 else _json(content)
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None (not read further) when it is over `limit` bytes by its
    Content-Length or while it streams (a chunked body)."""
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                if int(v) > limit:
                    return None
            except ValueError:
                return None
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        body = msg.get("body", b"")
        size += len(body)
        if size > limit:
            return None
        chunks.append(body)
        more = msg.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413 before the app reads it (by its
    Content-Length, or while it streams for a chunked body)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_all = await read_body(scope, receive, self.limit)
        if body_all is None:
            await self._refuse(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body_all, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = _error(413, "body_too_large", f"request body over {self.limit} bytes")
        await resp(scope, receive, send)


async def _until_disconnect(ws: WebSocket) -> None:
    """Returns once the websocket's client is gone; what the client sends is ignored."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


def _telemetry_on(app: FastAPI) -> bool:
    """FastAPI's native telemetry (OpenTelemetry spans, metrics) is configured."""
    native = getattr(app, "_native_telemetry", None)
    return bool(native is not None and native.enabled())


class MatcherApp(FastAPI):
    """The matcher's FastAPI app; answers POST /orders itself (see the module docstring)
    once `direct` is set (at start-up, when FastAPI's native telemetry is off)."""

    direct = False
    place_order: Callable[[bytes], Awaitable[tuple[int, dict[str, Any]]]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.direct
            and scope["type"] == "http"
            and scope["path"] == "/orders"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.root_path
        ):
            await self._place(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _place(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(scope, receive, MAX_BODY)
        if raw is None:
            await _send_json(
                send, 413, _problem("body_too_large", f"request body over {MAX_BODY} bytes")
            )
            return
        try:
            status, content = await self.place_order(raw)
        except Unavailable as e:
            status, content = 503, _problem("unavailable", str(e))
        except Exception as e:
            # as starlette's ServerErrorMiddleware: the 500 body, then the error re-raised
            # for the server to log
            content = _problem("internal", f"{type(e).__name__}: the matcher logged the details")
            await _send_json(send, 500, content)
            raise
        await _send_json(send, status, content)


def create_app(matcher: Matcher, service: Service | None = None) -> FastAPI:
    svc = service or Service(matcher)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        app.direct = not _telemetry_on(app)
        if getattr(app.state, "freeze_heap", False):
            # the start-up heap (modules, schemas, the rebuilt book) lives as long as the
            # process: out of the collector's sight, a full collection no longer walks it
            # (under the bench each one stopped the loop for 55-76 ms, the p99's stalls)
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await svc.stop()

    app = MatcherApp(title="perpdex matcher", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = svc

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, e: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _details(e.errors()))

    @app.exception_handler(Unavailable)
    async def _unavailable(_r: Request, e: Unavailable) -> JSONResponse:
        return _error(503, "unavailable", str(e))

    @app.exception_handler(Exception)
    async def _internal(_r: Request, e: Exception) -> JSONResponse:
        return _error(500, "internal", f"{type(e).__name__}: the matcher logged the details")

    async def place_order(raw: bytes) -> tuple[int, dict[str, Any]]:
        """POST /orders: (status, JSON body); raises Unavailable (503)."""
        # the body is parsed and validated in one step by pydantic-core (the hot path)
        svc.check()
        try:
            body = OrderIn.model_validate_json(raw)
        except ValidationError as e:
            return 422, _problem("invalid_request", _details(e.errors()))
        if not HEX_SIG.match(body.signature):
            return 400, _problem("bad_signature", "signature must be 0x + 130 hex digits (r||s||v)")
        sig = bytes.fromhex(body.signature[2:])
        try:
            order = body.order()
            digest = matcher.verify(order, sig)
        except o.OrderError as e:
            return 422, _problem("invalid_order", str(e))
        except sigs.SignatureError as e:
            return 400, _problem("bad_signature", str(e))
        except Unauthorized as e:
            return 403, _problem("wrong_signer", str(e))
        try:
            outcome, ops = matcher.submit(digest, order, sig)
        except Rejected as e:
            conflict = ("duplicate", "post_only_would_cross", "nonce_in_use")
            return (409 if e.code in conflict else 422), _problem(e.code, str(e))
        await svc.commit(ops)
        matcher.submit_committed(outcome)
        fills = [fill_message(f) for f in outcome.fills]
        svc.publish_messages(fills)
        out = order_json(outcome.taker)
        out["fills"] = fills
        return 201, out

    app.place_order = place_order

    @app.post("/orders", status_code=201)
    async def place(request: Request) -> Any:
        status, content = await place_order(await request.body())
        return JSONResponse(content, status_code=status)

    @app.delete("/orders/{digest}")
    async def cancel(
        digest: str,
        x_perpdex_signature: Annotated[str | None, Header()] = None,
    ) -> Any:
        svc.check()
        if not HEX_DIGEST.match(digest):
            return _error(422, "invalid_digest", "digest must be 0x + 64 lower-case hex digits")
        if x_perpdex_signature is None or not HEX_SIG.match(x_perpdex_signature):
            return _error(
                401,
                "missing_signature",
                "send header X-Perpdex-Signature: the owner's personal_sign of "
                f"'{sigs.CANCEL_PREFIX}{digest}'",
            )
        try:
            bo, ops = matcher.cancel(digest, bytes.fromhex(x_perpdex_signature[2:]))
        except NotFound as e:
            return _error(404, "not_open", str(e))
        except sigs.SignatureError as e:
            return _error(400, "bad_signature", str(e))
        except Unauthorized as e:
            return _error(403, "wrong_signer", str(e))
        await svc.commit(ops)
        return order_json(bo)

    @app.get("/book/{market}")
    async def book(market: int, depth: Annotated[int, Query(ge=1, le=500)] = 50) -> Any:
        if market not in matcher.engine.books:
            return _error(404, "unknown_market", f"market {market} is not traded here")
        bids, asks = matcher.engine.levels(market, depth)

        def lv(rows: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
            return [{"price": str(p), "size": str(s), "orders": n} for p, s, n in rows]

        return {"market": market, "bids": lv(bids), "asks": lv(asks)}

    @app.get("/orders")
    async def orders(
        account: Annotated[str, Query(max_length=80)],
        status: Annotated[
            str | None, Query(pattern="^(open|filled|cancelled|expired|rejected)$")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        try:
            acct = int(account, 0)
        except ValueError:
            return _error(422, "invalid_account", "account must be a decimal or 0x-hex id")
        rows = await svc.read(matcher.store.orders_of, acct, status, limit)
        return {"account": str(acct), "orders": [order_json(b) for b in rows]}

    @app.get("/fills")
    async def fills(
        market: int | None = None,
        account: Annotated[str | None, Query(max_length=80)] = None,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        acct = None
        if account is not None:
            try:
                acct = int(account, 0)
            except ValueError:
                return _error(422, "invalid_account", "account must be a decimal or 0x-hex id")
        rows = await svc.read(matcher.store.fills, market, acct, after, limit)
        return {"fills": rows}

    @app.get("/health")
    async def health() -> Any:
        return {
            "ok": svc.failed is None,
            "error": svc.failed,
            "open_orders": len(matcher.engine.orders),
            "queued_fills": len(matcher.queued),
            "deferred_fills": len(matcher.deferred),
            "inflight_fills": matcher.inflight(),
            "pending_batches": len(matcher.pending),
            "commits": svc.commits,
        }

    @app.websocket("/ws/fills")
    async def ws_fills(ws: WebSocket, market: int | None = None) -> None:
        await ws.accept()
        q = svc.subscribe()
        # the client's side is watched too: a client that leaves (or a server shutting
        # down) ends the handler at once, not at the next fill
        gone = asyncio.ensure_future(_until_disconnect(ws))
        try:
            while True:
                got = asyncio.ensure_future(q.get())
                await asyncio.wait({got, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    return
                msg = got.result()
                if market is not None and msg.get("market") not in (None, market):
                    continue
                await ws.send_json(msg)
                if "error" in msg:
                    await ws.close(code=1008)
                    return
        except WebSocketDisconnect:
            pass
        finally:
            gone.cancel()
            svc.listeners.discard(q)

    app.add_middleware(BodyLimit, limit=MAX_BODY)
    return app


def serve(app: FastAPI, host: str, port: int) -> None:
    """Runs the matcher's app until Ctrl-C or SIGTERM, as `perpdex matcher serve` and the
    load benchmark both do: uvicorn on uvloop and httptools, no access log, and the heap
    left after start-up frozen out of the garbage collector (`gc.freeze`)."""
    import uvicorn

    app.state.freeze_heap = True
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
