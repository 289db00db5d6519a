"""EXPLAIN PLAN text: logical, rewritten and physical plans in a stable form.

Shared subplans are printed once as ``%k := ...`` and referenced by ``%k``; no object ids, no
absolute paths, no timings unless ANALYZE asked for them, so plans can be golden files.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from kryptondb.format import fmt_bytes, fmt_flops, fmt_time
from kryptondb.lang.ast import Fill
from kryptondb.obe.grid import Grid, side
from kryptondb.plan.nodes import Dag, PlanNode


def plain(v):
    """A typed argument as people read it: numbers, flags and text as they are; a Grid as its
    positions, patch and stride; a shape as 3x224x224; a Fill by its name; names in brackets."""
    if isinstance(v, Grid):
        return f"{v.rows}x{v.cols}(patch={side(v.window)},stride={side(v.strides)}" + \
            ("" if v.border == "fit" else f",{v.border}") + ")"
    if isinstance(v, Fill):
        return v.text
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, tuple) and v and all(isinstance(x, int) for x in v):
        return "x".join(map(str, v))
    if isinstance(v, tuple):
        return "[" + ",".join(map(str, v)) + "]"
    if isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _value(v) -> str:
    """Text (names, reasons) quoted unless it is a bare name; typed values as ``plain``."""
    if isinstance(v, str):
        return repr(v) if (not v.isidentifier() or v in ("True", "False", "None")) else v
    if isinstance(v, float):
        return f"{v:g}"
    return str(plain(v))


def _label(op: str, args) -> str:
    shown = " ".join(f"{k}={_value(v)}" for k, v in args if v is not None)
    return f"{op} {shown}".rstrip()


def format_tree(root: PlanNode) -> str:
    """A plan tree with shared nodes named ``%k`` and defined before their first use."""
    parents: dict[int, int] = {}
    order = list(root.walk())
    for n in order:
        for c in n.children:
            parents[id(c)] = parents.get(id(c), 0) + 1
    names = {id(n): f"%{i}" for i, n in enumerate(x for x in order if parents.get(id(x), 0) > 1)}
    lines: list[str] = []
    for n in order:
        if id(n) in names:
            lines += _tree(n, names, top=True, prefix=f"{names[id(n)]} := ")
    lines += _tree(root, names, top=True)
    return "\n".join(lines)


def _tree(n: PlanNode, names, top: bool, prefix: str = "") -> list[str]:
    if not top and id(n) in names:
        return [names[id(n)]]
    out = [prefix + _label(n.op, n.args)]
    for i, c in enumerate(n.children):
        last = i == len(n.children) - 1
        sub = _tree(c, names, top=False)
        out.append(("└─ " if last else "├─ ") + sub[0])
        out += [("   " if last else "│  ") + s for s in sub[1:]]
    return out


def format_dag(dag: Dag, profile=None) -> str:
    """One line per physical operator: ``%id Op(%inputs) args [stats]``; the stats are those a
    run measured (``profile``, kryptondb.exec.profile.Profile), when given."""
    lines = []
    for n in dag.nodes:
        ins = f"({', '.join(f'%{i}' for i in n.inputs)})" if n.inputs else ""
        line = f"%{n.id} {n.op}{ins} " + " ".join(f"{k}={_value(v)}" for k, v in n.args
                                                  if v is not None)
        if profile is not None:
            s = profile.of(n)
            parts = [f"time {fmt_time(s.get('time_s', 0.0))} ({100 * s.get('share', 0.0):.1f}%)"]
            if s.get("flops"):
                parts.append(fmt_flops(s["flops"]))
            if s.get("bytes"):
                parts.append(fmt_bytes(s["bytes"]))
            for key in ("batches", "rows"):
                if s.get(key):
                    parts.append(f"{s[key]} {key}")
            busy = s.get("gather_s", 0.0) + s.get("compute_s", 0.0)
            if busy:  # summed over the workers that ran batches side by side
                parts.append(f"gather {100 * s.get('gather_s', 0.0) / busy:.0f}% of its work")
            if s.get("workers", 1) > 1:
                parts.append(f"{s['workers']} workers")
            line += "  [" + ", ".join(parts) + "]"
        lines.append(line.rstrip())
    return "\n".join(lines)


@dataclass(frozen=True)
class Explained:
    """The plans of one statement, as EXPLAIN PLAN shows them."""

    logical: PlanNode
    rewritten: PlanNode
    fired: tuple[str, ...]
    steps: tuple[tuple[str, PlanNode], ...]
    dag: Dag

    def text(self, profile=None, verbose: bool = False) -> str:
        """The plans; with the ``profile`` of a run (EXPLAIN PLAN ANALYZE), its statistics."""
        out = ["== logical plan ==", format_tree(self.logical), ""]
        if verbose:
            for rule, plan in self.steps:
                out += [f"== after {rule} ==", format_tree(plan), ""]
        fired = ", ".join(self.fired) or "none"
        out += [f"== rewritten plan (rules fired: {fired}) ==", format_tree(self.rewritten), ""]
        out += ["== physical plan" + (" (analyzed) ==" if profile is not None else " =="),
                format_dag(self.dag, profile)]
        if profile is not None:
            out.append(f"total {profile.total_s() * 1e3:.1f} ms")
        return "\n".join(out)
