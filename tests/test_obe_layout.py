"""The input-sized layout (kryptondb/obe/layout.py): each pixel the mean of the values of the
windows covering it, as a loop over windows computes it, for both border rules; the heatmap
picture uses it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryptondb.errors import ShapeError
from kryptondb.obe.grid import Grid
from kryptondb.obe.layout import pixels, window_sizes
from kryptondb.obe.render import upsample


def _loop(values: np.ndarray, grid: Grid) -> np.ndarray:
    """The definition: add each window's value to the pixels it covers, divide by the count."""
    total = np.zeros(values.shape[:-2] + (grid.height, grid.width))
    count = np.zeros((grid.height, grid.width))
    h, w = grid.window
    for (y, x), v in zip(grid.corners(), values.reshape(*values.shape[:-2], -1).T):
        total[..., y:y + h, x:x + w] += v.T[..., None, None] if v.ndim else v
        count[y:y + h, x:x + w] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


@st.composite
def grids(draw):
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    h, w = draw(st.integers(1, height)), draw(st.integers(1, width))
    border = draw(st.sampled_from(["fit", "cut"]))
    sy = draw(st.integers(1, h if border == "cut" and h < height else 6))
    sx = draw(st.integers(1, w if border == "cut" and w < width else 6))
    return Grid(height, width, (h, w), (sy, sx), border)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(grids(), st.integers(0, 2**31 - 1))
def test_pixels_is_the_mean_of_the_covering_windows(grid, seed):
    values = np.random.default_rng(seed).normal(size=(2, *grid.shape))
    got = pixels(values, grid)
    assert got.shape == (2, grid.height, grid.width)
    np.testing.assert_allclose(got, np.stack([_loop(v, grid) for v in values]), atol=1e-12)
    if grid.border == "cut":  # every pixel covered: constant values stay constant
        np.testing.assert_allclose(pixels(np.ones(grid.shape), grid), 1.0)


def test_pixels_checks_the_grid_shape():
    with pytest.raises(ShapeError, match="2 x 2 positions"):
        pixels(np.zeros((3, 3)), Grid(4, 4, 2, 2))


def test_window_sizes_are_cut_at_the_border():
    g = Grid(6, 8, (3, 4), (2, 3), "cut")
    sizes = window_sizes(g, g.corners())
    assert sizes.tolist()[-1] == [2, 2] and sizes.max(axis=0).tolist() == [3, 4]


def test_the_heatmap_picture_uses_the_layout():
    class Heat:  # what upsample reads of a Heatmap: its drops and its windows
        drop = np.arange(4.0).reshape(2, 2)
        windows = Grid(10, 10, 4, 4)

    np.testing.assert_allclose(upsample(Heat), _loop(Heat.drop, Grid(10, 10, 4, 4)))
    Heat.drop = np.arange(9.0).reshape(3, 3)  # Captum's grid: the last windows cut off
    Heat.windows = Grid(10, 10, 4, 4, "cut")
    np.testing.assert_allclose(upsample(Heat), _loop(Heat.drop, Grid(10, 10, 4, 4, "cut")))
