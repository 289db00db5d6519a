"""Where the occluding window goes: a grid of top-left corners over an H x W input.

Two border rules. ``fit`` (KQL's): only windows that fit inside, floor((H - h) / sy) + 1 rows.
``cut`` (Captum's ``Occlusion``): ceil((H - h) / sy) + 1 rows, the last windows reaching past the
border and cut off there, so that every pixel is covered (which needs strides no larger than the
window, as Captum asserts).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import numpy as np

from kryptondb.errors import KryptonError

BORDERS = ("fit", "cut")


def pair(value, what: str) -> tuple[int, int]:
    """An int or an (h, w) pair of positive ints -> (h, w); anything else is a KryptonError."""
    items = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(items) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                  and v >= 1 for v in items):
        raise KryptonError(f"{what} must be a positive integer or a pair (height, width) of "
                           f"them, got {value!r}")
    return int(items[0]), int(items[1])


def side(value: tuple[int, int]) -> str:
    """A window or strides as written: '16' for both axes alike, else '8x12'."""
    return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"


@dataclass(frozen=True, slots=True)
class Grid:
    """Window positions over a ``height`` x ``width`` input, in row-major order. ``window`` and
    ``strides`` are (h, w) and (sy, sx); an int stands for both axes.

    >>> Grid(10, 10, 4, 4).shape, Grid(10, 10, 4, 4, "cut").shape
    ((2, 2), (3, 3))
    >>> Grid(10, 10, 4, 4, "cut").corners()[-1].tolist()  # cut off: rows and columns 8 and 9
    [8, 8]
    """

    height: int
    width: int
    window: tuple[int, int]
    strides: tuple[int, int]
    border: str = "fit"

    def __post_init__(self):
        for name in ("height", "width"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                raise KryptonError(f"grid {name} must be a positive integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        object.__setattr__(self, "window", pair(self.window, "the window"))
        object.__setattr__(self, "strides", pair(self.strides, "the strides"))
        if self.border not in BORDERS:
            raise KryptonError(f"border must be one of {', '.join(BORDERS)}, got {self.border!r}")
        self._check_axes()

    def _check_axes(self) -> None:
        for axis, size, h, s in zip(("height", "width"), (self.height, self.width), self.window,
                                    self.strides):
            if h > size:
                raise KryptonError(f"the window's {axis} {h} exceeds the input's {size}")
            if self.border == "cut" and h < size and s > h:
                raise KryptonError(f"border 'cut' covers every pixel only with strides no larger "
                                   f"than the window: stride {s} > window {h} along the {axis}")

    def _steps(self, size: int, h: int, s: int) -> int:
        if self.border == "cut":
            return math.ceil((size - h) / s) + 1
        return (size - h) // s + 1

    @property
    def rows(self) -> int:
        return self._steps(self.height, self.window[0], self.strides[0])

    @property
    def cols(self) -> int:
        return self._steps(self.width, self.window[1], self.strides[1])

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def corners(self) -> np.ndarray:
        """(count, 2) array of (y, x) pixel corners in row-major order; with ``cut``, the last
        windows of a row or column reach past the border."""
        ii, jj = np.meshgrid(np.arange(self.rows), np.arange(self.cols), indexing="ij")
        return np.stack([ii.ravel() * self.strides[0], jj.ravel() * self.strides[1]], axis=1)

    def inside(self, corners: np.ndarray) -> np.ndarray:
        """Corners shifted back so that a full window fits: a window cut off at the border is
        the part of this box from its own corner on."""
        return np.minimum(corners, [self.height - self.window[0], self.width - self.window[1]])

    def with_strides(self, strides) -> "Grid":
        return replace(self, strides=strides)
