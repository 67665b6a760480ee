"""What a keeper remembers between runs, in one JSON file.

The chain is the source of truth for every auction (a keeper re-reads `auction(account)`
each tick, so it acts the same whether it ran for a week or just started). What the chain
does not give cheaply is *which accounts exist*: the keeper learns them from
`AccountOpened` and `Fill` logs, and the file keeps the accounts it has seen and the last
block it scanned, so a restart scans only the blocks it missed. The orders keeper also
keeps the signed orders it saw finish for good (`done`), so it never asks the chain
about them again (the chain would refuse them anyway: their nonces are consumed).

The file is rewritten atomically (temporary file + rename) after every tick, so a keeper
killed at any moment leaves either the previous or the new state, never half of one. A
file written for another chain or another Clearinghouse is refused, not silently reused.

Two keepers on one state file would each rewrite it with their own cursor and accounts;
`StateLock` (held for the whole run by `perpdex keeper liquidate` and `ape run keeper`)
refuses the second one. The lock is an advisory `flock` on `<state>.lock`, which the
operating system releases when the process ends however it ends, so it never goes stale.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from perpdex.errors import PerpdexError

__all__ = ["STATE_VERSION", "KeeperState", "StateLock", "StateLocked", "StateMismatch"]

STATE_VERSION = 1


class StateMismatch(PerpdexError):
    """The state file belongs to another chain or deployment."""


class StateLocked(PerpdexError):
    """Another running keeper holds the state file."""


class StateLock:
    """Exclusive use of one keeper state file while a keeper runs: `with StateLock(path):`.

    Raises StateLocked (naming the other process) when another keeper holds it.
    """

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        self.path = state_path.with_name(state_path.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise StateLocked(
                f"another keeper (pid {holder}) is running on {self.state_path}; stop it "
                "first, or give this one its own state file with --state PATH "
                "(PERPDEX_KEEPER_STATE for `ape run keeper`)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


@dataclass
class KeeperState:
    """Cursor and known accounts of one keeper on one deployment."""

    chain_id: int
    clearinghouse: str
    cursor: int = -1  # last block whose logs were scanned (-1: none yet)
    accounts: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)  # successful actions by kind
    path: Path | None = None
    # one-shot jobs finished for good, id -> why (the orders keeper: signed orders
    # executed, cancelled, expired or invalid); written only when not empty
    done: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls, path: Path | None, chain_id: int, clearinghouse: str, start_block: int = 0
    ) -> KeeperState:
        """The state in `path`, or a fresh one (cursor before `start_block`) when the file
        does not exist or `path` is None (in-memory keeper)."""
        fresh = cls(chain_id, clearinghouse, cursor=start_block - 1, path=path)
        if path is None or not path.exists():
            return fresh
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise PerpdexError(
                f"cannot read keeper state {path} ({e}); fix or delete it (the keeper then "
                "rescans the chain from the start)"
            ) from e
        if data.get("version") != STATE_VERSION:
            raise PerpdexError(
                f"{path} has state version {data.get('version')!r}, this keeper writes "
                f"{STATE_VERSION}; delete it to rescan the chain"
            )
        if int(data["chain_id"]) != chain_id or str(data["clearinghouse"]).lower() != (
            clearinghouse.lower()
        ):
            raise StateMismatch(
                f"{path} was written for clearinghouse {data['clearinghouse']} on chain "
                f"{data['chain_id']}, not {clearinghouse} on chain {chain_id}; pass another "
                "--state file or delete this one (a restarted anvil needs a fresh state)"
            )
        return cls(
            chain_id=chain_id,
            clearinghouse=clearinghouse,
            cursor=int(data["cursor"]),
            accounts={int(a, 16) for a in data.get("accounts", [])},
            counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
            path=path,
            done={str(k): str(v) for k, v in data.get("done", {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": STATE_VERSION,
            "chain_id": self.chain_id,
            "clearinghouse": self.clearinghouse,
            "cursor": self.cursor,
            "accounts": sorted(f"{a:#x}" for a in self.accounts),
            "counts": dict(sorted(self.counts.items())),
        }
        if self.done:
            out["done"] = dict(sorted(self.done.items()))
        return out

    def save(self) -> None:
        """Write the state atomically (no-op for an in-memory keeper)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=2)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
