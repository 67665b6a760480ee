"""The ABIs the standalone client needs, shipped in perpdex/abi/<Contract>.json so a bot
reads the chain without ape or a compiled build.

    python -m perpdex.sdk.lite.abi --write   # export from .build/__local__.json (make compile)
    python -m perpdex.sdk.lite.abi --check   # exit 1 when the committed ABIs are stale

`Clearinghouse.json` is the Clearinghouse's ABI merged with its Ops, Admin, Orders, Risk and
Treasury halves: every selector the main contract does not export reaches Ops (and from it
Admin, then Orders, then Risk, then Treasury) by delegatecall through its `__default__`, so
one address answers all six (contracts/Clearinghouse.vy).
tests/unit/test_lite_abi.py fails when the committed files differ from the compiled ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

ABI_DIR = Path(__file__).resolve().parents[2] / "abi"
BUILD = Path(__file__).resolve().parents[3] / ".build" / "__local__.json"

#: shipped file -> the compiled contracts merged into it (the first one's ABI first)
SHIPPED: dict[str, tuple[str, ...]] = {
    "Clearinghouse": (
        "Clearinghouse",
        "ClearinghouseOps",
        "ClearinghouseAdmin",
        "ClearinghouseRisk",
        "ClearinghouseOrders",
        "ClearinghouseTreasury",
    ),
    "ClearinghouseLens": ("ClearinghouseLens",),
    "LiquidationAuction": ("LiquidationAuction",),
    "LiquidityVault": ("LiquidityVault",),
    "MockERC20": ("MockERC20",),
    "OracleRouter": ("OracleRouter",),
}


def _key(entry: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    types = tuple(_canonical(i) for i in entry.get("inputs", ()))
    return str(entry["type"]), str(entry.get("name", "")), types


def _canonical(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param["components"])
        return f"({inner}){kind.removeprefix('tuple')}"
    return kind


def merged(contract_types: dict[str, Any], parts: tuple[str, ...]) -> list[dict[str, Any]]:
    """The ABI of `parts[0]` followed by every entry of the others it lacks (the halves'
    constructors and fallbacks are theirs alone)."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    for n, name in enumerate(parts):
        if name not in contract_types:
            raise SystemExit(f"{name} is not in {BUILD}; run `ape compile --force` first")
        for entry in contract_types[name]["abi"]:
            if n and entry["type"] in ("constructor", "fallback", "receive"):
                continue
            key = _key(entry)
            if key not in seen:
                seen.add(key)
                out.append(entry)
    return out


def compiled(build: Path = BUILD) -> dict[str, list[dict[str, Any]]]:
    """The shipped ABIs as the current build makes them."""
    if not build.exists():
        raise SystemExit(f"no compiled build at {build}; run `make compile` first")
    types = json.loads(build.read_text())["contractTypes"]
    return {name: merged(types, parts) for name, parts in SHIPPED.items()}


def render(abi: list[dict[str, Any]]) -> str:
    return json.dumps(abi, indent=1, sort_keys=True) + "\n"


@cache
def load(name: str) -> tuple[dict[str, Any], ...]:
    """A shipped ABI (perpdex/abi/<name>.json)."""
    path = ABI_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing; regenerate it with `python -m perpdex.sdk.lite.abi --write`"
        )
    return tuple(json.loads(path.read_text()))


def stale(build: Path = BUILD) -> list[str]:
    """Names of the shipped ABIs that differ from the build's."""
    return [
        name
        for name, abi in compiled(build).items()
        if not (ABI_DIR / f"{name}.json").exists()
        or (ABI_DIR / f"{name}.json").read_text() != render(abi)
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perpdex.sdk.lite.abi")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="export perpdex/abi/*.json")
    mode.add_argument("--check", action="store_true", help="exit 1 if they are stale")
    args = ap.parse_args(argv)
    if args.write:
        ABI_DIR.mkdir(exist_ok=True)
        for name, abi in compiled().items():
            (ABI_DIR / f"{name}.json").write_text(render(abi))
        print(f"wrote {len(SHIPPED)} ABIs to {ABI_DIR}")
        return 0
    bad = stale()
    if bad:
        print(
            f"stale ABIs in {ABI_DIR}: {', '.join(bad)}; run "
            "`python -m perpdex.sdk.lite.abi --write` and commit them",
            file=sys.stderr,
        )
        return 1
    print("shipped ABIs match the build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
