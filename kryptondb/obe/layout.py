"""The input-sized layout of an occlusion scan: each pixel the mean of the values of the windows
covering it (Captum's ``Occlusion`` attribution; the heatmap pictures; KQL's pixel layout).

A window at grid position (i, j) covers rows [i sy, i sy + h) and columns [j sx, j sx + w), cut
off at the border. Its indicator is an outer product of a row and a column indicator, so the sum
over windows is ``R^T V C`` (R: rows x H, C: cols x W, 0/1) and the count of covering windows
``r_count x c_count``: two matrix products instead of a loop over windows.
"""

from __future__ import annotations

import numpy as np

from kryptondb.errors import ShapeError
from kryptondb.obe.grid import Grid


def cover(steps: int, size: int, window: int, stride: int) -> np.ndarray:
    """(steps, size) 0/1: which of ``size`` pixels the window at each step covers.

    >>> cover(3, 5, 2, 2).astype(int).tolist()
    [[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]]
    """
    start = np.arange(steps)[:, None] * stride
    pixel = np.arange(size)[None, :]
    return ((pixel >= start) & (pixel < start + window)).astype(np.float64)


def pixels(values: np.ndarray, grid: Grid) -> np.ndarray:
    """(..., rows, cols) values of ``grid``'s windows -> (..., H, W) float64: each pixel the mean
    over the windows covering it; pixels no window covers (a ``fit`` grid's last rows or
    columns) get 0.

    >>> g = Grid(4, 4, 2, 2, "cut")
    >>> pixels(np.arange(4.0).reshape(2, 2), g).tolist()[0]
    [0.0, 0.0, 1.0, 1.0]
    >>> float(pixels(np.ones((3, 3)), Grid(5, 5, 2, 2, "cut")).min())  # border windows, cut
    1.0
    """
    values = np.asarray(values, np.float64)
    if values.shape[-2:] != grid.shape:
        raise ShapeError(f"window values of shape {values.shape} do not end in the grid's "
                         f"{grid.rows} x {grid.cols} positions")
    rows = cover(grid.rows, grid.height, grid.window[0], grid.strides[0])
    cols = cover(grid.cols, grid.width, grid.window[1], grid.strides[1])
    total = np.einsum("iy,...ij,jx->...yx", rows, values, cols, optimize=True)
    count = np.outer(rows.sum(axis=0), cols.sum(axis=0))
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def window_sizes(grid: Grid, corners: np.ndarray) -> np.ndarray:
    """(n, 2) (h, w) of the windows at ``corners`` as cut off at the border."""
    edge = np.array([grid.height, grid.width]) - corners
    return np.minimum(np.asarray(grid.window), edge)
