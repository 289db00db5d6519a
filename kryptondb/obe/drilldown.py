"""The drill-down scan: a coarse grid over the whole input, then the requested grid only where
the coarse scores, upsampled, are lowest (the largest drops); the rest keeps the upsampled
estimate (kryptondb/approx/drilldown.py has the geometry and the speedup)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from kryptondb.approx import drilldown as D
from kryptondb.errors import KryptonError
from kryptondb.obe.grid import Grid
from kryptondb.obe.strategy import DrillDown, add

Stage = Callable[[np.ndarray, str], np.ndarray]  # (corners, label) -> (len(corners), K) scores


def check_coarse(how: DrillDown, grid: Grid) -> None:
    """The coarse grid differs from the requested one in its strides only."""
    if (how.coarse.height, how.coarse.width, how.coarse.window, how.coarse.border) != \
            (grid.height, grid.width, grid.window, grid.border):
        raise KryptonError(f"the drill-down's coarse grid {how.coarse} must differ from the "
                           f"scan's grid {grid} in its strides only")


def drill_down(how: DrillDown, grid: Grid, stage: Stage, stats: dict) -> np.ndarray:
    """(grid.count, K): ``stage`` over the coarse grid, bilinearly upsampled to ``grid``; then
    ``stage`` again at the ``how.ratio`` share of positions with the lowest estimates of each
    target (their union)."""
    first, fine = how.coarse, grid.corners()
    rough = stage(first.corners(), f"drill-down stage 1: {first.rows}x{first.cols}")
    out = np.stack([D.upsample(rough[:, k].reshape(first.shape), first.strides, fine)
                    for k in range(rough.shape[1])], axis=1)
    pick = np.unique(np.concatenate([D.select(out[:, k], how.ratio)
                                     for k in range(out.shape[1])]))
    out[pick] = stage(fine[pick], f"drill-down stage 2: {len(pick)} of {grid.count}")
    add(stats, stage1=first.count, stage2=len(pick))
    return out
