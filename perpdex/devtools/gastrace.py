"""Opcode-level gas breakdown of one transaction, from anvil's struct-log tracer.

Read this before chasing gas in a hot path: it says where a transaction's gas goes, by
opcode class, by contract (code run, storage touched), by storage slot (SLOADs and
SSTOREs, cold or warm, with the variable's name when the compiler's storage layout
knows it), by event (topics and data bytes) and by call (cold or warm account access).

    from perpdex.devtools.gastrace import trace, report
    t = trace(chain.provider.make_request, txhash, names={addr: "Clearinghouse", ...},
              layouts={addr: layout_json}, keys=[account_id, 0, 1])
    print(report(t))

`ape run bench_gas` prints it for the rows it computes a floor for when the environment
has PERPDEX_GAS_TRACE=<file> (the breakdowns are written there, as markdown).

The per-opcode costs are the tracer's `gasCost` except for calls, whose `gasCost` includes
the gas forwarded: there the cost is the EIP-2929 account access (2,600 cold, 100 warm,
warmth tracked here from the transaction's own accesses) plus value transfer, and the
rest of what the call frame consumed is charged to the callee's opcodes. SSTORE costs are
before refunds; the refund is reported apart (gas used = intrinsic + executed - refund).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eth_hash.auto import keccak

CALLS = {"CALL", "STATICCALL", "DELEGATECALL", "CALLCODE"}
# precompiles are warm from the start (EIP-2929)
_PRECOMPILES = {f"0x{i:040x}" for i in range(1, 11)}

# opcodes whose cost is storage, account access or logging (the rest is computation)
_ACCESS_OPS = CALLS | {
    "SLOAD",
    "SSTORE",
    "TLOAD",
    "TSTORE",
    "EXTCODESIZE",
    "EXTCODECOPY",
    "EXTCODEHASH",
    "BALANCE",
}

Request = Callable[[str, list[Any]], Any]


def _word(x: str | int) -> int:
    return x if isinstance(x, int) else int(x, 16)


def _addr(x: int) -> str:
    return f"0x{x & ((1 << 160) - 1):040x}"


def _h(a: int, b: int) -> int:
    """Vyper's HashMap slot: keccak256(slot ++ key), both 32-byte words."""
    return int.from_bytes(keccak(a.to_bytes(32, "big") + b.to_bytes(32, "big")), "big")


def slot_names(layout: dict[str, Any], keys: Iterable[int]) -> dict[int, str]:
    """Names for the storage slots of a Vyper `-f layout` storage section: scalars, fixed
    arrays (every element) and HashMaps (one or two levels) at the given `keys` (account
    ids, market and collateral indices, addresses as integers)."""
    keys = list(dict.fromkeys(keys))
    out: dict[int, str] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, v in node.items():
            if not isinstance(v, dict):
                continue
            if "slot" not in v:
                walk(v, f"{prefix}{name}.")
                continue
            slot, typ, n = int(v["slot"]), str(v["type"]), int(v.get("n_slots", 1))
            label = f"{prefix}{name}"
            if typ.startswith("HashMap"):
                inner = typ[typ.index(",") + 1 : -1].strip()
                for k in keys:
                    s1 = _h(slot, k)
                    if inner.startswith("HashMap"):
                        for k2 in keys:
                            out[_h(s1, k2)] = f"{label}[{k:#x}][{k2:#x}]"
                    elif inner.endswith("]") and "[" in inner:
                        size = int(inner[inner.rindex("[") + 1 : -1])
                        for i in range(size):
                            out[s1 + i] = f"{label}[{k:#x}][{i}]"
                    else:
                        out[s1] = f"{label}[{k:#x}]"
                        for i in range(1, 3):  # short strings / structs
                            out.setdefault(s1 + i, f"{label}[{k:#x}]+{i}")
            elif n == 1:
                out[slot] = label
            else:
                for i in range(n):
                    out[slot + i] = f"{label}[{i}]"

    walk(layout, "")
    return out


