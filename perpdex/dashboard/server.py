"""The dashboard's web server (FastAPI): one HTML page, its script and style, the latest
document as JSON, and the documents pushed live as server-sent events.

    GET /                 the page (perpdex/dashboard/static/index.html)
    GET /static/{file}    dashboard.js, dashboard.css
    GET /api/state        the latest document (perpdex/dashboard/state.py), 503 before the
                          first read
    GET /api/events       text/event-stream: `state` (the document) at connection and each
                          time a new block changes the figures; `status` (head block, node
                          up or down) after every poll that saw a new block or an error
    GET /health           {"ok": true}

A `Poller` thread asks the node for its head every `interval` seconds and, on a new block,
re-reads the figures (`Tracker.read`); it never sends a transaction. When the node stops
answering the page keeps the last figures and says so, and the poller retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from perpdex.dashboard.state import Tracker, figures
from perpdex.errors import PerpdexError

__all__ = ["Hub", "Poller", "create_app"]

log = logging.getLogger("perpdex.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
#: Seconds between keep-alive comments on an idle event stream.
HEARTBEAT_S = 15.0
#: Documents queued for one slow page before it is dropped (it reconnects and resyncs).
QUEUE_LIMIT = 32


class Hub:
    """The latest document and status, and the event-stream subscribers (each an asyncio
    queue on the server's loop; the poller thread publishes through `call_soon_threadsafe`)."""

    def __init__(self) -> None:
        self.document: dict[str, Any] | None = None
        self.version = 0
        self.status: dict[str, Any] = {"ok": False, "error": None, "head": None, "polled_at": None}
        self._queues: set[asyncio.Queue[str | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self) -> asyncio.Queue[str | None]:
        q: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str | None]) -> None:
        self._queues.discard(q)

    def close(self) -> None:
        """End every event stream (server shutdown)."""
        for q in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)

    def snapshot(self) -> dict[str, Any] | None:
        with self._lock:
            if self.document is None:
                return None
            return {**self.document, "status": dict(self.status), "version": self.version}

    # --- from the poller thread --------------------------------------------------------------

    def set_status(self, **kw: Any) -> None:
        with self._lock:
            self.status = {**self.status, **kw, "polled_at": int(time.time())}
            status = dict(self.status)
        self._push("status", status)

    def set_document(self, document: dict[str, Any]) -> bool:
        """Store a new read; push it when its figures differ from the last one's (True)."""
        with self._lock:
            changed = self.document is None or figures(document) != figures(self.document)
            self.document = document
            if changed:
                self.version += 1
        if changed:
            snap = self.snapshot()
            assert snap is not None
            self._push("state", snap)
        return changed

    def _push(self, event: str, payload: dict[str, Any]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        message = sse(event, payload)
        for q in list(self._queues):
            loop.call_soon_threadsafe(_offer, q, message)


def _offer(q: asyncio.Queue[str | None], message: str) -> None:
    try:
        q.put_nowait(message)
    except asyncio.QueueFull:  # a stalled page: end its stream, it reconnects and resyncs
        with contextlib.suppress(asyncio.QueueEmpty):
            q.get_nowait()
        q.put_nowait(None)


def sse(event: str, payload: dict[str, Any]) -> str:
    """One server-sent event (its data on one line: JSON has no raw newlines)."""
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


class Poller(threading.Thread):
    """Polls the node's head; on a new block re-reads the figures into the hub."""

    def __init__(self, tracker: Tracker, hub: Hub, interval: float = 1.0) -> None:
        super().__init__(name="perpdex-dashboard-poller", daemon=True)
        self.tracker = tracker
        self.hub = hub
        self.interval = interval
        self.stopped = threading.Event()
        self.reads = 0
        self.last: int | None = None  # the block last read (None: read at the next poll)
        self.failing = False  # the last poll failed (logged once until a read works)

    def stop(self) -> None:
        self.stopped.set()

    def poll(self, last: int | None) -> int | None:
        """One poll: the head, and a read when it moved (or after an error). Returns the
        block read (None after an error, so the next poll reads again)."""
        try:
            head = self.tracker.head()
            if head == last:
                return last
            document = self.tracker.read()
        except PerpdexError as e:
            if not self.failing:  # once per outage, not every poll
                log.warning("dashboard read failed (retrying every %.1f s): %s", self.interval, e)
            self.failing = True
            self.hub.set_status(ok=False, error=str(e))
            return None
        except Exception as e:  # a bug must not kill the thread: say it on the page
            log.exception("dashboard read failed")
            self.failing = True
            self.hub.set_status(ok=False, error=f"{type(e).__name__}: {e}")
            return None
        if self.failing:
            log.warning("dashboard read works again at block %s", document["block_number"])
        self.failing = False
        self.reads += 1
        self.hub.set_document(document)
        self.hub.set_status(ok=True, error=None, head=document["block_number"])
        return int(document["block_number"])

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.last = self.poll(self.last)


def create_app(hub: Hub, poller: Poller | None = None) -> FastAPI:
    """The app; `poller` (started with the app, stopped with it) feeds `hub`."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        if poller is not None:
            poller.start()
        try:
            yield
        finally:
            hub.close()
            if poller is not None:
                poller.stop()

    app = FastAPI(title="perpdex dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> Any:
        if name not in ASSETS:
            return JSONResponse({"error": "not_found", "detail": name}, status_code=404)
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    @app.get("/api/state")
    def state() -> JSONResponse:
        snap = hub.snapshot()
        if snap is None:
            return JSONResponse(
                {"error": "not_ready", "detail": "no read yet", "status": hub.status},
                status_code=503,
            )
        return JSONResponse(snap)

    @app.get("/api/events")
    async def events(request: Request) -> StreamingResponse:
        q = hub.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                snap = hub.snapshot()
                if snap is not None:
                    yield sse("state", snap)
                yield sse("status", dict(hub.status))
                while True:
                    try:
                        message = await asyncio.wait_for(q.get(), HEARTBEAT_S)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield ": keep-alive\n\n"
                        continue
                    if message is None:
                        return
                    yield message
            finally:
                hub.unsubscribe(q)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "node": hub.status}

    return app
