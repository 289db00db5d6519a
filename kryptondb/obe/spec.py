"""What an occlusion scan computes, whoever asks (a KQL plan, or a Python API like Captum's
``Occlusion(forward_func).attribute(inputs, sliding_window_shapes, strides, baselines, target)``),
and the record of its scores. How it is computed (naive, incremental, drill-down) is the plan's
decision, kept apart (kryptondb/obe/strategy.py).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from kryptondb.errors import KryptonError, ShapeError
from kryptondb.obe.grid import Grid

SCORES = ("probability", "logit")  # softmax of the output (KQL's), or the raw output (Captum's)


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only view: the spec is a value, nobody writes through it."""
    view = a.view()
    view.flags.writeable = False
    return view


def _targets(value) -> tuple[int, ...]:
    items = (value,) if isinstance(value, numbers.Integral) else tuple(value)
    if not items or not all(isinstance(t, numbers.Integral) and not isinstance(t, bool)
                            and t >= 0 for t in items):
        raise KryptonError(f"targets must be one or more class indices (integers >= 0), got "
                           f"{value!r}")
    return tuple(int(t) for t in items)


@dataclass(frozen=True, eq=False)
class ScanSpec:
    """Occlude every ``grid`` window of each of the N ``inputs`` (N, C, H, W) with
    ``baselines`` and score the model's output for each of the K ``targets``.

    ``baselines``: what the window shows, broadcastable to the inputs: a scalar, a (C, H, W)
    fill tensor for all inputs, or (N, C, H, W), one per input. ``score``: 'probability' (the
    softmax of the output) or 'logit' (the raw output). Every occluded forward pass yields all
    targets at once; scores come out as (N, K, rows, cols).
    """

    inputs: np.ndarray
    grid: Grid
    targets: tuple[int, ...]
    baselines: np.ndarray | float = 0.0
    score: str = "probability"

    def __post_init__(self):
        x = np.asarray(self.inputs, np.float32)
        if x.ndim != 4 or not x.shape[0]:
            raise ShapeError(f"occlusion inputs must be N x C x H x W (N >= 1), got shape "
                             f"{x.shape}")
        if not isinstance(self.grid, Grid) or (self.grid.height, self.grid.width) != x.shape[2:]:
            raise ShapeError(f"the grid must be a Grid over the inputs' {x.shape[2]} x "
                             f"{x.shape[3]} pixels, got {self.grid!r}")
        b = np.asarray(self.baselines, np.float32)
        try:
            fits = np.broadcast_shapes(b.shape, x.shape) == x.shape
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(f"baselines of shape {b.shape} do not broadcast to the inputs' "
                             f"{x.shape}: give a scalar, (C, H, W) or (N, C, H, W)")
        if self.score not in SCORES:
            raise KryptonError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        object.__setattr__(self, "inputs", _frozen(x))
        object.__setattr__(self, "baselines", _frozen(b))
        object.__setattr__(self, "targets", _targets(self.targets))

    def __len__(self) -> int:
        return len(self.inputs)

    def baseline(self, n: int) -> np.ndarray:
        """Input ``n``'s fill (C, H, W) (a broadcast view, no copy)."""
        return np.broadcast_to(self.baselines, self.inputs.shape)[n]

    def one(self, n: int) -> "ScanSpec":
        """The spec of input ``n`` alone."""
        return ScanSpec(self.inputs[n:n + 1], self.grid, self.targets, self.baseline(n),
                        self.score)

    def scores(self, model, outputs: np.ndarray) -> np.ndarray:
        """(B, K): the targets' scores in the model's outputs (B, classes)."""
        values = model.probabilities(outputs) if self.score == "probability" else outputs
        return values[:, list(self.targets)]


@dataclass(frozen=True, eq=False)
class Scores:
    """One record of a scan's scores: ``values[n, k, i, j]``, target k's score on input n with
    the window at grid position (i, j)."""

    spec: ScanSpec
    values: np.ndarray  # (N, K, rows, cols)
    model: object = None  # what ran (a plan's bound ModelRef: its digest keys the session memo)
    approximate: dict | None = None  # the approximate plan's settings (tau, drill-down ...)
    ssim: float | None = None  # against the exact scores, when they were at hand

    def __post_init__(self):
        want = (len(self.spec), len(self.spec.targets), *self.spec.grid.shape)
        if self.values.shape != want:
            raise ShapeError(f"scores of shape {self.values.shape}, the spec gives {want}")
