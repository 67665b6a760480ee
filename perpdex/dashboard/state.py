"""What the dashboard shows, read from the chain through the SDK: one JSON document per
refresh (`Tracker.read`), built from the SDK's own result objects and the CLI's `--json`
builders (perpdex/cli/jsonout.py), so every figure on the page is the SDK's by
construction: `perpdex portfolio --all --json`, `perpdex portfolio --json` and
`perpdex quote --json` give the same numbers at the same block.

Incremental: the event history (fills, flows, liquidation charges: P&L per strategy and
its series), the marks' history (`MarkUpdated`: the markets' returns) and the accounts
whose liquidation began are read once, then only the blocks after the last refresh. The
margin figures (portfolio, summary, markets, auctions) are re-read in full every time.
A chain reorganisation deeper than the last refresh is not undone (restart the dashboard).

Document layout (money, prices and ratios are exact decimal strings, as in `--json`):

    network, owner, rpc, block_number, block_time, from_block, refreshed_at
    strategies   `perpdex portfolio --all --json` without the shock: accounts (equity,
                 margin used, maintenance, free, health, P&L realised / unrealised /
                 funding / fees / total), totals, the P&L correlation
    accounts     per sub-account: `perpdex portfolio --json` (positions with liquidation
                 prices, margin, scenario losses, the requirement and what binds it),
                 balances and loss cap
    series       per sub-account id: the cumulative P&L series (`AccountHistory.series`)
    markets      `perpdex quote --json` without a market
    market_correlation   returns of the marks since from_block (`returns_correlation`)
    risk_book    the governed stress scenarios: name and shock per market (bp)
    loss_caps    every sub-account with a floor: equity, headroom, triggerable, the fee
    liquidations running liquidations (the owner's and any other account's seen starting
                 since from_block) with their auction
    rebalancer   the state file of `perpdex keeper rebalance`, or "not running"
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpdex.cli import jsonout
from perpdex.errors import PerpdexError
from perpdex.sdk import history as hist

if TYPE_CHECKING:
    from perpdex.sdk.client import Liquidation, PerpdexClient, Portfolio

__all__ = ["Tracker", "figures", "rebalancer_status"]

ZERO = Decimal(0)
#: Tries to read every sub-account's portfolio at one block (a block mined mid-read).
SAME_BLOCK_TRIES = 3
#: Top-level fields of the rebalancer's state file shown on the page (the rest is kept out).
REBALANCER_FIELDS = 12


def figures(document: dict[str, Any]) -> dict[str, Any]:
    """The document less what changes without the figures changing (the block, the time
    of the refresh): two refreshes with equal figures push nothing to the page."""
    return {
        k: v
        for k, v in document.items()
        if k not in ("block_number", "block_time", "refreshed_at", "status")
    }


def _lock_held(state: Path) -> bool:
    """Whether a process holds `<state>.lock` (the keepers' `StateLock`): a running keeper.
    Probed with a shared non-blocking lock, released at once."""
    lock = state.with_name(state.name + ".lock")
    if not lock.exists():
        return False
    try:
        with lock.open("r") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def rebalancer_status(path: Path) -> dict[str, Any]:
    """The rebalancer's row: "not running" without a state file; with one, running while
    its lock is held (else "stopped"), when it last wrote, and its top-level fields."""
    out: dict[str, Any] = {"state_file": str(path), "status": "not running", "updated": None}
    out["fields"] = {}
    if not path.exists():
        return out
    out["status"] = "running" if _lock_held(path) else "stopped"
    try:
        out["updated"] = int(path.stat().st_mtime)
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        out["fields"] = {"error": f"unreadable state file ({e})"}
        return out
    if isinstance(data, dict):
        shown = list(data.items())[:REBALANCER_FIELDS]
        out["fields"] = {
            str(k): v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)
            for k, v in shown
        }
    return out


@dataclass
class _Read:
    """The margin figures of one refresh, all at `block`."""

    block: int
    block_time: int
    portfolios: dict[int, Portfolio]


class Tracker:
    """Reads one owner's sub-accounts and the markets through `client` (the lite
    `ReadClient` in the dashboard; any `PerpdexClient` works), keeping the event, mark and
    liquidation history between refreshes."""

    def __init__(
        self,
        client: PerpdexClient,
        owner: str,
        *,
        from_block: int = 0,
        rebalance_state: Path | None = None,
        chunk: int = hist.LOG_CHUNK,
        rpc: str | None = None,
    ) -> None:
        self.client = client
        self.owner = owner
        self.from_block = from_block
        self.rebalance_state = rebalance_state
        self.chunk = chunk
        self.rpc = rpc
        self.cursor = from_block - 1  # last block whose logs were read
        self.events: dict[int, list[hist.AccountEvent]] = {}  # per account read so far
        self.marks: dict[int, list[hist.MarkPoint]] = {}
        self.liquidated: dict[int, None] = {}  # accounts seen starting a liquidation
        self._symbols = client.deployment.markets

    # --- reading -------------------------------------------------------------------------

    def head(self) -> int:
        """The node's latest block number (a `RpcError` when it stopped)."""
        number, _ = self.client.transport.block("latest")
        return int(number or 0)

    def _portfolios(self, ids: Sequence[int]) -> _Read:
        """Every sub-account's portfolio at one block (re-read if a block was mined in
        between, up to SAME_BLOCK_TRIES)."""
        for _ in range(SAME_BLOCK_TRIES):
            pfs = {a: self.client.portfolio(a) for a in ids}
            blocks = {int(pf.block_number or 0) for pf in pfs.values()}
            if len(blocks) <= 1:
                break
        block = min(blocks) if pfs else self.head()
        _, stamp = self.client.transport.block(block)
        return _Read(block, stamp, pfs)

    def _history(self, pfs: dict[int, Portfolio], head: int) -> list[hist.AccountHistory]:
        """Each account's `AccountHistory` since from_block (what `client.history(ids,
        from_block)` returns), reading only the blocks after the cursor (and the whole
        range for an account opened since the last refresh)."""
        known = [a for a in pfs if a in self.events]
        new = [a for a in pfs if a not in self.events]
        if new:
            for h in self.client.history(new, self.from_block, chunk=self.chunk, portfolios=pfs):
                self.events[h.account] = list(h.events)
        if known and self.cursor < head:
            start = max(self.cursor + 1, self.from_block)
            for h in self.client.history(known, start, chunk=self.chunk, portfolios=pfs):
                self.events[h.account] += h.events
        return [
            hist.AccountHistory(
                info=pfs[a].info,
                from_block=self.from_block,
                to_block=head,
                events=tuple(self.events[a]),
                unrealized_pnl=pfs[a].unrealized_pnl,
                funding_accrued=-pfs[a].funding_owed,
            )
            for a in pfs
        ]

    def _logs_since_cursor(self, head: int) -> None:
        """The marks and liquidation starts in the blocks after the cursor."""
        start = max(self.cursor + 1, self.from_block)
        if start > head:
            return
        for m, points in self.client.mark_history(start, head, chunk=self.chunk).items():
            self.marks.setdefault(m, []).extend(points)
        if self.client.deployment.auction is not None:
            for a in self.client.liquidation_starts(start, head, chunk=self.chunk):
                self.liquidated[a] = None

    def read(self) -> dict[str, Any]:
        """One refresh: the document described in the module docstring."""
        client = self.client
        infos = client.accounts(self.owner)
        ids = [i.id for i in infos]
        snap = self._portfolios(ids)
        head = snap.block
        if head < self.from_block:
            raise PerpdexError(
                f"from block {self.from_block} is after the chain's head {head}; give a block "
                "at or before it (0: the whole chain)"
            )
        histories = self._history(snap.portfolios, head) if ids else []
        self._logs_since_cursor(head)
        self.cursor = max(self.cursor, head)
        lines = tuple(hist.StrategyLine(snap.portfolios[h.account], h) for h in histories)
        book = hist.StrategyBook(
            infos[0].owner if infos else self.owner,
            head,
            self.from_block,
            lines,
            hist.correlate({h.account: h.series for h in histories}),
        )
        network = client.deployment.network
        summaries = {a: client.summary(a) for a in ids}
        try:
            risk = client.risk_book()
        except PerpdexError:
            risk = None
        accounts = []
        for a in ids:
            pf = snap.portfolios[a]
            shocks = (
                {p.symbol: tuple(row[p.market] for row in risk.shocks) for p in pf.positions}
                if risk is not None
                else {}
            )
            s = summaries[a]
            accounts.append(
                {
                    **jsonout.portfolio(pf, shocks),
                    "balances": {k: jsonout.num(v) for k, v in s.balances.items()},
                    "loss_cap": jsonout.num(s.loss_cap) if s.loss_cap else None,
                }
            )
        markets = client.markets()
        return {
            "network": network,
            "owner": book.owner,
            "rpc": self.rpc,
            "block_number": head,
            "block_time": snap.block_time,
            "from_block": self.from_block,
            "refreshed_at": int(time.time()),
            "strategies": jsonout.strategies(book, network, None),
            "accounts": accounts,
            "series": {
                f"{h.account:#x}": [
                    {"block_number": p.block_number, "pnl": jsonout.num(p.pnl), "label": p.label}
                    for p in h.series
                ]
                for h in histories
            },
            "markets": jsonout.markets(network, markets)["markets"],
            "market_correlation": self._market_correlation(),
            "risk_book": self._risk_book(risk),
            "loss_caps": self._loss_caps(summaries, snap.portfolios),
            "liquidations": self._liquidations(ids, snap.block_time),
            "rebalancer": (
                rebalancer_status(self.rebalance_state)
                if self.rebalance_state is not None
                else {"state_file": None, "status": "not running", "updated": None, "fields": {}}
            ),
        }

    # --- sections ------------------------------------------------------------------------

    def _market_correlation(self) -> dict[str, Any]:
        corr = hist.returns_correlation(
            {m: self.marks.get(m, []) for m in range(len(self._symbols))}, self._symbols
        )
        return {
            "symbols": list(corr.symbols),
            "blocks": list(corr.blocks),
            "points": corr.points,
            "needed": hist.MIN_POINTS,
            "enough_history": corr.enough,
            "matrix": (
                None
                if corr.matrix is None
                else [[jsonout.num(r) for r in row] for row in corr.matrix]
            ),
        }

    def _risk_book(self, risk: Any) -> dict[str, Any] | None:
        if risk is None:
            return None
        symbols = self._symbols
        return {
            "floor_bps": risk.floor_bps,
            "maintenance_bps": risk.maintenance_bps,
            "scenarios": [
                {
                    "index": k,
                    "name": name,
                    "shocks_bp": {symbols[m]: row[m] for m in range(min(len(symbols), len(row)))},
                }
                for k, (name, row) in enumerate(zip(risk.names, risk.shocks, strict=True))
            ],
        }

    def _loss_caps(self, summaries: dict[int, Any], pfs: dict[int, Portfolio]) -> dict[str, Any]:
        """Each sub-account with a floor: equity against it at the cached marks (as
        `perpdex loss-cap show`); triggerable once below it with positions to close."""
        rows = []
        for a, s in summaries.items():
            if not s.loss_cap:
                continue
            equity = s.margin.equity
            headroom = equity - s.loss_cap
            rows.append(
                {
                    **jsonout.account_info(s.info),
                    "floor": jsonout.num(s.loss_cap),
                    "equity": jsonout.num(equity),
                    "headroom": jsonout.num(headroom),
                    "headroom_share": jsonout.num(headroom / equity) if equity > 0 else None,
                    "triggerable": headroom < 0 and bool(pfs[a].positions),
                }
            )
        fee = self.client.loss_cap_fee() if rows else None
        return {"trigger_fee": jsonout.num(fee), "accounts": rows}

    def _liquidations(self, own: Sequence[int], now: int) -> dict[str, Any]:
        """Running liquidations: the owner's sub-accounts and every account seen starting
        one since from_block, that are in liquidation now, with their auction."""
        auction = self.client.deployment.auction
        if auction is None:
            return {"auction": None, "running": []}
        candidates = list(dict.fromkeys([*own, *self.liquidated]))
        found: list[Liquidation] = self.client.liquidations(candidates)
        mine = set(own)
        running = []
        for q in found:
            if not q.in_liquidation:
                continue
            m = q.margin
            running.append(
                {
                    **jsonout.account_info(q.info),
                    "own": q.info.id in mine,
                    "equity": jsonout.num(m.equity),
                    "maintenance": jsonout.num(m.maintenance),
                    "health": jsonout.num(m.health),
                    "auction_active": q.auction_active,
                    "tranche": q.tranche,
                    "lot_left": jsonout.num(q.lot_left),
                    "lot_notional": jsonout.num(q.lot_notional),
                    "discount": jsonout.num(q.discount),
                    "clock_start": q.clock_start,
                    "deadline": q.deadline,
                    "seconds_left": max(q.deadline - now, 0) if q.deadline else None,
                }
            )
        return {"auction": auction, "running": running}
