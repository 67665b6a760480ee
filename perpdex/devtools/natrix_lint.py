"""`natrix lint` with one in-process vyper compile per contract (`make lint`).

    python -m perpdex.devtools.natrix_lint NATRIX ARGS...

natrix 0.1.9 parses each file through the vyper command line twice (`-f annotated_ast`,
then `-f metadata`), and before each asks two more processes for `vyper --version` and
the venv's `sys.path`: six Python processes per contract, each compiling or importing
vyper again (~90 s of CPU for the 20 contracts). Here natrix runs unchanged (its rules,
flags and output) but its `vyper_compile` is answered in this process: one vyper
compile per file gives both outputs, through the same function the vyper command line
calls (`compile_files`, same search paths: this interpreter's `sys.path` as the CLI's,
plus the `-p` paths natrix passes), and the output goes through the same JSON round
trip the CLI's stdout did. A compile error is raised with the text natrix looks for in
the CLI's stderr (a module that `uses:` another fails only its metadata, which natrix
skips). The vyper version check runs once.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
import warnings
from functools import cache
from pathlib import Path
from typing import Any

FORMATS = ("annotated_ast", "metadata")


class VyperCompileError(Exception):
    """vyper failed on a file; the message carries its traceback, as the CLI's stderr."""


@cache
def _outputs(filename: str, paths: tuple[str, ...], formats: tuple[str, ...]) -> dict[str, Any]:
    """`formats` of `filename` compiled once, each as the CLI printed it, parsed back."""
    from vyper.cli.vyper_compile import compile_files  # type: ignore[import-untyped]

    # the CLI's warnings and error lines went to output natrix only read on failure
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        compiled = compile_files([filename], formats, list(paths), include_sys_path=True)
    (per_format,) = compiled.values()
    translate = {"annotated_ast": "annotated_ast_dict"}
    return {f: json.loads(json.dumps(per_format[translate.get(f, f)])) for f in formats}


def vyper_compile(
    filename: str, formatting: str, extra_paths: tuple[str, ...] = ()
) -> dict[str, Any] | list[dict[str, Any]]:
    """natrix.ast_tools.vyper_compile, answered in-process (see the module docstring)."""
    from natrix import ast_tools

    paths = tuple(_search_paths()) + tuple(ast_tools._obtain_default_paths()) + tuple(extra_paths)
    try:
        # both formats from one compile when the file has both; else this one alone
        # (metadata fails for a module that `uses:` another, the AST does not)
        try:
            result = _outputs(filename, paths, FORMATS)[formatting]
        except Exception:
            if formatting not in FORMATS:
                raise
            result = _outputs(filename, paths, (formatting,))[formatting]
    except Exception as e:
        raise VyperCompileError(
            f"Something went wrong when compiling the vyper file '{filename}'. "
            f"The compiler returned the following error: \n {traceback.format_exc()}"
        ) from e
    assert isinstance(result, dict | list)
    return result


@cache
def _search_paths() -> list[str]:
    """natrix's `-p` paths: the venv python's sys.path (asked once, not per compile)."""
    from natrix import ast_tools

    ast_tools._check_vyper_version()
    return list(ast_tools._obtain_sys_path())


def main(argv: list[str]) -> None:
    import natrix
    from natrix import ast_tools

    ast_tools.vyper_compile = vyper_compile
    sys.argv = ["natrix", *argv]
    natrix.main()


if __name__ == "__main__":
    if not Path("contracts").is_dir():
        sys.exit("run from the repository root (natrix resolves contract imports from there)")
    main(sys.argv[1:])
