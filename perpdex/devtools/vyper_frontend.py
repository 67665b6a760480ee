"""vyper's front end in-process, cached per source: ABIs and storage layouts for tests.

The ABI test, the storage-layout tests, the settlement-slot test and the fuzz's transient
lock check each asked a `vyper -f layout` subprocess (a new interpreter and a compile, about
5 s of CPU each, six halves at a time). Parsing and semantic analysis are all either output
needs (no code generation), and one test session shares the result: each contract is
analysed once per process.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from perpdex.config import ROOT


@cache
def _data(path: str) -> Any:
    from vyper.cli.vyper_compile import get_search_paths  # type: ignore[import-untyped]
    from vyper.compiler.input_bundle import FilesystemInputBundle  # type: ignore[import-untyped]
    from vyper.compiler.phases import CompilerData  # type: ignore[import-untyped]

    bundle = FilesystemInputBundle(get_search_paths([str(ROOT), str(ROOT / "contracts")]))
    return CompilerData(bundle.load_file(Path(path)), bundle)


@cache
def abi(path: str) -> tuple[dict[str, Any], ...]:
    """The ABI `vyper -f abi` gives `path` (relative to the repository)."""
    module_t = _data(path).annotated_vyper_module._metadata["type"]
    out: list[dict[str, Any]] = module_t.interface.to_toplevel_abi_dict()
    if module_t.init_function is not None:
        out += module_t.init_function.to_toplevel_abi_dict()
    return tuple(out)


@cache
def _layout_json(path: str) -> str:
    return json.dumps(_data(path).storage_layout)


def layout(path: str) -> dict[str, Any]:
    """What `vyper -f layout` prints for `path` (a fresh copy: callers may mutate it):
    `storage_layout` and `transient_storage_layout`, slot by variable."""
    out: dict[str, Any] = json.loads(_layout_json(path))
    return out
