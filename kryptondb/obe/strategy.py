"""How a scan runs: the plan's decisions as small frozen values, and what the driver runs with.

``Naive(batch)``: every occluded input through the full model. ``Incremental(batch, block,
tau)``: over materialized views (kryptondb/ivm). ``DrillDown(coarse, ratio, stage)``: a coarse
grid first, then the requested one where drops are largest (kryptondb/approx/drilldown.py).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Callable

from kryptondb.errors import KryptonError
from kryptondb.ivm.counters import merge
from kryptondb.obe.grid import Grid
from kryptondb.progress import silent


def _count(value, what: str, none: bool = False) -> None:
    if value is None and none:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise KryptonError(f"{what} must be a positive integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class Naive:
    """Occluded copies of the input through the full model, ``batch`` at a time."""

    batch: int

    def __post_init__(self):
        _count(self.batch, "the batch")


@dataclass(frozen=True, slots=True)
class Incremental:
    """Over the input's materialized views: at most ``batch`` positions in flight (one chunk
    per worker where the backend runs several), plans built for ``block`` positions at a time
    (None: all), every layer's recomputed region capped at ``tau`` of its map (None: exact)."""

    batch: int
    block: int | None = None
    tau: float | None = None
    winograd: bool = True  # large 3x3 convolutions by Winograd where the backend takes it

    def __post_init__(self):
        _count(self.batch, "the batch")
        _count(self.block, "the block", none=True)
        if self.tau is not None and (not isinstance(self.tau, numbers.Real)
                                     or not 0 < self.tau <= 1):
            raise KryptonError(f"tau must be in (0, 1], got {self.tau!r}")


@dataclass(frozen=True, slots=True)
class DrillDown:
    """Two stages run as ``stage`` says: the ``coarse`` grid over the whole input, then the
    requested grid only at the ``ratio`` share of positions whose upsampled coarse scores are
    lowest (the largest drops) for some target."""

    coarse: Grid
    ratio: float
    stage: Naive | Incremental

    def __post_init__(self):
        if not isinstance(self.coarse, Grid):
            raise KryptonError(f"the coarse grid must be a Grid, got {self.coarse!r}")
        if not isinstance(self.ratio, numbers.Real) or not 0 < self.ratio < 1:
            raise KryptonError(f"the drill-down ratio must be in (0, 1), got {self.ratio!r}")
        if not isinstance(self.stage, (Naive, Incremental)):
            raise KryptonError(f"a drill-down stage is Naive or Incremental, got {self.stage!r}")

    @property
    def batch(self) -> int:
        return self.stage.batch


@dataclass(frozen=True)
class Runtime:
    """What a scan runs with: the model (its graph, and ``probabilities``), a backend, a
    progress-bar factory ``bar(total, label)``, a dict the driver fills with its counters
    (rows, batches, flops, bytes; gather_s, compute_s, workers, blocks, in_flight; stage1,
    stage2) and, per input, the materialized views an incremental scan reads (computed where
    missing)."""

    model: object  # kryptondb.model.model.Model
    backend: object  # kryptondb.runtime.backends.Backend
    bar: Callable[[int, str], object] = silent
    stats: dict = field(default_factory=dict)
    views: tuple[dict, ...] = ()


def add(stats: dict, **counts) -> None:
    """Add counts to a scan's counters (per-step counters, ``layers``, row by row)."""
    for k, v in counts.items():
        if isinstance(v, dict):
            merge(stats.setdefault(k, {}), v)
        else:
            stats[k] = stats.get(k, 0) + v