def vyper_pc_labels(path: str, cwd: str | None = None) -> dict[int, tuple[str, str]]:
    """pc -> (function, "file:line") of a Vyper contract's runtime code, from the
    compiler's source map and annotated AST (the innermost function and statement)."""
    import json
    import subprocess

    def run(fmt: str) -> Any:
        out = subprocess.run(
            ["vyper", "-f", fmt, path], cwd=cwd, check=True, capture_output=True, text=True
        ).stdout
        return json.loads(out)

    smap = run("source_map_runtime")
    ast = run("annotated_ast")
    nodes: dict[tuple[int, int], tuple[str, str]] = {}

    def walk(n: Any, sid: int, file: str, fn: str) -> None:
        if isinstance(n, list):
            for v in n:
                walk(v, sid, file, fn)
            return
        if not isinstance(n, dict):
            return
        if n.get("ast_type") == "Module" and "source_id" in n:
            sid, file = int(n["source_id"]), str(n.get("path", "?")).rsplit("/", 1)[-1]
        if n.get("ast_type") == "FunctionDef":
            fn = f"{file.removesuffix('.vy')}.{n['name']}"
        if "node_id" in n and "lineno" in n:
            nodes[(sid, int(n["node_id"]))] = (fn, f"{file}:{n['lineno']}")
        for k, v in n.items():
            if k not in ("type", "variable_reads", "variable_writes"):
                walk(v, sid, file, fn)

    walk(ast["ast"], 0, path.rsplit("/", 1)[-1], "")
    for m in ast.get("imports", []):
        walk(m, 0, "?", "")
    known: dict[int, tuple[str, str]] = {}
    for pc, (sid, nid) in smap["pc_ast_map"].items():
        if (sid, nid) in nodes:
            known[int(pc)] = nodes[(sid, nid)]
    # the map skips many pcs (optimised code): those get the label of the nearest mapped
    # pc below them (code is laid out function by function, so mostly right)
    out: dict[int, tuple[str, str]] = {}
    last = ("?", "?")
    for pc in range(max(known, default=-1) + 1 + 4096):
        last = known.get(pc, last)
        out[pc] = last
    return out


@dataclass
class SlotUse:
    loads_cold: int = 0
    loads_warm: int = 0
    stores: int = 0
    load_gas: int = 0
    store_gas: int = 0


@dataclass
class Trace:
    gas_used: int
    executed: int  # sum of the opcode costs below (calls: the access cost only)
    by_op: Counter[str] = field(default_factory=Counter)
    count_op: Counter[str] = field(default_factory=Counter)
    by_contract: Counter[str] = field(default_factory=Counter)  # code run (self gas)
    slots: dict[tuple[str, str], SlotUse] = field(default_factory=lambda: defaultdict(SlotUse))
    tslots: Counter[str] = field(default_factory=Counter)  # TLOAD/TSTORE gas per contract
    logs: list[tuple[str, int, int, int]] = field(default_factory=list)  # who, topics, bytes, gas
    calls: list[tuple[str, str, str, int]] = field(default_factory=list)  # from, op, to, gas
    by_function: Counter[str] = field(default_factory=Counter)  # with `pc_labels`
    by_line: Counter[str] = field(default_factory=Counter)
    compute_by_function: Counter[str] = field(default_factory=Counter)  # no storage/calls/logs
    compute_by_line: Counter[str] = field(default_factory=Counter)

    def classes(self) -> dict[str, int]:
        """Gas by class: storage, calls, logs, hashing, memory/copy, the rest."""
        groups = {
            "SLOAD": ("SLOAD",),
            "SSTORE": ("SSTORE",),
            "transient": ("TLOAD", "TSTORE"),
            "calls (access)": tuple(CALLS),
            "LOG": ("LOG0", "LOG1", "LOG2", "LOG3", "LOG4"),
            "KECCAK256": ("KECCAK256", "SHA3"),
            "code/ext reads": ("EXTCODECOPY", "EXTCODESIZE", "EXTCODEHASH", "BALANCE"),
            "memory/copy": (
                "MLOAD",
                "MSTORE",
                "MSTORE8",
                "MCOPY",
                "CALLDATACOPY",
                "CODECOPY",
                "RETURNDATACOPY",
                "CALLDATALOAD",
            ),
        }
        out: dict[str, int] = {}
        seen: set[str] = set()
        for g, ops in groups.items():
            out[g] = sum(self.by_op.get(o, 0) for o in ops)
            seen.update(ops)
        out["arithmetic/stack/jumps"] = sum(v for k, v in self.by_op.items() if k not in seen)
        return out


