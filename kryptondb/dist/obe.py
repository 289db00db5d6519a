"""An occlusion scan on the cluster: the same driver (kryptondb/obe/scan.py) run per input, or
per chunk of one input's positions, on the workers; the client reassembles the scores in the
order one process would have produced them.

A task carries the model's digest and a reference to its parts (shipped once per worker), its
input's spec (the input, its fill, the grid, the targets) and the plan's decisions; it returns
the scores (NumPy) and the driver's counters. A worker computes the input's views itself (one
forward pass, against hundreds of positions per task) rather than receiving them: a task is then
self-contained, and one whose worker died runs again anywhere. The client's views (computed or
read from the catalog) are stored by the client alone.
"""

from __future__ import annotations

import math

import numpy as np

from kryptondb.dist.split import split
from kryptondb.dist.tasks import Call, run_calls
from kryptondb.dist.worker import backend_for, model_for
from kryptondb.ivm.cost import theoretical
from kryptondb.obe.scan import check, positions, scan as scan_here
from kryptondb.obe.spec import ScanSpec
from kryptondb.obe.strategy import DrillDown, Incremental, Runtime, add
from kryptondb.progress import silent

MAXED = ("workers", "chunk", "in_flight")  # counters a worker sets rather than adds


def scan(cluster, spec: ScanSpec, how, rt: Runtime, ref) -> np.ndarray:
    """``obe.scan.scan(spec, how, rt)`` with the inputs (or chunks) run on ``cluster``'s
    workers; ``ref``: the bound model (its digest names it on the workers)."""
    check(spec, how, rt)
    tasks = plan_tasks(spec, how, rt.model.graph, len(cluster.workers()))
    model = cluster.ship(ref)
    name = rt.backend.name
    calls = [Call(run_task, (ref.digest, model, spec.one(t.input), how, name,
                             None if t.whole else (t.start, t.stop)), t.size) for t in tasks]
    grid = spec.grid
    bar = rt.bar(len(spec) * grid.count, f"occlusion {grid.rows}x{grid.cols} on {cluster.address}")
    results = run_calls(cluster, calls, bar, rt.stats)
    maps = []
    for n in range(len(spec)):
        mine = [(t, r) for t, r in zip(tasks, results) if t.input == n]
        maps.append(_assemble(mine, spec, how, rt.stats))
    return np.stack(maps)


def plan_tasks(spec: ScanSpec, how, graph, workers: int):
    """The scan's tasks (kryptondb/dist/split.py), sized by the cost model's FLOPs."""
    return split(len(spec), spec.grid.count, max(1, workers), per_position(graph, spec, how),
                 chunkable=not isinstance(how, DrillDown))


def per_position(graph, spec: ScanSpec, how) -> float:
    cost = theoretical(graph, spec.grid.window, getattr(how, "tau", None))
    return cost.incremental_flops if isinstance(how, Incremental) else cost.full_flops


def _assemble(mine: list, spec: ScanSpec, how, stats: dict) -> np.ndarray:
    """(K, rows, cols) of one input from its tasks' results; their counters added."""
    for _, (_, own) in mine:
        _merge(stats, own)
    if len(mine) == 1 and mine[0][0].whole:
        return mine[0][1][0]
    count = spec.grid.count
    add(stats, rows=count, batches=math.ceil(count / how.batch))  # as one process counts
    out = np.concatenate([values for _, (values, _) in mine])
    return out.T.reshape(len(spec.targets), *spec.grid.shape)


def _merge(stats: dict, own: dict) -> None:
    for k in MAXED:
        if k in own:
            stats[k] = max(stats.get(k, 0), own.pop(k))
    add(stats, **own)


def run_task(share: int, digest: str, parts, spec: ScanSpec, how, backend: str,
             part: tuple[int, int] | None):
    """On a worker: (scores, counters) of one input's scan (``part`` None: (K, rows, cols) of
    the whole grid, as the driver runs it) or of positions [start, stop) ((m, K))."""
    rt = Runtime(model_for(digest, parts), backend_for(backend, share), silent, {})
    if part is None:
        return scan_here(spec, how, rt)[0], rt.stats
    corners = spec.grid.corners()[part[0]:part[1]]
    return positions(rt, how, spec, corners, "chunk"), rt.stats
