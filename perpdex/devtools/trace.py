"""Gas breakdown of one transaction from anvil's struct logs (read before a gas cut).

`breakdown(request, txhash)` replays `debug_traceTransaction` (default struct logger,
memory and storage off) and sums what each opcode cost, with the step's own cost only
(a CALL's figure excludes what the callee spent), and:
  - storage: per (storage address, slot) the SLOADs (cold 2,100 / warm 100) and SSTOREs
    classed by their EIP-2929/3529 cost (set 0 -> non-zero 20,000, update 2,900,
    no-op or dirty 100, + 2,100 when cold);
  - logs: count, topics, data bytes and gas;
  - calls: target, kind and gas (a precompile's figure includes its own cost, e.g.
    ecrecover 3,000 + the call's access cost);
  - calldata: the transaction's 16 / 4 gas per non-zero / zero byte, and the intrinsic.
`labels` names slots (`slot_labels` builds them from the compiler's layout for given map
keys); `report` renders a text table (per-unit figures with `per`, e.g. 20 fills).
Used by `ape run trace_batch` (scripts/trace_batch.py) for the signed-batch bench row.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak

from perpdex.config import ROOT

CALLS = ("CALL", "STATICCALL", "DELEGATECALL", "CALLCODE")
PRECOMPILES = {1: "ecrecover", 2: "sha256", 3: "ripemd160", 4: "identity", 5: "modexp"}


@dataclass
class SlotUse:
    sload_cold: int = 0
    sload_warm: int = 0
    sstore: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    gas: int = 0


@dataclass
class Breakdown:
    gas_used: int
    intrinsic: int
    calldata_gas: int
    calldata_bytes: int
    execution: int
    by_op: dict[str, list[int]]  # op -> [count, gas]
    slots: dict[tuple[str, int], SlotUse]
    logs: list[tuple[int, int, int]]  # (topics, data bytes, gas)
    calls: dict[str, list[int]]  # "KIND target" -> [count, gas]
    by_pc: dict[tuple[str, int], int]  # (code address, pc) -> own gas
    steps: list[tuple[str, int, str, int, int]]  # (code address, pc, op, own gas, depth)


def _word(k: int | bytes) -> bytes:
    return k.rjust(32, b"\0") if isinstance(k, bytes) else k.to_bytes(32, "big")


def _map(slot: int, key: int | bytes) -> int:
    return int.from_bytes(keccak(_word(slot) + _word(key)), "big")


def sstore_kind(cost: int) -> str:
    cold = cost >= 2100 and cost - 2100 in (20000, 2900, 100)
    base = cost - 2100 if cold else cost
    kind = {20000: "set", 2900: "update", 100: "noop/dirty"}.get(base, f"{base}")
    return f"{kind}{' cold' if cold else ''}"


def breakdown(request: Callable[[str, list[Any]], Any], txhash: str) -> Breakdown:
    tx = request("eth_getTransactionByHash", [txhash])
    receipt = request("eth_getTransactionReceipt", [txhash])
    data = bytes.fromhex(str(tx["input"]).removeprefix("0x"))
    calldata_gas = sum(16 if b else 4 for b in data)
    gas_used = int(receipt["gasUsed"], 16)
    to = str(tx["to"]).lower()
    res = request(
        "debug_traceTransaction",
        [txhash, {"disableMemory": True, "disableStorage": True, "enableReturnData": False}],
    )
    steps: list[dict[str, Any]] = res["structLogs"]
    by_op: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    slots: dict[tuple[str, int], SlotUse] = defaultdict(SlotUse)
    logs: list[tuple[int, int, int]] = []
    calls: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_pc: dict[tuple[str, int], int] = defaultdict(int)
    flat: list[tuple[str, int, str, int, int]] = []
    # (code address, storage address) per depth
    ctx: list[tuple[str, str]] = [(to, to)]
    pending: list[tuple[str, str]] = []
    # gas consumed by a child frame, for its caller's CALL figure: last step of each child
    n = len(steps)
    execution = 0
    for i, s in enumerate(steps):
        op, depth, gas, cost = s["op"], s["depth"], s["gas"], s["gasCost"]
        while len(ctx) > depth:
            ctx.pop()
        if len(ctx) < depth and pending:
            ctx.append(pending.pop())
        own = cost
        nxt = steps[i + 1] if i + 1 < n else None
        if nxt is not None and nxt["depth"] == depth:
            own = gas - nxt["gas"]
        elif nxt is not None and nxt["depth"] > depth:
            # entered a child: own = gas - child's start - (what the child returned)
            j = i + 1
            while j < n and steps[j]["depth"] > depth:
                j += 1
            after = steps[j]["gas"] if j < n else 0
            own = gas - after - (nxt["gas"] - _child_left(steps, i + 1, j, depth + 1))
        execution += own
        by_op[op][0] += 1
        by_op[op][1] += own
        stack = s.get("stack") or []
        code, store = ctx[-1] if ctx else (to, to)
        by_pc[(code, s["pc"])] += own
        flat.append((code, s["pc"], op, own, depth))
        if op == "SLOAD":
            u = slots[(store, int(stack[-1], 16))]
            if cost >= 2100:
                u.sload_cold += 1
            else:
                u.sload_warm += 1
            u.gas += own
        elif op == "SSTORE":
            u = slots[(store, int(stack[-1], 16))]
            u.sstore[sstore_kind(cost)] += 1
            u.gas += own
        elif op.startswith("LOG"):
            logs.append((int(op[3:]), int(stack[-2], 16), own))
        elif op in CALLS:
            target = int(stack[-2], 16)
            name = PRECOMPILES.get(target, f"{target:#042x}")
            calls[f"{op} {name}"][0] += 1
            calls[f"{op} {name}"][1] += own
            addr = f"{target:#042x}"
            if nxt is not None and nxt["depth"] > depth:
                pending.append((addr, store if op == "DELEGATECALL" else addr))
    return Breakdown(
        gas_used=gas_used,
        intrinsic=gas_used - execution,
        calldata_gas=calldata_gas,
        calldata_bytes=len(data),
        execution=execution,
        by_op=dict(by_op),
        slots=dict(slots),
        logs=logs,
        calls=dict(calls),
        by_pc=dict(by_pc),
        steps=flat,
    )


def _child_left(steps: list[dict[str, Any]], start: int, end: int, depth: int) -> int:
    """Gas the child frame (steps[start:end]) had left when it returned."""
    # the child's last step at its own depth: its gas less its cost is what it returns
    k = end - 1
    while k >= start and steps[k]["depth"] != depth:
        k -= 1
    last = steps[k]
    return int(last["gas"]) - int(last["gasCost"])


def layout(contract: str = "ClearinghouseOrders") -> dict[str, tuple[int, str]]:
    """name -> (slot, type) of every storage variable, from `vyper -f layout`."""
    vyper = Path(sys.executable).with_name("vyper")
    out = subprocess.run(
        [str(vyper), "-p", "contracts", f"contracts/{contract}.vy", "-f", "layout"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, tuple[int, str]] = {}
    for module, vs in json.loads(out.stdout)["storage_layout"].items():
        for name, v in vs.items():
            found[f"{module}.{name}"] = (int(v["slot"]), str(v["type"]))
    return found


def slot_labels(
    vars_: dict[str, tuple[int, str]], accounts: Iterable[int], small: int = 32
) -> dict[int, str]:
    """Slot -> label for plain variables, fixed arrays (index < `small`), and maps keyed by
    the given accounts or a small integer (two levels: [account][0..small))."""
    accts = list(accounts)
    names = {a: f"acct{n}" for n, a in enumerate(accts)}
    labels: dict[int, str] = {}
    for name, (slot, typ) in vars_.items():
        short = name.split(".", 1)[1]
        if not typ.startswith("HashMap"):
            if typ.endswith("]"):
                for k in range(small):
                    labels[slot + k] = f"{short}[{k}]"
            labels[slot] = labels.get(slot, short)
            continue
        inner = typ.split(",", 1)[1]
        for a in accts:
            base = _map(slot, a)
            who = names[a]
            labels[base] = f"{short}[{who}]"
            if inner.strip().startswith("HashMap") or inner.strip().endswith("]]"):
                for k in range(small):
                    labels[_map(base, k)] = f"{short}[{who}][{k}]"
                    labels[base + k] = labels.get(base + k, f"{short}[{who}][{k}]")
        for k in range(small):
            labels.setdefault(_map(slot, k), f"{short}[{k}]")
    return labels


def report(b: Breakdown, labels: dict[int, str] | None = None, per: int = 1) -> str:
    """Text breakdown; per-unit columns divide by `per` (e.g. the fills of a batch)."""
    labels = labels or {}
    f = float(per)
    out = [
        f"gas used {b.gas_used:,} ({b.gas_used / f:,.0f} per unit of {per}); "
        f"execution {b.execution:,}; intrinsic+calldata-refund {b.intrinsic:,}; "
        f"calldata {b.calldata_bytes:,} B = {b.calldata_gas:,} gas "
        f"({b.calldata_bytes / f:,.0f} B, {b.calldata_gas / f:,.0f} gas per unit); "
        f"refund {b.execution + 21_000 + b.calldata_gas - b.gas_used:,}",
        "",
        "by opcode (own gas, excl. callees)        count      gas   per unit",
    ]
    for op, (cnt, gas) in sorted(b.by_op.items(), key=lambda kv: -kv[1][1])[:30]:
        out.append(f"  {op:<36} {cnt:>8,} {gas:>9,} {gas / f:>9,.0f}")
    out.append("")
    out.append("storage by label (slot classes summed)  sload c/w  sstore kinds          gas/unit")
    grouped: dict[str, list[Any]] = {}
    for (_addr, slot), u in b.slots.items():
        lab = labels.get(slot, f"?{slot:#x}"[:14])
        # collapse per-account labels into one row per variable
        key = lab
        for token in lab.replace("]", "[").split("["):
            if token.startswith("acct"):
                key = key.replace(token, "*")
        g = grouped.setdefault(key, [0, 0, defaultdict(int), 0, set()])
        g[0] += u.sload_cold
        g[1] += u.sload_warm
        for k, v in u.sstore.items():
            g[2][k] += v
        g[3] += u.gas
        g[4].add(slot)
    for key, (c_, w, st, gas, ss) in sorted(grouped.items(), key=lambda kv: -kv[1][3]):
        writes = ", ".join(f"{k} {v}" for k, v in sorted(st.items()))
        out.append(f"  {key:<32} ({len(ss):>3} slots) {c_:>4}/{w:<5} {writes:<32} {gas / f:>8,.0f}")
    out.append("")
    topics = sum(t for t, _, _ in b.logs)
    size = sum(d for _, d, _ in b.logs)
    lg = sum(g for _, _, g in b.logs)
    out.append(
        f"logs {len(b.logs)} ({len(b.logs) / f:.1f}/unit): {topics} topics, {size:,} data "
        f"bytes, {lg:,} gas ({lg / f:,.0f}/unit)"
    )
    shapes: dict[tuple[int, int], int] = defaultdict(int)
    for t, d, _ in b.logs:
        shapes[(t, d)] += 1
    for (t, d), cnt in sorted(shapes.items()):
        out.append(f"  {cnt:>4} x LOG{t} with {d} data bytes")
    out.append("")
    out.append("calls (own gas: access + precompile, excl. callee code)")
    for k, (cnt, gas) in sorted(b.calls.items(), key=lambda kv: -kv[1][1]):
        out.append(f"  {k:<60} {cnt:>5} {gas:>9,} {gas / f:>8,.0f}")
    return "\n".join(out)


def pc_functions(contract: str, lines: bool = False) -> tuple[bytes, list[tuple[int, str]]]:
    """The runtime code of `contracts/<contract>.vy` and, sorted by pc, the function whose
    source each mapped pc comes from ("file.function"; with `lines`, "file:line function").
    Vyper lays a function's code out contiguously, so an unmapped pc belongs to the
    function of the mapped pc before it."""
    import vyper.compiler as vc  # type: ignore[import-untyped]
    from vyper.compiler.input_bundle import FilesystemInputBundle  # type: ignore[import-untyped]

    bundle = FilesystemInputBundle([ROOT / "contracts", ROOT, *[Path(p) for p in sys.path if p]])
    fi = bundle.load_file(ROOT / "contracts" / f"{contract}.vy")
    out = vc.compile_from_file_input(
        fi, input_bundle=bundle, output_formats=["source_map_runtime", "bytecode_runtime"]
    )
    files = {sid: Path(str(p)) for p, sid in bundle._source_ids.items()}
    names: dict[int, list[str]] = {}
    for sid, path in files.items():
        current, seen = "-", []
        for text in path.read_text().splitlines():
            if text.startswith("def "):
                current = text[4:].split("(", 1)[0]
            seen.append(current)
        names[sid] = seen
    sm = out["source_map_runtime"]
    rows: list[tuple[int, str]] = []
    for pc, (sid, _node) in sm["pc_ast_map"].items():
        pos = sm["pc_pos_map"].get(pc)
        if pos is None or sid not in files:
            continue
        line = int(pos[0])
        fn = names[sid][line - 1] if 0 < line <= len(names[sid]) else "-"
        label = f"{files[sid].stem}:{line} {fn}" if lines else f"{files[sid].stem}.{fn}"
        rows.append((int(pc), label))
    rows.sort()
    return bytes.fromhex(out["bytecode_runtime"].removeprefix("0x")), rows


def by_function(
    b: Breakdown,
    request: Callable[[str, list[Any]], Any],
    contracts: Iterable[str],
    lines: bool = False,
) -> dict[str, list[int]]:
    """ "file.function" (with `lines`: "file:line function") -> [storage/log/call gas,
    other gas] of the steps in code whose deployed bytes start with one of `contracts`'
    runtime code. A line's figure is approximate: the compiler maps some pcs (calls'
    argument set-up, returns) to the line that calls or to none."""
    import bisect

    maps = {n: pc_functions(n, lines) for n in contracts}
    code_of: dict[str, tuple[list[int], list[str]]] = {}
    for addr in {a for a, _ in b.by_pc}:
        code = bytes.fromhex(str(request("eth_getCode", [addr, "latest"])).removeprefix("0x"))
        for runtime, rows in maps.values():
            if code[: len(runtime)] == runtime:
                code_of[addr] = ([pc for pc, _ in rows], [fn for _, fn in rows])
    heavy = {"SLOAD", "SSTORE", *CALLS, "LOG0", "LOG1", "LOG2", "LOG3", "LOG4"}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for addr, pc, op, gas, _depth in b.steps:
        known = code_of.get(addr)
        if known is None:
            fn = f"{addr[:10]}.."
        else:
            k = bisect.bisect_right(known[0], pc) - 1
            fn = known[1][k] if k >= 0 else "<dispatch>"
        out[fn][0 if op in heavy else 1] += gas
    return dict(out)
