"""Layouts of an occlusion scan's values: per window (the grid itself), or per pixel of the input,
each pixel the mean of the values of the windows covering it (Captum's ``Occlusion`` layout).

>>> from kryptondb.obe.grid import Grid
>>> pixels(np.array([[1.0, 3.0]]), Grid(2, 3, (2, 2), 1), (2, 3)).tolist()
[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
"""

from __future__ import annotations

import numpy as np

from kryptondb.obe.grid import Grid


def pixels(values: np.ndarray, grid: Grid, input_hw: tuple[int, int]) -> np.ndarray:
    """(..., rows, cols) values per window -> (..., H, W): each pixel the mean of the values of
    the windows covering it (a window cut off at the border covers only what is inside); a
    pixel no window covers (the remainder a fit grid leaves) is 0."""
    h, w = (int(v) for v in input_hw)
    values = np.asarray(values, np.float64)
    lead = values.shape[:-2]
    flat = values.reshape(-1, grid.count)
    corners = grid.corners()
    y0, x0 = corners[:, 0], corners[:, 1]
    y1 = np.minimum(y0 + grid.window[0], h)
    x1 = np.minimum(x0 + grid.window[1], w)
    # each window as four signed corners of a summed-area table of (h + 1) x (w + 1)
    cells = np.concatenate([y0 * (w + 1) + x0, y0 * (w + 1) + x1, y1 * (w + 1) + x0,
                            y1 * (w + 1) + x1])
    signs = np.repeat([1.0, -1.0, -1.0, 1.0], grid.count)
    count = _spread(cells, signs, h, w)
    out = np.stack([_spread(cells, signs * np.tile(v, 4), h, w) for v in flat])
    mean = np.divide(out, count, out=np.zeros_like(out), where=count > 0)
    return mean.reshape(*lead, h, w).astype(np.float32)


def _spread(cells: np.ndarray, weights: np.ndarray, h: int, w: int) -> np.ndarray:
    """The sum over windows of their weight on every pixel they cover: (h, w)."""
    table = np.bincount(cells, weights, (h + 1) * (w + 1)).reshape(h + 1, w + 1)
    return table.cumsum(axis=0).cumsum(axis=1)[:h, :w]
