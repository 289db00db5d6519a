"""EXPLAIN PLAN text: logical, rewritten and physical plans in a stable form.

Shared subplans are printed once as ``%k := ...`` and referenced by ``%k``; no object ids, no
absolute paths, no timings unless ANALYZE asked for them, so plans can be golden files.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from kryptondb.format import fmt_bytes, fmt_flops, fmt_percent, fmt_time
from kryptondb.lang.ast import Fill
from kryptondb.obe.grid import Grid, side
from kryptondb.plan.layer_text import gate_lines, scan_lines
from kryptondb.plan.nodes import Dag, PlanNode
from kryptondb.plan.ops import OCCLUSION_SCANS
from kryptondb.plan.profile_doc import scan, video


# a scan's predicted costs: shown on its own lines (they count the sessions still to build, so
# they change once a model has run incrementally in the process)
PREDICTED = ("cost_naive", "cost_incremental", "seconds_naive", "seconds_incremental")


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
    shown = " ".join(f"{k}={_value(v)}" for k, v in args if v is not None and k not in PREDICTED)
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


HIDDEN = ("why", *PREDICTED)  # a scan's: on the lines under it instead


def format_dag(dag: Dag, profile=None, below: dict[int, list[str]] | None = None) -> str:
    """One line per physical operator: ``%id Op(%inputs) args [stats]``; the stats are those a
    run measured (``profile``, kryptondb.exec.profile.Profile), when given; ``below``: lines
    to print indented under a node's (an occlusion scan's plan), by node id."""
    lines = []
    below = below or {}
    for n in dag.nodes:
        ins = f"({', '.join(f'%{i}' for i in n.inputs)})" if n.inputs else ""
        hide = HIDDEN if n.id in below else ()
        line = f"%{n.id} {n.op}{ins} " + " ".join(f"{k}={_value(v)}" for k, v in n.args
                                                  if v is not None and k not in hide)
        if profile is not None:
            line += "  [" + ", ".join(stat_parts(profile.of(n))) + "]"
        lines.append(line.rstrip())
        lines += ["    " + x for x in below.get(n.id, ())]
    return "\n".join(lines)


def stat_parts(s: dict) -> list[str]:
    """A node's measured figures as EXPLAIN PLAN ANALYZE and the plan pictures print them."""
    parts = [f"time {fmt_time(s.get('time_s', 0.0))} ({fmt_percent(s.get('share', 0.0))})"]
    if s.get("setup_s"):
        parts.append(f"setup {fmt_time(s['setup_s'])} apart")
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
    return parts


def setup_line(profile) -> str:
    """What the statement spent before inference: loading models, building backend sessions,
    materializing views (its own node too); none of it is counted as inference."""
    s = profile.setup
    return (f"setup {fmt_time(sum(v for k, v in s.items() if k != 'views'))} apart from "
            f"inference: model load {fmt_time(s.get('model_load', 0.0))}, sessions "
            f"{fmt_time(s.get('sessions', 0.0))}; views {fmt_time(s.get('views', 0.0))} "
            f"(its node's time)")


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
        below = {n.id: scan_lines(scan(n, profile.stats.get(n.id) if profile else None),
                                  verbose or profile is not None)
                 for n in self.dag.nodes if n.op in OCCLUSION_SCANS}
        below |= {n.id: gate_lines(n, profile.stats.get(n.id) if profile else None)
                  for n in self.dag.nodes if n.arg("feature_scale") is not None}
        out += ["== physical plan" + (" (analyzed) ==" if profile is not None else " =="),
                format_dag(self.dag, profile, below)]
        if profile is not None:
            stages = video(self.dag, lambda n: profile.stats.get(n.id, {}))
            if stages:
                out.append("video: " + ", ".join(f"{k[:-2].replace('_', ' ')} {fmt_time(v)}"
                                                  for k, v in stages["stages"].items()))
            out.append(setup_line(profile))
            out.append(f"total {profile.total_s() * 1e3:.1f} ms")
        return "\n".join(out)