def trace(
    request: Request,
    txhash: str,
    names: dict[str, str] | None = None,
    layouts: dict[str, dict[str, Any]] | None = None,
    keys: Iterable[int] = (),
    pc_labels: dict[str, dict[int, tuple[str, str]]] | None = None,
    steps_out: str | None = None,
) -> Trace:
    """Traces `txhash` (anvil or geth struct logs) and aggregates it. `names` labels
    addresses; `layouts` maps a storage address to its Vyper storage layout, so slots get
    variable names (HashMaps at `keys`); `pc_labels` maps a code address to
    `vyper_pc_labels` of its source, so gas adds up by function and source line too;
    `steps_out`, a file to write the raw steps to (JSON: depth, pc, op, gasCost, the
    top two stack words), for a per-pc look at one hot spot."""
    pcl = {k.lower(): v for k, v in (pc_labels or {}).items()}
    names = {k.lower(): v for k, v in (names or {}).items()}
    keys = list(keys)
    slot_label: dict[str, dict[int, str]] = {
        a.lower(): slot_names(lay, keys) for a, lay in (layouts or {}).items()
    }
    tx = request("eth_getTransactionByHash", [txhash])
    rcpt = request("eth_getTransactionReceipt", [txhash])
    res = request(
        "debug_traceTransaction",
        [txhash, {"disableStorage": True, "enableMemory": False, "disableStack": False}],
    )
    steps = res["structLogs"]
    if steps_out:
        with open(steps_out, "w") as f:
            keep = ("depth", "pc", "op", "gasCost")
            json.dump(
                [{k: s[k] for k in keep} | {"st": (s.get("stack") or [])[-2:]} for s in steps], f
            )
    to, origin = tx["to"].lower(), tx["from"].lower()
    coinbase = request("eth_getBlockByNumber", [rcpt["blockNumber"], False])["miner"].lower()

    def name(a: str) -> str:
        return names.get(a, a[:10])

    def sname(store: str, slot: int) -> str:
        return slot_label.get(store, {}).get(slot, f"{slot:#x}"[:14])

    warm_acc = {to, origin, coinbase} | _PRECOMPILES
    warm_slots: set[tuple[str, int]] = set()
    t = Trace(gas_used=_word(rcpt["gasUsed"]), executed=0)
    # frames: (code address, storage address); a call pushes when the next step is deeper
    frames: list[tuple[str, str]] = [(to, to)]
    pending: tuple[str, str] | None = None
    for s in steps:
        depth = s["depth"]
        while len(frames) > depth:
            frames.pop()
        if pending is not None and len(frames) < depth:
            frames.append(pending)
        pending = None
        code, store = frames[-1]
        op = s["op"]
        stack = s.get("stack") or []
        cost = int(s["gasCost"])
        if op in CALLS:
            target = _addr(_word(stack[-2]))
            cold = target not in warm_acc
            warm_acc.add(target)
            cost = 2600 if cold else 100
            if op == "CALL" and _word(stack[-3]) != 0:
                cost += 9000
            pending = (target, store if op in ("DELEGATECALL", "CALLCODE") else target)
            t.calls.append((name(code), op, name(target) + (" (cold)" if cold else ""), cost))
        elif op == "SLOAD":
            slot = _word(stack[-1])
            u = t.slots[(name(store), sname(store, slot))]
            if (store, slot) in warm_slots:
                u.loads_warm += 1
            else:
                u.loads_cold += 1
                warm_slots.add((store, slot))
            u.load_gas += cost
        elif op == "SSTORE":
            slot = _word(stack[-1])
            warm_slots.add((store, slot))
            u = t.slots[(name(store), sname(store, slot))]
            u.stores += 1
            u.store_gas += cost
        elif op in ("TLOAD", "TSTORE"):
            t.tslots[name(store)] += cost
        elif op.startswith("LOG"):
            n = int(op[3:])
            size = _word(stack[-2])
            t.logs.append((name(code), n, size, cost))
        elif op in ("EXTCODECOPY", "EXTCODESIZE", "EXTCODEHASH", "BALANCE"):
            warm_acc.add(_addr(_word(stack[-1])))
        t.by_op[op] += cost
        t.count_op[op] += 1
        t.by_contract[name(code)] += cost
        if code in pcl:
            fn, line = pcl[code].get(int(s["pc"]), ("?", "?"))
            t.by_function[f"{name(code)}: {fn}"] += cost
            t.by_line[f"{name(code)}: {line} ({fn})"] += cost
            if op not in _ACCESS_OPS and not op.startswith("LOG"):
                t.compute_by_function[f"{name(code)}: {fn}"] += cost
                t.compute_by_line[f"{name(code)}: {line} ({fn})"] += cost
        t.executed += cost
    return t


