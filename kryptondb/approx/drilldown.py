"""Adaptive drill-down: a coarse first stage over the whole map, then the requested stride only
on the fraction r of positions whose (upsampled) coarse drops are largest.

Stage costs: the coarse stage runs (S2 / S1)^2 of the positions, the second r of them, so the
speedup over one stage at S2 is S1^2 / (S2^2 + r * S1^2), below 1 / r; for a target speedup t
the coarse stride is S1 = sqrt(t / (1 - r * t)) * S2.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_RATIO, DEFAULT_TARGET = 0.25, 3.0


def default_target(ratio: float) -> float:
    """TARGET when a query gives only the fraction: 3, or 80% of the 1/r bound if lower."""
    return min(DEFAULT_TARGET, 0.8 / ratio)


def coarse_stride(stride: int, ratio: float, target: float) -> int:
    """The first stage's stride for the target speedup (rounded to the nearest integer).

    >>> coarse_stride(4, 0.25, 3.0)
    14
    """
    if not 0 < ratio < 1:
        raise ValueError(f"drill-down fraction must be in (0, 1), got {ratio}")
    if not 1 <= target < 1 / ratio:
        raise ValueError(f"target speedup must be in [1, {1 / ratio:g}) for fraction {ratio}")
    return max(stride, int(round(math.sqrt(target / (1 - ratio * target)) * stride)))


def speedup(coarse: int, stride: int, ratio: float) -> float:
    """Predicted speedup of drill-down over one stage at ``stride``.

    >>> round(speedup(14, 4, 0.25), 2)
    3.02
    """
    return coarse ** 2 / (stride ** 2 + ratio * coarse ** 2)


def upsample(coarse: np.ndarray, coarse_stride: int | tuple[int, int],
             fine_corners: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of the coarse map (rows1, cols1), its positions ``coarse_stride``
    (one, or (sy, sx)) pixels apart, at fine corners (n, 2), in pixel coordinates; corners past
    the last coarse position take its edge values."""
    rows, cols = coarse.shape
    sy, sx = (coarse_stride, coarse_stride) if np.ndim(coarse_stride) == 0 else coarse_stride
    fy = np.clip(fine_corners[:, 0] / sy, 0, rows - 1)
    fx = np.clip(fine_corners[:, 1] / sx, 0, cols - 1)
    y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
    y1, x1 = np.minimum(y0 + 1, rows - 1), np.minimum(x0 + 1, cols - 1)
    wy, wx = fy - y0, fx - x0
    top = coarse[y0, x0] * (1 - wx) + coarse[y0, x1] * wx
    bottom = coarse[y1, x0] * (1 - wx) + coarse[y1, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def select(estimate: np.ndarray, ratio: float) -> np.ndarray:
    """Indices of the ceil(ratio * n) positions with the lowest estimated probability (the
    largest drops), in position order."""
    k = min(len(estimate), max(1, math.ceil(ratio * len(estimate))))
    return np.sort(np.argsort(estimate, kind="stable")[:k])
