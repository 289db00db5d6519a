"""The per-layer plan of an incremental scan, as EXPLAIN shows it: for the cost model's case (the
patch at the centre of the input; with a scan's positions, the one nearest it, in regions of
the sizes the executor fixes over all of them), built from the same IncrementalPlan the
executor runs: each layer up to the frontier with the region it recomputes, the context it
reads, its FLOPs full and incremental, and the fused segment (one backend call per batch) it
belongs to; the frontier the calibrated cost model picked and why; the suffix run in full.

>>> from kryptondb.model.model import load_model
>>> lp = layer_plan(load_model("resnet18").graph, (16, 16))  # the centre patch alone
>>> lp.rows[0].name, lp.rows[0].region, lp.rows[0].context
('conv1', (11, 11), (27, 27))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kryptondb.graph.ir import GLOBAL, Graph, Op
from kryptondb.graph.shapes import node_flops
from kryptondb.ivm.cost import centre_regions, prefix, region_sizes
from kryptondb.ivm.gather import ChannelsLastViews
from kryptondb.ivm.incremental import IncrementalPlan
from kryptondb.ivm.regions import fix


@dataclass(frozen=True)
class LayerRow:
    """One layer an incremental scan maintains; ``context``: what the segment's head reads per
    position (None for a layer fused after the head, which reads the head's new values)."""

    name: str
    op: str
    kernel: tuple[int, int] | None
    stride: tuple[int, int] | None
    map: tuple[int, int, int]
    region: tuple[int, int]
    context: tuple[int, int] | None
    full_flops: int
    incremental_flops: int
    segment: int
    capped: bool  # tau made the region smaller than the exact one
    step: str  # the segment's name in a run's counters (its last layer)
    winograd: bool = False  # a head a backend that takes it runs by Winograd (runtime/winograd.py)

    @property
    def share(self) -> float:
        """The recomputed region's share of the layer's map."""
        return self.region[0] * self.region[1] / (self.map[1] * self.map[2])


@dataclass(frozen=True)
class LayerPlan:
    rows: tuple[LayerRow, ...]
    frontier: tuple[str, ...]
    frontier_reason: str
    suffix_layers: int
    suffix_flops: int
    tail_layers: int = 0  # the last of the suffix's layers, run over many chunks at once
    tail_flops: int = 0

    @property
    def full_flops(self) -> int:
        return sum(r.full_flops for r in self.rows) + self.suffix_flops

    @property
    def incremental_flops(self) -> int:
        return sum(r.incremental_flops for r in self.rows) + self.suffix_flops

    @property
    def segments(self) -> int:
        return len({r.segment for r in self.rows})


def layer_plan(graph: Graph, patch: tuple[int, int], tau: float | None = None,
               corners: np.ndarray | None = None, winograd: bool = False) -> LayerPlan:
    """The plan of ``patch`` (h, w) at the centre of ``graph``'s input, exact or with ``tau``;
    with a scan's ``corners`` (n, 2), at the one nearest the centre, every region of the size
    the executor's plans give it over all of them (``region_sizes``); ``winograd``: as a
    backend that runs eligible heads by Winograd plans it (runtime/winograd.py)."""
    _, h, w = graph.input_shape
    centre = np.array([[(h - patch[0]) // 2, (w - patch[1]) // 2]])
    sizes = None
    if corners is not None and len(corners):
        sizes = region_sizes(graph, corners, patch, tau)
        centre = corners[np.argmin(np.abs(corners - centre).sum(axis=1))][None]
    views = {n: np.broadcast_to(np.float32(0), graph[n].shape) for n in prefix(graph)}
    plan = IncrementalPlan(graph, centre, patch, ChannelsLastViews(views) if winograd else views,
                           tau, sizes)
    exact = centre_regions(graph, patch) if tau is not None else None
    rows = []
    for k, item in enumerate(plan.schedule):  # siblings (ivm/siblings.py): one segment
        for step in getattr(item, "members", (item,)):
            rows += [_row(graph, plan, step, name, k, exact) for name in step.chain]
    rest = [n for n in graph.nodes if n.name not in plan.incremental]
    tail = [n for n in plan.tail.nodes if n.op is not Op.INPUT] if plan.tail else []
    return LayerPlan(tuple(rows), tuple(plan.frontier), _why(plan, rest), len(rest),
                     sum(_flops(graph, n) for n in rest), len(tail),
                     sum(_flops(graph, n) for n in tail))


def _flops(graph: Graph, n) -> int:
    return int(node_flops(n, [graph[i].shape for i in n.inputs], graph.weights))


def _row(graph: Graph, plan: IncrementalPlan, step, name: str, segment: int,
         exact) -> LayerRow:
    n = graph[name]
    r = plan.regions[name]
    full = _flops(graph, n)
    share = r.h * r.w / (n.shape[1] * n.shape[2])
    context = (step.contexts[0][0], step.contexts[0][1]) if name == step.head.name \
        and step.contexts else None
    capped = exact is not None and (r.h, r.w) != _size(exact[name], n.shape)
    windowed = n.op in (Op.CONV, Op.MAXPOOL, Op.AVGPOOL, Op.CONV_TRANSPOSE)
    return LayerRow(name, n.op.value, n.attr("kernel") if windowed else None,
                    n.attr("stride") if windowed else None, tuple(n.shape), (r.h, r.w), context,
                    full, int(np.ceil(full * share)), segment, capped, step.name,
                    name == step.head.name and step.winograd is not None)


def _size(region, shape) -> tuple[int, int]:
    f = fix(region, shape)
    return f.h, f.w


def _why(plan: IncrementalPlan, rest: list) -> str:
    """Why the frontier is where it is: the first layer the plan does not maintain."""
    first = next((n for n in rest if n.op is not Op.INPUT), None)
    if first is None:
        return "every layer runs incrementally"
    if first.op in GLOBAL or len(first.shape) != 3:
        return f"{first.name} ({first.op.value}) is global: it has no incremental form"
    return f"{first.name}: " + (plan.cut.reason() or "")
