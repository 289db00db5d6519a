"""What a plan node says and what colour it wears, shared by the DOT and SVG renderers.

A node's box reads: ``%id Op``, then one ``key=value`` per argument, then (after EXPLAIN PLAN
ANALYZE) its cost figures. Fill colour is the node's share of the run's cost when any node has
stats (white -> orange -> red), else its role in the graph: source, operator or sink.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from numbers import Real

from kryptondb.viz.diagram import Diagram, DiagramNode
from kryptondb.format import fmt_bytes, fmt_flops, fmt_percent, fmt_stat, fmt_time, fmt_value

ARG_LIMIT = 40  # characters per argument value inside a box; tooltips show the full value
KNOWN_STATS = ("time_s", "share", "flops", "bytes", "batches", "rows")
KIND_COLOURS = (("source", "#dbe9f6"), ("operator", "#f0f0f0"), ("sink", "#dcefd6"))
HEAT_STOPS = ((0.0, "#ffffff"), (0.3, "#fdd49e"), (0.65, "#fc8d59"), (1.0, "#e0452b"))
BORDER = "#404040"
INK = "#1a1a1a"


@dataclass(frozen=True)
class Costs:
    """Each node's share of the run (0..1) and what the share measures."""

    share: dict[int, float]
    basis: str  # "time", "FLOPs" or "bytes"


def check(dag: Diagram) -> None:
    """Renderers trust ids to be distinct and inputs to point at earlier nodes."""
    seen: set[int] = set()
    for n in dag.nodes:
        if n.id in seen:
            raise ValueError(f"plan node id %{n.id} appears twice")
        missing = [i for i in n.inputs if i not in seen]
        if missing:
            raise ValueError(
                f"plan node %{n.id} {n.op} reads %{missing[0]}, which is not an earlier node"
            )
        seen.add(n.id)


def edges(dag: Diagram) -> list[tuple[int, int]]:
    """(input id, consumer id) pairs, each once, in plan order."""
    out: dict[tuple[int, int], None] = {}
    for n in dag.nodes:
        for i in n.inputs:
            out[(i, n.id)] = None
    return list(out)


def header(n: DiagramNode) -> str:
    return visible(f"%{n.id} {n.op}")


def arg_lines(n: DiagramNode, limit: int | None = ARG_LIMIT) -> list[str]:
    return [visible(f"{k}={fmt_value(v, limit)}") for k, v in n.args]


def stat_lines(stats: dict, basis: str = "time") -> list[str]:
    """Cost figures, grouped two to a line: time and share, work and traffic, batches and rows;
    then any other figures by name."""
    s = stats
    pairs = (
        (_num(s, "time_s", fmt_time), _num(s, "share", lambda x: f"{fmt_percent(x)} of {basis}")),
        (_num(s, "flops", fmt_flops), _num(s, "bytes", fmt_bytes)),
        (
            _num(s, "batches", lambda x: _count(x, "batch")),
            _num(s, "rows", lambda x: _count(x, "row")),
        ),
    )
    lines = ["  ".join(p for p in pair if p) for pair in pairs]
    extra = sorted((k for k in s if k not in KNOWN_STATS and _shown(s[k])), key=str)
    return [ln for ln in lines if ln] + [visible(f"{_stat_name(k)} {_stat(k, s[k], ARG_LIMIT)}")
                                           for k in extra]


def _stat_name(key: str) -> str:
    """A statistic's name as a label: ``setup_s`` -> ``setup``, ``gather_bytes`` -> ``gather
    bytes`` (the value's unit says the rest)."""
    return key.removesuffix("_s").replace("_", " ")


def _shown(v) -> bool:
    """Figures a box prints: not the per-layer counters (EXPLAIN's per-layer table has them)."""
    return not isinstance(v, (dict, list))


