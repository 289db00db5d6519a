"""The house stays as built: every import of the package goes down kryptondb/layers.py's ROOMS.

Each module's imports (top level and inside functions) are read with ``ast`` and mapped to rooms.
The rules, each reported per module so a failure names the file:
- no upward import: a room imports only rooms listed before it in ROOMS (so no folder cycles);
- no hidden import: inside a function, no import of a kryptondb or standard-library module, and
  third-party ones only from LAZY (optional or slow to import), each with a one-line reason comment
  (on the line before or at the end of the import);
- size: no module over 400 lines; in obe/, orv/, ivm/, exec/ no function over 40 lines or over 6
  parameters.
The last tests plant each kind of violation in a synthetic package, so the checks cannot pass
vacuously.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

from kryptondb import layers

PACKAGE_DIR = Path(layers.__file__).parent

# Third-party packages a function may import lazily (with a reason): optional at install time
# (cupy, torch, captum, pandas, polars) or slow enough at import to keep out of `import kryptondb` and
# `kryptondb --help` (measured: matplotlib.pyplot ~370 ms, scipy.ndimage ~160 ms,
# prompt_toolkit ~85 ms, duckdb ~60 ms, onnx ~55 ms, av ~50 ms, onnxruntime ~25 ms; skimage loads
# scipy; google.protobuf comes with onnx; distributed, with dask, ~1 s, needed only with a cluster).
LAZY = frozenset({"onnxruntime", "onnx", "google", "av", "matplotlib", "scipy", "skimage",
                  "duckdb", "prompt_toolkit", "cupy", "torch", "captum", "pandas", "polars",
                  "dask", "distributed"})
HEAVY = frozenset({"onnxruntime", "onnx", "av", "matplotlib", "scipy", "skimage", "duckdb",
                   "dask", "distributed"})

PRAGMA = re.compile(r"#\s*(noqa(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*)?|type:\s*ignore\S*|pragma:.*)")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40
MAX_PARAMETERS = 6
SHORT_FUNCTION_ROOMS = ("obe", "orv", "ivm", "exec")


@dataclass(frozen=True)
class Import:
    """One imported module: ``target`` as a dotted name (a submodule where ``from x import y``
    names one), ``local`` when the import sits inside a function, ``reason`` when a comment
    explains it (on the line before, or on the import's own lines)."""

    module: str
    line: int
    target: str
    local: bool
    reason: bool

    def __str__(self) -> str:
        where = "inside a function" if self.local else "at the top"
        return f"{self.module}:{self.line} imports {self.target} ({where})"


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _comment_lines(source: str) -> tuple[set[int], set[int]]:
    """(lines holding a comment, lines holding nothing but a comment); a bare linter pragma
    (``# noqa: PLC0415``, ``# type: ignore``) is no comment."""
    anywhere, alone = set(), set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and PRAGMA.sub("", tok.string).strip(" #-:"):
            anywhere.add(tok.start[0])
            if not tok.line[: tok.start[1]].strip():
                alone.add(tok.start[0])
    return anywhere, alone


def _inside_functions(tree: ast.AST) -> set[int]:
    """ids of the nodes nested in a function (or lambda) body."""
    nested = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            nested.update(id(sub) for sub in ast.walk(node) if sub is not node)
    return nested


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             known: set[str]) -> list[str]:
    """The dotted modules one import statement reaches."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def imports_of(root: Path) -> list[Import]:
    """Every import in the package at ``root``, resolved to dotted module names."""
    files = module_files(root)
    known = set(files)
    found = []
    for module, path in files.items():
        source = path.read_text()
        tree = ast.parse(source, str(path))
        nested = _inside_functions(tree)
        anywhere, alone = _comment_lines(source)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            reason = (node.lineno - 1 in alone
                      or any(n in anywhere for n in range(node.lineno, node.end_lineno + 1)))
            for target in _targets(node, module, path.name == "__init__.py", known):
                found.append(Import(module, node.lineno, target, id(node) in nested, reason))
    return list(dict.fromkeys(found))


def _room(module: str, package: str) -> str:
    return layers.room(module.replace(package, "kryptondb", 1))


def upward(imports: list[Import], package: str, rooms=layers.ROOMS) -> list[str]:
    """One line per import of a room listed after the importer's room."""
    bad = []
    for imp in imports:
        if imp.target.split(".")[0] != package:
            continue
        src, dst = _room(imp.module, package), _room(imp.target, package)
        if rooms.index(dst) > rooms.index(src):
            bad.append(f"{imp}: room {src!r} must not import {dst!r}, which ROOMS lists later")
    return bad


