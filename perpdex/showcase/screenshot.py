"""The demo's dashboard screenshot: `perpdex dashboard` for the fund's owner, photographed
by headless Chromium through tests/browser/driver.js (playwright-core).

    screenshot_step(protocol, console, out_dir) -> Path | None

Without Chromium (CHROMIUM, default /usr/bin/chromium), node or node_modules/playwright-core
it prints a note and returns None: the rest of the demo does not need a browser.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from perpdex.deploy import Protocol

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "browser" / "driver.js"
SHOT = "dashboard.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing() -> str | None:
    """Why no screenshot can be taken here, or None."""
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        return f"chromium is not installed at {chromium} (apt-get install chromium)"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (ROOT / "node_modules" / "playwright-core").exists():
        return "node_modules/playwright-core is missing (make setup)"
    if not DRIVER.exists():
        return f"{DRIVER} is missing"
    return None


def _wait_health(proc: subprocess.Popen[str], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise RuntimeError(f"perpdex dashboard exited with {proc.returncode}: {out[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"perpdex dashboard did not listen within {timeout:.0f} s")


def _ask(driver: subprocess.Popen[str], op: str, **kw: Any) -> dict[str, Any]:
    assert driver.stdin is not None and driver.stdout is not None
    driver.stdin.write(json.dumps({"op": op, **kw}) + "\n")
    driver.stdin.flush()
    line = driver.stdout.readline()
    if not line:
        raise RuntimeError(f"the browser driver died during {op}")
    answer: dict[str, Any] = json.loads(line)
    if not answer.get("ok"):
        raise RuntimeError(f"browser {op}: {answer.get('error')}")
    return answer


def take(rpc: str, manifest: Path, owner: str, path: Path, cwd: Path) -> Path:
    """Start the dashboard for `owner`, screenshot its page to `path`, stop both."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "perpdex.cli.main", "--rpc", rpc, "--deployment", str(manifest),
         "dashboard", "--owner", owner, "--port", str(port), "--interval", "1"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )  # fmt: skip
    driver: subprocess.Popen[str] | None = None
    try:
        _wait_health(server, port, 60)
        driver = subprocess.Popen(
            [str(shutil.which("node")), str(DRIVER)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        _ask(driver, "open", url=f"http://127.0.0.1:{port}/", timeout_ms=30_000)
        path.parent.mkdir(parents=True, exist_ok=True)
        _ask(driver, "screenshot", path=str(path.resolve()))
        _ask(driver, "close")
    finally:
        if driver is not None:
            if driver.stdin is not None:
                driver.stdin.close()
            try:
                driver.wait(timeout=30)
            except subprocess.TimeoutExpired:
                driver.kill()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    return path


def screenshot_step(protocol: Protocol, console: Console, out_dir: Path) -> Path | None:
    """The fund's dashboard (ape test account 4, the story's owner) as a PNG in `out_dir`."""
    from ape import accounts, chain

    from perpdex.sdk.client import Deployment
    from perpdex.showcase.story import FUND

    why = missing()
    if why is not None:
        console.print(f"[yellow]no dashboard screenshot:[/] {why}")
        return None
    owner = str(accounts.test_accounts[FUND].address)
    with tempfile.TemporaryDirectory(prefix="perpdex-demo-") as tmp:
        manifest = Deployment.from_protocol(protocol).write(Path(tmp) / "local.json")
        try:
            shot = take(str(chain.provider.uri), manifest, owner, out_dir / SHOT, Path(tmp))
        except RuntimeError as e:
            console.print(f"[yellow]no dashboard screenshot:[/] {e}")
            return None
    console.print(f"dashboard screenshot of the fund ({owner}): {shot}")
    return shot
