"""The static cost model: FLOPs of full vs incremental inference for a patch, and their ratio
(the theoretical speedup), computed with the same region algebra the executor uses."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from kryptondb.ivm.regions import (FixedRegion, Interval, Region, cap, fix, fixed_size,
                                   node_region)
from kryptondb.graph.ir import GLOBAL, Graph, Op
from kryptondb.graph.shapes import node_flops


SATURATED = 0.85  # share of a map from which a layer (and all after it) is recomputed in full
# FLOPs per second the planner's FLOP counts are read at when it states them as seconds (EXPLAIN's
# predicted costs): the middle of what inference reached on 2 CPU cores (17-38 GFLOP/s)
FLOPS_PER_S = 25e9


def prefix(graph: Graph) -> list[str]:
    """Nodes computable incrementally: not global, and fed only by such nodes."""
    ok: set[str] = set()
    for n in graph.nodes:
        if n.op not in GLOBAL and all(i in ok for i in n.inputs) and len(n.shape) == 3:
            ok.add(n.name)
    return [n.name for n in graph.nodes if n.name in ok]


def patch_regions(graph: Graph, corners: np.ndarray, patch: int | tuple[int, int],
                  tau: float | None = None) -> dict[str, Region]:
    """Changed region of every incremental node, for patches (square side, or (height, width)
    boxes) at ``corners`` (n, 2): tight, or capped at ``tau`` of each map (projective field
    thresholding, approximate)."""
    names = prefix(graph)
    ph, pw = (patch, patch) if isinstance(patch, (int, np.integer)) else patch
    y, x = corners[:, 0].astype(np.int64), corners[:, 1].astype(np.int64)
    regions = {graph.inputs[0]: Region(Interval(y, y + ph), Interval(x, x + pw))}
    for name in names:
        n = graph[name]
        if n.op is Op.INPUT:
            continue
        changed = node_region(n, [regions[i] for i in n.inputs], n.shape,
                              [graph[i].shape for i in n.inputs])
        regions[name] = cap(changed, n.shape, tau)
    return regions


def unsaturated(graph: Graph, regions: dict[str, FixedRegion],
                saturated: float | None = None) -> set[str]:
    """Layers worth maintaining: from the first layer whose recomputed region covers
    ``saturated`` of its map, nothing is saved, so it and everything after it run in full, as
    one backend call (fewer gathers and per-layer calls). The input is always kept.
    ``saturated``: None reads SATURATED when called (tests pin it)."""
    saturated = SATURATED if saturated is None else saturated
    keep = {graph.inputs[0]}
    for name in prefix(graph):
        n, r = graph[name], regions.get(name)
        if n.op is Op.INPUT or r is None or not all(i in keep for i in n.inputs):
            continue
        if r.h * r.w < saturated * n.shape[1] * n.shape[2]:
            keep.add(name)
    return keep


def centre_regions(graph: Graph, patch: int | tuple[int, int],
                   tau: float | None = None) -> dict[str, Region]:
    """Changed regions for the patch at the centre of the input (the cost model's worst case)."""
    _, h, w = graph.input_shape
    ph, pw = (patch, patch) if isinstance(patch, (int, np.integer)) else patch
    return patch_regions(graph, np.array([[(h - ph) // 2, (w - pw) // 2]]), (ph, pw), tau)


@dataclass(frozen=True)
class Cost:
    full_flops: int
    incremental_flops: int

    @property
    def speedup(self) -> float:
        return self.full_flops / max(1, self.incremental_flops)


_MEMO: "weakref.WeakKeyDictionary[Graph, dict]" = weakref.WeakKeyDictionary()


def memo(graph: Graph, key, compute):
    """``compute()`` once per (Graph object, key): the planner asks for the same static costs
    several times per query, and again in every query on the same model (a small model's
    query would spend more time on them than on inference)."""
    per_graph = _MEMO.setdefault(graph, {})
    if key not in per_graph:
        per_graph[key] = compute()
    return per_graph[key]


def theoretical(graph: Graph, patch: int | tuple[int, int], tau: float | None = None) -> Cost:
    """FLOPs per position with the patch at the centre (the worst case), full vs incremental
    (with projective field threshold ``tau`` when given).

    Each incremental layer pays its FLOPs scaled by the share of its output map it recomputes;
    layers from the first global one on run in full on every position.
    """
    patch = tuple(map(int, patch)) if isinstance(patch, (tuple, list)) else (int(patch),) * 2
    return memo(graph, ("theoretical", patch, tau), lambda: _theoretical(graph, patch, tau))


def _theoretical(graph: Graph, patch, tau: float | None) -> Cost:
    regions = centre_regions(graph, patch, tau)
    full = incr = 0
    for n in graph.nodes:
        f = node_flops(n, [graph[i].shape for i in n.inputs], graph.weights)
        full += f
        if n.name in regions and n.op is not Op.INPUT:
            r = fix(regions[n.name], n.shape)
            incr += f * (r.h * r.w) / (n.shape[1] * n.shape[2])
        elif n.op is not Op.INPUT:
            incr += f
    return Cost(int(full), int(math.ceil(incr)))


def boxes_share(graph: Graph, box: tuple[int, int], count: int,
                tau: float | None = None) -> float:
    """Share of full-inference FLOPs an incremental plan spends on an input with ``count``
    changed boxes of size ``box``: each box recomputes its own region in the layers the plan
    maintains (``unsaturated``), and the rest of the network runs in full."""
    regions = {k: fix(r, graph[k].shape) for k, r in centre_regions(graph, box, tau).items()}
    keep = unsaturated(graph, regions)
    full = incr = 0.0
    for n in graph.nodes:
        if n.op is Op.INPUT:
            continue
        f = node_flops(n, [graph[i].shape for i in n.inputs], graph.weights)
        full += f
        if n.name in keep:
            r = regions[n.name]
            incr += f * min(1.0, count * r.h * r.w / (n.shape[1] * n.shape[2]))
        else:
            incr += f
    return incr / full if full else 1.0


def region_sizes(graph: Graph, corners: np.ndarray, patch, tau: float | None = None,
                 block: int = 4096) -> dict[str, tuple[int, int]]:
    """Every layer's fixed region size over all ``corners``, computed ``block`` queries at a
    time, so that plans over blocks of the queries share their shapes (and segments) while
    none holds the per-query regions of all of them."""
    out: dict[str, tuple[int, int]] = {}
    for s in range(0, len(corners), block):
        for k, r in patch_regions(graph, corners[s:s + block], patch, tau).items():
            h, w = fixed_size(r)
            out[k] = (max(h, out.get(k, (1, 1))[0]), max(w, out.get(k, (1, 1))[1]))
    return out
