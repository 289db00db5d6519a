"""Where Resize samples its input: per output row (or column) the input positions it reads and
the weight of the second. One definition serves the NumPy kernel, the region algebra and the
incremental plan (ONNX Resize as onnxruntime computes it: coordinates in float32, clamped into
the input).

>>> t = taps(4, 8, 2.0, "linear", "half_pixel")
>>> t.lo.tolist(), t.hi.tolist()
([0, 0, 0, 1, 1, 2, 2, 3], [1, 1, 1, 2, 2, 3, 3, 3])
>>> t.weight.tolist()
[0.0, 0.25, 0.75, 0.25, 0.75, 0.25, 0.75, 0.0]
>>> taps(3, 6, 2.0, "nearest", "asymmetric", "floor").lo.tolist()
[0, 0, 1, 1, 2, 2]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("nearest", "linear")
COORDS = ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners")
NEAREST = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")


@dataclass(frozen=True)
class Taps:
    """Output o reads inputs ``lo[o]`` and ``hi[o]`` (equal for nearest), and is
    ``x[lo] + (x[hi] - x[lo]) * weight[o]`` (``weight`` None: ``x[lo]``). Both index arrays
    are non-decreasing in o, which the region algebra relies on."""

    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray | None


def source(in_size: int, out_size: int, scale: float, coord: str) -> np.ndarray:
    """The input coordinate (float32) each output position maps to, before clamping."""
    x = np.arange(out_size, dtype=np.float32)
    s, half = np.float32(scale), np.float32(0.5)
    if coord == "asymmetric":
        return x / s
    if coord == "align_corners":
        if out_size == 1:
            return np.zeros(1, np.float32)
        return x * np.float32(in_size - 1) / np.float32(out_size - 1)
    if coord == "pytorch_half_pixel" and out_size == 1:
        return np.zeros(1, np.float32)
    return (x + half) / s - half  # half_pixel, pytorch_half_pixel


def taps(in_size: int, out_size: int, scale: float, mode: str, coord: str,
         nearest: str = "floor") -> Taps:
    """The sampling positions along one axis of ``in_size`` resized to ``out_size``."""
    x = source(in_size, out_size, scale, coord)
    if mode == "nearest":
        if nearest == "floor":
            i = np.floor(x)
        elif nearest == "ceil":
            i = np.ceil(x)
        elif nearest == "round_prefer_floor":
            i = np.ceil(x - np.float32(0.5))
        else:  # round_prefer_ceil
            i = np.floor(x + np.float32(0.5))
        i = np.clip(i, 0, in_size - 1).astype(np.int64)
        return Taps(i, i, None)
    x = np.clip(x, np.float32(0), np.float32(in_size - 1))
    lo = np.minimum(np.floor(x).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    return Taps(lo, hi, (x - lo.astype(np.float32)).astype(np.float32))


def node_taps(node, in_hw) -> tuple[Taps, Taps]:
    """(rows, cols) of a Resize node reading an input of spatial size ``in_hw``."""
    (oh, ow), (sh, sw) = node.attr("size"), node.attr("scale")
    mode, coord, nearest = node.attr("mode"), node.attr("coord"), node.attr("nearest", "floor")
    return (taps(in_hw[0], oh, sh, mode, coord, nearest),
            taps(in_hw[1], ow, sw, mode, coord, nearest))
