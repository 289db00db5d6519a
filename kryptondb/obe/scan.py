"""The occlusion driver: a scan spec and the plan's decisions -> the scores of every window.

``scan(spec, how, rt)`` runs each input of ``spec`` as ``how`` says (``Naive``, ``Incremental``
or ``DrillDown``, kryptondb/obe/strategy.py) with the runtime ``rt``, and returns the scores
(N, K, rows, cols). KQL's occlusion operator and a Python API call it alike.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from kryptondb.errors import KryptonError, ShapeError
from kryptondb.obe.drilldown import check_coarse, drill_down
from kryptondb.obe.incremental import incremental_positions
from kryptondb.obe.naive import naive_positions
from kryptondb.obe.spec import ScanSpec
from kryptondb.obe.strategy import DrillDown, Incremental, Naive, Runtime, add

POSITIONS = {Naive: naive_positions, Incremental: incremental_positions}


def scan(spec: ScanSpec, how: Naive | Incremental | DrillDown, rt: Runtime) -> np.ndarray:
    """(N, K, rows, cols): target k's score on input n with the window at grid position (i, j).
    Counters go to ``rt.stats`` (rows and batches: those of the requested grid, all inputs)."""
    check(spec, how, rt)
    maps = [_one(spec.one(n), how, replace(rt, views=rt.views[n:n + 1]))
            for n in range(len(spec))]
    count = spec.grid.count
    add(rt.stats, rows=len(spec) * count, batches=len(spec) * math.ceil(count / how.batch))
    return np.stack(maps)


def check(spec: ScanSpec, how, rt: Runtime) -> None:
    """The spec fits the model, the decisions fit the spec, views (if any) fit the inputs."""
    shape, graph = tuple(rt.model.input_shape), rt.model.graph
    if spec.inputs.shape[1:] != shape:
        raise ShapeError(f"the model takes {' x '.join(map(str, shape))} inputs, the scan's are "
                         f"{' x '.join(map(str, spec.inputs.shape[1:]))}")
    classes = math.prod(graph[graph.output].shape)
    if max(spec.targets) >= classes:
        raise KryptonError(f"target {max(spec.targets)} is out of range: the model has "
                           f"{classes} outputs (numbered from 0)")
    if not isinstance(how, (Naive, Incremental, DrillDown)):
        raise KryptonError(f"a scan runs Naive, Incremental or DrillDown, got {how!r}")
    if isinstance(how, DrillDown):
        check_coarse(how, spec.grid)
    if rt.views and len(rt.views) != len(spec):
        raise KryptonError(f"{len(rt.views)} sets of views for {len(spec)} inputs")


def positions(rt: Runtime, how: Naive | Incremental, spec: ScanSpec, corners: np.ndarray,
              label: str) -> np.ndarray:
    """(len(corners), K): the scores of ``spec``'s one input at ``corners``, as ``how`` says."""
    return POSITIONS[type(how)](rt, how, spec, corners, label)


def _one(spec: ScanSpec, how, rt: Runtime) -> np.ndarray:
    """(K, rows, cols) of ``spec``'s one input."""
    grid = spec.grid
    if isinstance(how, DrillDown):
        out = drill_down(how, grid, lambda c, label: positions(rt, how.stage, spec, c, label),
                         rt.stats)
    else:
        out = positions(rt, how, spec, grid.corners(), f"occlusion {grid.rows}x{grid.cols}")
    return out.T.reshape(len(spec.targets), grid.rows, grid.cols)