def report(t: Trace, title: str = "") -> str:
    """The breakdown as markdown."""
    lines = [f"### {title}" if title else "", ""]
    lines.append(
        f"gas used {t.gas_used:,}; executed opcodes {t.executed:,} (before refunds); "
        f"intrinsic + calldata + refund make up the difference "
        f"({t.gas_used - t.executed:,})"
    )
    lines += ["", "| class | gas |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(t.classes().items(), key=lambda kv: -kv[1])]
    lines += ["", "| code run (self gas) | gas |", "|---|---:|"]
    lines += [f"| {k} | {v:,} |" for k, v in t.by_contract.most_common()]
    if t.by_function:
        lines += ["", "| function (self gas, opcodes attributed by the source map) | gas |"]
        lines += ["|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in t.by_function.most_common(25)]
        lines += ["", "| function: computation only (no storage, calls, logs) | gas |"]
        lines += ["|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in t.compute_by_function.most_common(30)]
        lines += ["", "| source line: computation only | gas |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in t.compute_by_line.most_common(40)]
        lines += ["", "| source line | gas |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in t.by_line.most_common(40)]
    lines += ["", "| top opcodes | count | gas |", "|---|---:|---:|"]
    lines += [f"| {k} | {t.count_op[k]} | {v:,} |" for k, v in t.by_op.most_common(15)]
    lines += [
        "",
        "| storage | slot | cold loads | warm loads | stores | load gas | store gas |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (who, slot), u in sorted(
        t.slots.items(), key=lambda kv: -(kv[1].load_gas + kv[1].store_gas)
    ):
        lines.append(
            f"| {who} | {slot} | {u.loads_cold} | {u.loads_warm} | {u.stores} | "
            f"{u.load_gas:,} | {u.store_gas:,} |"
        )
    if t.tslots:
        lines += [
            "",
            "transient storage gas: " + ", ".join(f"{k} {v:,}" for k, v in t.tslots.items()),
        ]
    lines += ["", "| event from | topics | data bytes | gas |", "|---|---:|---:|---:|"]
    lines += [f"| {w} | {n} | {b} | {g:,} |" for w, n, b, g in t.logs]
    lines += ["", "| call from | op | to | access gas |", "|---|---|---|---:|"]
    lines += [f"| {a} | {op} | {b} | {g:,} |" for a, op, b, g in t.calls]
    return "\n".join(lines) + "\n"