def hidden(imports: list[Import], package: str) -> list[str]:
    """One line per function-local import the rules forbid."""
    bad = []
    for imp in (i for i in imports if i.local):
        top = imp.target.split(".")[0]
        if top == package:
            bad.append(f"{imp}: import the package's own modules at the top")
        elif top in sys.stdlib_module_names and top not in LAZY:
            bad.append(f"{imp}: import the standard library at the top")
        elif top not in LAZY:
            bad.append(f"{imp}: {top} is not in LAZY; import it at the top")
        elif not imp.reason:
            bad.append(f"{imp}: say in a comment why {top} is imported lazily")
    return bad


def components(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def cycles(imports: list[Import], package: str, rooms: tuple[str, ...] | None = None) -> list[str]:
    """Import cycles between rooms (given their order) or else between modules, each listed with
    the imports that close it (for rooms: those going up the order)."""
    name = (lambda m: _room(m, package)) if rooms else (lambda m: m)
    imports = [i for i in imports if i.target.split(".")[0] == package]
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if name(imp.module) != name(imp.target):
            edges.setdefault(name(imp.module), set()).add(name(imp.target))
    report = []
    for group in components(edges):
        inside = [str(i) for i in imports if name(i.module) in group and name(i.target) in group
                  and name(i.module) != name(i.target)
                  and (not rooms or rooms.index(name(i.target)) > rooms.index(name(i.module)))]
        report.append(" <-> ".join(group) + "\n    " + "\n    ".join(inside))
    return report


def long_functions(path: Path) -> list[str]:
    """One line per function over MAX_FUNCTION_LINES lines or MAX_PARAMETERS parameters
    (not counting self or cls)."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        a = node.args
        params = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
        params = params[1:] if params[:1] in (["self"], ["cls"]) else params
        size = node.end_lineno - node.lineno + 1
        if size > MAX_FUNCTION_LINES or len(params) > MAX_PARAMETERS:
            bad.append(f"{path.name}:{node.lineno} {node.name}: {size} lines, "
                       f"{len(params)} parameters")
    return bad


# --- the package itself ---------------------------------------------------------------------

FILES = module_files(PACKAGE_DIR)
IMPORTS = imports_of(PACKAGE_DIR)


@pytest.mark.parametrize("module", sorted(FILES))
def test_imports_go_down_the_rooms(module):
    mine = [i for i in IMPORTS if i.module == module]
    bad = upward(mine, "kryptondb") + hidden(mine, "kryptondb")
    assert not bad, "\n".join(bad)


def test_no_import_cycles_between_rooms_or_modules():
    bad = cycles(IMPORTS, "kryptondb", layers.ROOMS) + cycles(IMPORTS, "kryptondb")
    assert not bad, "import cycles:\n" + "\n".join(bad)


def test_every_module_has_a_room():
    rooms = {_room(m, "kryptondb") for m in FILES}
    rooms |= {_room(i.target, "kryptondb") for i in IMPORTS if i.target.startswith("kryptondb")}
    assert rooms <= set(layers.ROOMS), f"not in layers.ROOMS: {sorted(rooms - set(layers.ROOMS))}"


@pytest.mark.parametrize("module", sorted(FILES))
def test_module_is_at_most_400_lines(module):
    lines = len(FILES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{FILES[module]}: {lines} lines; split it along a seam"


@pytest.mark.parametrize("module", sorted(
    m for m in FILES if _room(m, "kryptondb") in SHORT_FUNCTION_ROOMS))
def test_functions_are_short(module):
    bad = long_functions(FILES[module])
    assert not bad, "\n".join(bad)


def test_importing_kryptondb_and_the_cli_loads_no_heavy_library():
    code = ("import sys, kryptondb, kryptondb.cli; "
            f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]", f"`import kryptondb` loads {loaded}; import them lazily"


# --- the checks catch what they should (a synthetic package) ---------------------------------

ROOMS = ("low", "mid", "high")


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_planted_upward_import_is_caught(tmp_path):
    root = _package(tmp_path, {
        "low/__init__.py": "from .. import high\n", "low/a.py": "from pkg.high import b\n",
        "high/__init__.py": "", "high/b.py": "from ..low import a\nimport pkg.mid.c\n",
        "mid/__init__.py": "", "mid/c.py": "def f():\n    from pkg import high  # lazy\n",
    })
    found = imports_of(root)
    bad = upward(found, "pkg", rooms=("__init__", *ROOMS))
    assert [b.split(" ")[0] for b in bad] == ["pkg.low:1", "pkg.low.a:1", "pkg.mid.c:2"], bad
    assert "pkg.high.b:1 imports pkg.low.a (at the top)" in [str(i) for i in found]


def test_a_planted_cycle_is_caught_with_its_imports(tmp_path):
    root = _package(tmp_path, {
        "low/__init__.py": "", "low/a.py": "def f():\n    import pkg.high.b\n",
        "high/__init__.py": "", "high/b.py": "from pkg.low import a\n",
        "mid/__init__.py": "", "mid/c.py": "from pkg.low import a\n",
    })
    found = cycles(imports_of(root), "pkg")
    assert len(found) == 1 and found[0].startswith("pkg.high.b <-> pkg.low.a"), found
    assert "pkg.low.a:2 imports pkg.high.b (inside a function)" in found[0]
    assert "pkg.high.b:1 imports pkg.low.a (at the top)" in found[0]
    rooms = cycles(imports_of(root), "pkg", ("__init__", *ROOMS))
    assert rooms == ["high <-> low\n    pkg.low.a:2 imports pkg.high.b (inside a function)"]


def test_a_hidden_import_is_caught_unless_lazy_and_reasoned(tmp_path):
    root = _package(tmp_path, {"m.py": (
        "import json\n"
        "def f():\n"
        "    import os\n"                                  # stdlib: move up
        "    from pkg import m\n"                          # own module: move up
        "    import numpy\n"                               # not in LAZY
        "    import duckdb\n"                              # no reason
        "    # slow to import (60 ms)\n"
        "    import onnx\n"                                # reason on the line before
        "    from matplotlib import (\n        pyplot)  # slow\n"   # reason at its end
        "    x = 1  # unrelated\n"
        "    import av\n"                                  # trailing comment above: no reason
        "    import scipy  # noqa: PLC0415\n"              # a pragma is no reason
        "    import cupy  # noqa: PLC0415 - optional (GPU only)\n"
    )})
    bad = hidden(imports_of(root), "pkg")
    assert [b.split(" ")[0] for b in bad] == ["pkg.m:3", "pkg.m:4", "pkg.m:5", "pkg.m:6",
                                              "pkg.m:12", "pkg.m:13"], bad


def test_long_functions_are_caught(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(40))
    path = tmp_path / "m.py"
    path.write_text(f"def long():\n{body}\n\n"
                    "class C:\n    def many(self, a, b, c, d, e, f, *, g=1):\n        pass\n"
                    "    def fine(self, a, b, c, d, e, f):\n        pass\n")
    assert [b.split(" ")[1] for b in long_functions(path)] == ["long:", "many:"]
