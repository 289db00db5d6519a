"""How an attribution runs on the engine, decided as KQL's planner decides an occlusion scan:
incremental when the calibrated cost model predicts it faster, its setup included
(kryptondb/rewrite/maintain_views.py ``why_naive``), the batch
the largest the memory budget holds (kryptondb/rewrite/batch_queries.py), and an ``approximate``
setting as projective-field thresholding (tau) and drill-down (kryptondb/approx/drilldown.py).
"""

from __future__ import annotations

import numbers

import numpy as np

from kryptondb.approx import drilldown as D
from kryptondb.attr.arguments import UnsupportedArgumentError
from kryptondb.errors import KryptonError
from kryptondb.ivm.cost import theoretical
from kryptondb.obe.grid import Grid
from kryptondb.obe.strategy import DrillDown, Incremental, Naive
from kryptondb.plan.option_ranges import DEFAULT_MEMORY_MB
from kryptondb.rewrite.batch_queries import (MAX_BATCH, MAX_INCREMENTAL_BATCH, NUMPY, ONNXRUNTIME,
                                              choose, choose_lean, incremental_footprint,
                                              naive_footprint)
from kryptondb.rewrite.maintain_views import why_naive
from kryptondb.runtime.backends import runs_winograd

PLANS = ("naive", "incremental")
APPROXIMATE = ("tau", "drilldown", "target")


def approximate_of(value) -> dict:
    """``approximate``: None, or a dict of tau (0, 1], drilldown (0, 1) and the drill-down's
    target speedup; checked here, with the argument's name."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not value or set(value) - set(APPROXIMATE):
        raise KryptonError(f"approximate must be a dict with some of {', '.join(APPROXIMATE)}, "
                           f"got {value!r}")
    real = {k: v for k, v in value.items() if v is not None}
    for k, v in real.items():
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise KryptonError(f"approximate[{k!r}] must be a number, got {v!r}")
    if "target" in real and "drilldown" not in real:
        raise KryptonError("approximate: a drill-down target needs 'drilldown' (its fraction)")
    if "drilldown" in real and not 0 < real["drilldown"] < 1:
        raise KryptonError(f"approximate['drilldown'] must be in (0, 1), got "
                           f"{real['drilldown']!r}")
    return real


def decide(graph, grid: Grid, backend: str, plan: str | None, approximate: dict):
    """(Naive | Incremental | DrillDown, what was decided and why, as a dict)."""
    if plan is not None and plan not in PLANS:
        raise KryptonError(f"plan must be one of {', '.join(PLANS)} or None (the cost model "
                           f"decides), got {plan!r}")
    if plan == "naive" and "tau" in approximate:
        raise UnsupportedArgumentError("approximate", "tau caps the regions an incremental "
                                       "plan recomputes; plan='naive' has none")
    coarse = _coarse(grid, approximate)
    corners = np.concatenate([g.corners() for g in (grid, coarse) if g is not None])
    tau = approximate.get("tau")
    cost = theoretical(graph, grid.window)
    info = {"theoretical_speedup": round(cost.speedup, 2), "backend": backend}
    mode = plan
    if mode is None:
        why = None if approximate else _why_naive(graph, cost, grid.window, backend, len(corners))
        mode = "incremental" if why is None else "naive"
        info.update({"why": why} if why else {})
    stage, info["batch"] = _stage(graph, mode, corners, grid.window, tau, backend)
    info["plan"] = "incremental" if isinstance(stage, Incremental) else "naive"
    if coarse is None:
        return stage, info
    info.update(coarse_strides=coarse.strides, drilldown=approximate["drilldown"])
    return DrillDown(coarse, approximate["drilldown"], stage), info


def _why_naive(graph, cost, window, backend: str, positions: int) -> str | None:
    """Why the incremental plan does not pay, or None when it does (the planner's rule)."""
    return why_naive(graph, window, cost, backend, (positions, 1))


def _stage(graph, mode: str, corners: np.ndarray, window, tau, backend: str):
    """The stage and its batch: the largest the default memory budget holds; an incremental
    plan that does not fit even one position at a time runs naive."""
    alloc = NUMPY if backend == "numpy" else ONNXRUNTIME
    budget = DEFAULT_MEMORY_MB << 20
    if mode == "incremental":
        fp = incremental_footprint(graph, corners, window, tau, alloc, runs_winograd(backend))
        choice, used = choose_lean(fp, lambda: incremental_footprint(
            graph, corners, window, tau, alloc), budget, len(corners), MAX_INCREMENTAL_BATCH)
        if choice is not None:
            block = choice.block if choice.block < len(corners) else None
            return Incremental(choice.batch, block, tau, used is fp), choice.batch
    choice = choose(naive_footprint(graph, len(corners), alloc), budget, len(corners),
                      MAX_BATCH)
    batch = choice.batch if choice is not None else 1
    return Naive(batch), batch


def _coarse(grid: Grid, approximate: dict) -> Grid | None:
    """The drill-down's first-stage grid: KQL's coarse stride per axis, at most the window (a
    cut-off grid covers every pixel only so); None without a drill-down, or when the coarse
    grid would be the requested one."""
    ratio = approximate.get("drilldown")
    if ratio is None:
        return None
    target = approximate.get("target") or D.default_target(ratio)
    try:
        strides = tuple(min(D.coarse_stride(s, ratio, target), h)
                        for s, h in zip(grid.strides, grid.window))
    except ValueError as exc:
        raise KryptonError(f"approximate: {exc}") from None
    return None if strides == grid.strides else grid.with_strides(strides)
