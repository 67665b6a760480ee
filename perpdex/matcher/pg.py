"""A throwaway PostgreSQL server for tests and the benchmark: initdb in a temp dir, start on
a free loopback port, hand out fresh databases, stop and delete everything on exit.

Uses the distribution's server binaries (Debian: /usr/lib/postgresql/<v>/bin, package
`postgresql`; `.ci/run` installs it when missing). PostgreSQL refuses to run as root, so as
root the server runs as the `postgres` system user (subprocess's user=/group=, so the
process we stop is the server itself), owning the data dir.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType


class NoPostgres(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_bindir() -> Path | None:
    env = os.environ.get("PERPDEX_PG_BINDIR")
    if env:
        return Path(env)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    dirs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2].split(".")[0])
    )
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "postgres").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """`with TempPostgres() as pg: url = pg.new_database("x")`. `durable=False` turns fsync
    off (tests); the benchmark keeps PostgreSQL's defaults."""

    def __init__(self, durable: bool = True) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise NoPostgres(
                "PostgreSQL server binaries not found (initdb, postgres): install them with "
                "`apt-get install -y postgresql` or set PERPDEX_PG_BINDIR"
            )
        self.bindir = bindir
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="perpdex-pg-"))
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.as_root = os.geteuid() == 0
        self._n = 0

    def _as(self) -> dict[str, object]:
        if not self.as_root:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": self.root}

    def start(self) -> TempPostgres:
        data = self.root / "data"
        if self.as_root:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres", "postgres")
        initdb = [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres"]
        initdb += ["-A", "trust", "--no-sync", "-E", "UTF8"]
        subprocess.run(initdb, check=True, capture_output=True, **self._as())  # type: ignore[call-overload]
        opts = ["-c", f"unix_socket_directories={self.root}", "-c", "listen_addresses=127.0.0.1"]
        if not self.durable:
            opts += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port), *opts],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "server.log", "wb"),  # noqa: SIM115
            **self._as(),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                self._admin("SELECT 1")
                return self
            except Exception as e:
                if self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / "server.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"PostgreSQL did not start ({e}):\n{log}") from e
                time.sleep(0.1)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())

    def new_database(self, prefix: str = "t") -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        self._n += 1
        name = f"{prefix}_{self._n}"
        self._admin(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