def _stat(key: str, v, limit: int | None) -> str:
    """A figure in its unit (kryptondb/format.py ``fmt_stat``), never a raw float."""
    return fmt_stat(key, v) if isinstance(v, Real) and not isinstance(v, bool) else \
        fmt_value(v, limit)


def cost_lines(n: DiagramNode, costs: Costs | None) -> list[str]:
    """A node's figures, with its share worked out from the whole run when EXPLAIN gave none."""
    if not n.stats or costs is None or "share" in n.stats:
        return stat_lines(n.stats)
    return stat_lines({**n.stats, "share": costs.share[n.id]}, costs.basis)


def _count(n, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "es" if noun.endswith("ch") else "s")


def _num(stats: dict, key: str, fmt) -> str:
    v = stats.get(key)
    if isinstance(v, Real) and not isinstance(v, bool):
        return fmt(v)
    return "" if v is None else f"{key}={fmt_value(v, ARG_LIMIT)}"


def tooltip(n: DiagramNode) -> str:
    """Everything known about a node, unabridged, one fact per line."""
    lines = [header(n), *arg_lines(n, None)]
    if n.inputs:
        lines.append("inputs: " + ", ".join(f"%{i}" for i in n.inputs))
    if n.stats:
        lines.append("-- stats --")
        lines += [visible(f"{k}={_stat(k, n.stats[k], None)}")
                  for k in sorted(n.stats, key=str) if _shown(n.stats[k])]
    return "\n".join(lines)


def costs(dag: Diagram) -> Costs | None:
    """Shares from ``share`` when given, else from time, FLOPs or bytes; None without stats."""
    if not any(n.stats for n in dag.nodes):
        return None
    if any(_real(n.stats.get("share")) is not None for n in dag.nodes):
        return Costs({n.id: _real(n.stats.get("share")) or 0.0 for n in dag.nodes}, "time")
    for key, basis in (("time_s", "time"), ("flops", "FLOPs"), ("bytes", "bytes")):
        amount = {n.id: _real(n.stats.get(key)) or 0.0 for n in dag.nodes}
        total = sum(amount.values())
        if total > 0:
            return Costs({i: a / total for i, a in amount.items()}, basis)
    return Costs({n.id: 0.0 for n in dag.nodes}, "time")


def _real(v) -> float | None:
    return float(v) if isinstance(v, Real) and not isinstance(v, bool) else None


def kinds(dag: Diagram) -> dict[int, str]:
    """source: reads no other node; sink: nothing reads it; operator: the rest."""
    consumed = {i for n in dag.nodes for i in n.inputs}
    return {
        n.id: "source" if not n.inputs else "operator" if n.id in consumed else "sink"
        for n in dag.nodes
    }


def fills(dag: Diagram) -> dict[int, str]:
    c = costs(dag)
    if c is not None:
        return {n.id: heat(c.share[n.id]) for n in dag.nodes}
    colour = dict(KIND_COLOURS)
    return {i: colour[k] for i, k in kinds(dag).items()}


def heat(share: float) -> str:
    """Piecewise-linear white -> orange -> red; the darkest stop still carries black text."""
    t = min(1.0, max(0.0, float(share)))
    for (t0, c0), (t1, c1) in itertools.pairwise(HEAT_STOPS):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            a, b = _rgb(c0), _rgb(c1)
            return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b))
    return HEAT_STOPS[-1][1]


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def legend_caption(c: Costs) -> str:
    return f"fill: share of total {c.basis}"


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str, keep: str = "") -> str:
    """Control characters (and what XML cannot carry) as backslash escapes, except ``keep``."""

    def sub(m: re.Match) -> str:
        c = m.group()
        return c if c in keep else _NAMED.get(c) or f"\\u{ord(c):04x}"

    return _UNPRINTABLE.sub(sub, text)


def is_light(colour: str) -> bool:
    """Whether coloured (not black) text stays readable on this fill: WCAG relative luminance."""
    lin = [c / 255 / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in _rgb(colour)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2] > 0.5
