"""The matcher's database (SQLAlchemy 2 Core): SQLite by default, PostgreSQL by URL.

Tables:
  orders   every acknowledged order: its fields, signature, filled amount and status; the
           open ones rebuild the book at start (in `seq` order: time priority survives)
  fills    every match, with its settlement state: queued -> pending (in a batch) ->
           settled | failed
  batches  one row per settlement transaction: recorded `pending` with the prepared
           transaction's id and bytes *before* it is broadcast, then `settled` or `failed`
           from its receipt, so a restart finds what may be in flight and never re-matches
           or re-sends it as new
  meta     the chain-event cursor (how far fills and cancels were reconciled)

Every write is one `Store.apply(ops)` transaction; the service acknowledges an order only
after the transaction holding it has committed. Integers wider than 64 bits (WAD amounts,
account ids, nonces) are stored as decimal text so both backends keep them exact.
SQLite runs in WAL mode with synchronous=FULL: a committed order survives a power cut.
Its writes go through one kept-open connection whose WAL is copied into the database file
by a background checkpointer (`_Checkpointer`), not by the commits themselves; the WAL
file then stays under about 70 MB.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)

from perpdex.matcher.engine import BookOrder, Fill
from perpdex.sdk import orders as o

log = logging.getLogger("perpdex.matcher")
metadata = MetaData()

orders_t = Table(
    "orders",
    metadata,
    Column("digest", String(66), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("account", String(80), nullable=False, index=True),
    Column("market", Integer, nullable=False),
    Column("size", String(80), nullable=False),
    Column("limit_price", String(80), nullable=False),
    Column("trigger_price", String(80), nullable=False),
    Column("keeper_fee", String(80), nullable=False),
    Column("expiry", String(24), nullable=False),
    Column("nonce", String(24), nullable=False),
    Column("flags", Integer, nullable=False),
    Column("signature", String(132), nullable=False),
    Column("filled", String(80), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
)

fills_t = Table(
    "fills",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("market", Integer, nullable=False),
    Column("maker", String(66), nullable=False, index=True),
    Column("taker", String(66), nullable=False, index=True),
    Column("maker_account", String(80), nullable=False, index=True),
    Column("taker_account", String(80), nullable=False, index=True),
    Column("size", String(80), nullable=False),
    Column("price", String(80), nullable=False),
    Column("taker_is_buy", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("batch_id", Integer, nullable=True, index=True),
    Column("state", String(16), nullable=False, index=True),
)

batches_t = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("tx_id", String(200), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("fills", Text, nullable=False),  # JSON list of fill seqs
    Column("state", String(16), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

meta_t = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

QUEUED = "queued"
PENDING = "pending"
SETTLED = "settled"
FAILED = "failed"


# ---- write operations (applied together, in order, in one transaction) -------------------


@dataclass(frozen=True)
class InsertOrder:
    """Built when the engine acts (a snapshot: the order may change before the commit)."""

    row: dict[str, Any]

    @classmethod
    def of(cls, bo: BookOrder, at: float) -> InsertOrder:
        return cls(_order_row(bo, at))


@dataclass(frozen=True)
class UpdateOrder:
    digest: str
    filled: int
    status: str


@dataclass(frozen=True)
class InsertFill:
    row: dict[str, Any]

    @classmethod
    def of(cls, fill: Fill, at: float) -> InsertFill:
        return cls(_fill_row(fill, at))


@dataclass(frozen=True)
class SetFillState:
    seqs: tuple[int, ...]
    state: str
    batch_id: int | None = None


@dataclass(frozen=True)
class InsertBatch:
    id: int
    tx_id: str
    payload: bytes
    fills: tuple[int, ...]
    at: float


@dataclass(frozen=True)
class SetBatchState:
    id: int
    state: str
    at: float


@dataclass(frozen=True)
class SetMeta:
    key: str
    value: str


Op = InsertOrder | UpdateOrder | InsertFill | SetFillState | InsertBatch | SetBatchState | SetMeta


def _order_row(bo: BookOrder, at: float) -> dict[str, Any]:
    od = bo.order
    return {
        "digest": bo.digest,
        "seq": bo.seq,
        "account": str(od.account),
        "market": od.market,
        "size": str(od.size),
        "limit_price": str(od.limit_price),
        "trigger_price": str(od.trigger_price),
        "keeper_fee": str(od.keeper_fee),
        "expiry": str(od.expiry),
        "nonce": str(od.nonce),
        "flags": od.flags,
        "signature": "0x" + bo.signature.hex(),
        "filled": str(bo.filled),
        "status": bo.status,
        "created_at": at,
    }


def _fill_row(f: Fill, at: float) -> dict[str, Any]:
    return {
        "seq": f.seq,
        "market": f.market,
        "maker": f.maker,
        "taker": f.taker,
        "maker_account": str(f.maker_account),
        "taker_account": str(f.taker_account),
        "size": str(f.size),
        "price": str(f.price),
        "taker_is_buy": f.taker_is_buy,
        "created_at": at,
        "batch_id": None,
        "state": QUEUED,
    }


def order_from_row(r: Any) -> BookOrder:
    order = o.Order(
        account=int(r.account),
        market=int(r.market),
        size=int(r.size),
        limit_price=int(r.limit_price),
        trigger_price=int(r.trigger_price),
        keeper_fee=int(r.keeper_fee),
        expiry=int(r.expiry),
        nonce=int(r.nonce),
        flags=int(r.flags),
    )
    return BookOrder(
        r.digest,
        order,
        bytes.fromhex(r.signature[2:]),
        int(r.seq),
        int(r.filled),
        r.status,
    )


def fill_from_row(r: Any) -> Fill:
    return Fill(
        int(r.seq),
        int(r.market),
        r.maker,
        r.taker,
        int(r.size),
        int(r.price),
        bool(r.taker_is_buy),
        int(r.maker_account),
        int(r.taker_account),
    )


def fill_json(r: Any) -> dict[str, Any]:
    return {
        "seq": int(r.seq),
        "market": int(r.market),
        "maker": r.maker,
        "taker": r.taker,
        "maker_account": str(r.maker_account),
        "taker_account": str(r.taker_account),
        "size": str(r.size),
        "price": str(r.price),
        "taker_side": "buy" if r.taker_is_buy else "sell",
        "state": r.state,
        "batch_id": r.batch_id,
        "at": r.created_at,
    }


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


class _Compiled:
    """A statement compiled once for one engine's dialect, run as driver SQL with rows of
    parameters in the driver's own style (tuples in `positiontup` order, or the dicts)."""

    def __init__(self, stmt: Any, engine: Engine) -> None:
        compiled = stmt.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        keys = tuple(compiled.positiontup or ()) if compiled.positional else None
        self.row: Callable[[dict[str, Any]], tuple[Any, ...]] | None = (
            itemgetter(*keys) if keys and len(keys) > 1 else None
        )
        assert not compiled.positional or self.row is not None, "one-column statement"

    def executemany(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if self.row is None:
            conn.exec_driver_sql(self.sql, rows)
        else:
            conn.exec_driver_sql(self.sql, list(map(self.row, rows)))


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except Exception as e:
            raise ValueError(
                f"cannot open database {url!r} ({e}); pass --db sqlite:///path.db or "
                "postgresql+psycopg://user@host:port/dbname"
            ) from e
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        upd_order = (
            update(orders_t)
            .where(orders_t.c.digest == bindparam("d"))
            .values(filled=bindparam("f"), status=bindparam("s"))
        )
        # the hot statements, compiled once for this database: executed as driver SQL, one
        # executemany each per group commit (SQLAlchemy's per-statement and per-row work
        # was most of a commit's CPU)
        self._ins_order = _Compiled(insert(orders_t), self.engine)
        self._ins_fill = _Compiled(insert(fills_t), self.engine)
        self._upd_order = _Compiled(upd_order, self.engine)
        by_seq = fills_t.c.seq == bindparam("q")
        self._set_fill_state = _Compiled(
            update(fills_t).where(by_seq).values(state=bindparam("st")), self.engine
        )
        self._set_fill_batch = _Compiled(
            update(fills_t).where(by_seq).values(state=bindparam("st"), batch_id=bindparam("b")),
            self.engine,
        )
        # one batch a commit at most, but SQLAlchemy's statement cache lookup and execution
        # context cost more than the row (a few % of the loop's CPU under the bench)
        self._ins_batch = _Compiled(insert(batches_t), self.engine)
        self._set_batch_state = _Compiled(
            update(batches_t)
            .where(batches_t.c.id == bindparam("i"))
            .values(state=bindparam("st"), updated_at=bindparam("u")),
            self.engine,
        )

        # SQLite: the writes go through one connection of their own (`_writer`), kept open:
        # its page cache stays valid from one commit to the next (no other connection
        # writes), where a pooled connection, last used by a reader, re-read the pages
        # each group touches (about 170 page reads per commit under the bench)
        self._writer: Connection | None = None
        self._writer_lock = threading.Lock()
        self._checkpointer: _Checkpointer | None = None

    def close(self) -> None:
        # not under `_writer_lock`: a commit that failed outside `commit` may hold it
        writer, self._writer = self._writer, None
        if writer is not None and not writer.closed:
            writer.close()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        self.engine.dispose()

    def _write_connection(self) -> Connection:
        """The SQLite writer connection when it is free (the caller then holds
        `_writer_lock` until `commit`), else a pooled one (PostgreSQL: always pooled, so
        `pool_pre_ping` replaces a connection the server dropped)."""
        if self.is_sqlite and self._writer_lock.acquire(blocking=False):
            try:
                if self._writer is None or self._writer.closed:
                    self._writer = self._open_writer()
                return self._writer
            except BaseException:
                self._writer_lock.release()
                raise
        return self.engine.connect()

    def _open_writer(self) -> Connection:
        """The SQLite writer connection, without automatic checkpoints: a commit that
        crossed the WAL's 1,000-page mark copied the WAL into the database file and synced
        it before returning (every ~6 group commits under the bench, in the ack's path).
        `_Checkpointer` does that on a thread of its own instead."""
        if self._checkpointer is None:
            self._checkpointer = _Checkpointer(self.engine)
        conn = self.engine.connect()
        conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
        conn.commit()
        return conn

    def _done_with(self, conn: Connection) -> None:
        if conn is self._writer:
            self._writer_lock.release()
        else:
            conn.close()

    # ---- writes -------------------------------------------------------------------------

    def apply(self, ops: Sequence[Op]) -> None:
        """All `ops` in one transaction; raises (nothing written) on any error."""
        self.commit(self.stage(ops))

    def stage(self, ops: Sequence[Op]) -> Connection:
        """Runs `ops` in a new transaction left open: `commit(conn)` makes them durable (the
        service stages on its event loop and commits, i.e. waits for the disk, on a thread)."""
        conn = self._write_connection()
        try:
            conn.begin()
            self._execute(conn, ops)
        except BaseException:
            conn.rollback()
            self._done_with(conn)
            raise
        return conn

    def commit(self, conn: Connection) -> None:
        try:
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if conn is self._writer and self._checkpointer is not None:
                self._checkpointer.wake()
            self._done_with(conn)

    def _execute(self, conn: Connection, ops: Sequence[Op]) -> None:
        new_orders: list[dict[str, Any]] = []
        order_updates: dict[str, dict[str, Any]] = {}
        new_fills: list[dict[str, Any]] = []
        rest: list[Op] = []
        for op in ops:
            if isinstance(op, InsertOrder):
                new_orders.append(op.row)
            elif isinstance(op, UpdateOrder):
                order_updates[op.digest] = {"d": op.digest, "f": str(op.filled), "s": op.status}
            elif isinstance(op, InsertFill):
                new_fills.append(op.row)
            else:
                rest.append(op)
        # an order inserted and updated in the same group: the update runs after the insert
        if new_orders:
            self._ins_order.executemany(conn, new_orders)
        if order_updates:
            self._upd_order.executemany(conn, list(order_updates.values()))
        if new_fills:
            self._ins_fill.executemany(conn, new_fills)
        for op in rest:
            if isinstance(op, SetFillState):
                if not op.seqs:
                    continue
                if op.batch_id is None:
                    rows = [{"q": q, "st": op.state} for q in op.seqs]
                    self._set_fill_state.executemany(conn, rows)
                else:
                    rows = [{"q": q, "st": op.state, "b": op.batch_id} for q in op.seqs]
                    self._set_fill_batch.executemany(conn, rows)
            elif isinstance(op, InsertBatch):
                row = {
                    "id": op.id,
                    "tx_id": op.tx_id,
                    "payload": op.payload,
                    "fills": json.dumps(list(op.fills)),
                    "state": PENDING,
                    "created_at": op.at,
                    "updated_at": op.at,
                }
                self._ins_batch.executemany(conn, [row])
            elif isinstance(op, SetBatchState):
                self._set_batch_state.executemany(conn, [{"i": op.id, "st": op.state, "u": op.at}])
            elif isinstance(op, SetMeta):
                found = conn.execute(select(meta_t.c.key).where(meta_t.c.key == op.key)).first()
                if found is None:
                    conn.execute(insert(meta_t).values(key=op.key, value=op.value))
                else:
                    conn.execute(
                        update(meta_t).where(meta_t.c.key == op.key).values(value=op.value)
                    )

    # ---- reads --------------------------------------------------------------------------

    def open_orders(self) -> list[BookOrder]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(orders_t).where(orders_t.c.status == "open").order_by(orders_t.c.seq)
            ).all()
        return [order_from_row(r) for r in rows]

    def orders_by_digest(self, digests: Iterable[str]) -> dict[str, BookOrder]:
        ds = list(set(digests))
        if not ds:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(orders_t).where(orders_t.c.digest.in_(ds))).all()
        return {r.digest: order_from_row(r) for r in rows}

    def order(self, digest: str) -> BookOrder | None:
        return self.orders_by_digest([digest]).get(digest)

    def orders_of(self, account: int, status: str | None, limit: int) -> list[BookOrder]:
        q = select(orders_t).where(orders_t.c.account == str(account))
        if status is not None:
            q = q.where(orders_t.c.status == status)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(orders_t.c.seq.desc()).limit(limit)).all()
        return [order_from_row(r) for r in rows]

    def max_seqs(self) -> tuple[int, int, int]:
        """(last order seq, last fill seq, last batch id), 0 when empty."""
        with self.engine.connect() as conn:
            a = conn.execute(select(func.max(orders_t.c.seq))).scalar()
            b = conn.execute(select(func.max(fills_t.c.seq))).scalar()
            c = conn.execute(select(func.max(batches_t.c.id))).scalar()
        return int(a or 0), int(b or 0), int(c or 0)

    def fills_in_state(self, *states: str) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(fills_t).where(fills_t.c.state.in_(states)).order_by(fills_t.c.seq)
                ).all()
            )

    def fills(
        self, market: int | None, account: int | None, after: int, limit: int
    ) -> list[dict[str, Any]]:
        q = select(fills_t).where(fills_t.c.seq > after)
        if market is not None:
            q = q.where(fills_t.c.market == market)
        if account is not None:
            a = str(account)
            q = q.where((fills_t.c.maker_account == a) | (fills_t.c.taker_account == a))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(fills_t.c.seq).limit(limit)).all()
        return [fill_json(r) for r in rows]

    def known_pairs(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (maker, taker) pairs are fills this matcher made."""
        if not pairs:
            return set()
        makers = list({m for m, _ in pairs})
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(fills_t.c.maker, fills_t.c.taker).where(fills_t.c.maker.in_(makers))
            ).all()
        mine = {(r.maker, r.taker) for r in rows}
        return {p for p in pairs if p in mine}

    def pending_batches(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(batches_t).where(batches_t.c.state == PENDING).order_by(batches_t.c.id)
                ).all()
            )

    def batch_states(self) -> dict[int, str]:
        with self.engine.connect() as conn:
            return {
                int(r.id): r.state
                for r in conn.execute(select(batches_t.c.id, batches_t.c.state)).all()
            }

    def meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            v = conn.execute(select(meta_t.c.value).where(meta_t.c.key == key)).scalar()
        return None if v is None else str(v)


class _Checkpointer:
    """Copies the SQLite WAL into the database file (`PRAGMA wal_checkpoint(PASSIVE)`, what
    SQLite's automatic checkpoint runs) on a daemon thread with its own connection, at most
    every `every` seconds after a commit of the writer connection. Off the commit path: a
    passive checkpoint runs beside the writer, and sqlite3 releases the GIL meanwhile, so
    it takes the second core, not the event loop's. Durability is the commit's (WAL,
    synchronous=FULL): the checkpoint only moves committed pages.

    A passive checkpoint beside a busy writer may never find the WAL fully copied when the
    writer starts its next transaction (which is when SQLite rewinds the WAL): once the
    WAL holds `restart_frames` pages, a RESTART checkpoint waits for the writer's commit
    in progress and makes the next one rewind it (a short stall, about every 64 MB)."""

    def __init__(self, engine: Engine, every: float = 0.1, restart_frames: int = 16_384) -> None:
        self.engine = engine
        self.every = every
        self.restart_frames = restart_frames
        self._due = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="matcher-db-checkpoint", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._due.set()

    def stop(self) -> None:
        self._stop.set()
        self._due.set()
        self._thread.join(timeout=10)

    def _checkpoint(self, conn: Connection) -> None:
        row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        if row[1] >= self.restart_frames:  # (busy, frames in the WAL, frames copied)
            conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").close()
        conn.commit()

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                self._due.wait()
                if self._stop.wait(self.every):
                    break
                self._due.clear()
                try:
                    if conn is None:
                        conn = self.engine.connect()
                    self._checkpoint(conn)
                except Exception:  # the next commit's wake retries; the WAL stays valid
                    log.exception("WAL checkpoint failed; retrying after the next commit")
                    if conn is not None:
                        conn.invalidate()
                        conn = None
            if conn is not None:  # a last one, so a stopped store leaves a small WAL
                try:
                    self._checkpoint(conn)
                except Exception:
                    log.exception("WAL checkpoint at close failed; the next start runs it")
        finally:
            if conn is not None:
                conn.close()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=5000")
    # 64 MiB of page cache (SQLite's default is 2 MiB): the digest-keyed indexes take
    # random pages, and under the bench the writer re-read ~115 pages a commit
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()
