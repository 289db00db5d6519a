"""The occlusion driver's promise (kryptondb/obe): its incremental scan equals its naive scan,
for random CNN DAGs (tests/test_ivm_properties.py's), rectangular windows, per-axis strides,
both border rules (a window cut off at the border runs as a full box shifted inside), tensor
baselines, several targets and several inputs, both scores; and a drill-down that picks every
position equals the scan of the requested grid."""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ivm_properties import cnns

from kryptondb.model.model import Model
from kryptondb.obe.grid import Grid
from kryptondb.obe.incremental import views_of
from kryptondb.obe.scan import scan
from kryptondb.obe.spec import SCORES, ScanSpec
from kryptondb.obe.strategy import DrillDown, Incremental, Naive, Runtime
from kryptondb.runtime.backends import get_backend

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TOLERANCE = 1e-5  # of the scores' largest magnitude


def _axis(draw, size: int, border: str) -> tuple[int, int]:
    """(window, stride) along one axis of ``size`` pixels."""
    window = draw(st.integers(1, size))
    most = window if border == "cut" and window < size else 5
    return window, draw(st.integers(1, min(most, 5)))


@st.composite
def scans(draw):
    """(model, spec, batch, block): a random CNN and an occlusion scan of random inputs."""
    g = draw(cnns())
    c, h, w = g.input_shape
    border = draw(st.sampled_from(["fit", "cut"]))
    (wh, sy), (ww, sx) = _axis(draw, h, border), _axis(draw, w, border)
    grid = Grid(h, w, (wh, ww), (sy, sx), border)
    n = draw(st.integers(1, 2))
    classes = math.prod(g[g.output].shape)
    targets = draw(st.lists(st.integers(0, classes - 1), min_size=1, max_size=3))
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    shape = draw(st.sampled_from([(), (c, 1, 1), (c, h, w), (n, c, h, w), (1, 1, w)]))
    baselines = rng.standard_normal(shape).astype(np.float32)
    spec = ScanSpec(x, grid, targets, baselines, draw(st.sampled_from(SCORES)))
    model = Model("rand", g, None, "seeded")
    return model, spec, draw(st.integers(1, 9)), draw(st.none() | st.integers(1, 12))


def _check(case, backend_name: str, log_error) -> None:
    model, spec, batch, block = case
    be = get_backend(backend_name)
    naive = scan(spec, Naive(batch), Runtime(model, be))
    views = tuple(views_of(model.graph, x, be) for x in spec.inputs) if block else ()
    incremental = scan(spec, Incremental(batch, block), Runtime(model, be, views=views))
    assert incremental.shape == (len(spec), len(spec.targets), *spec.grid.shape)
    assert log_error(f"obe incremental {backend_name}", incremental, naive) <= TOLERANCE


@SETTINGS
@given(scans())
def test_incremental_scan_equals_naive_scan_numpy(log_error, case):
    _check(case, "numpy", log_error)


@settings(SETTINGS, max_examples=25)
@given(scans())
def test_incremental_scan_equals_naive_scan_onnxruntime(log_error, case):
    _check(case, "onnxruntime", log_error)


@settings(SETTINGS, max_examples=25)
@given(scans(), st.integers(2, 6), st.integers(2, 6))
def test_drill_down_picking_every_position_is_the_scan(log_error, case, cy, cx):
    """Stage two at a share so close to 1 that every position is picked: the requested grid's
    scan, whatever stage one estimated."""
    model, spec, batch, block = case
    grid = spec.grid
    wider = [c * s for c, s in zip((cy, cx), grid.strides)]
    if grid.border == "cut":  # strides no larger than the window
        wider = [min(s, win) for s, win in zip(wider, grid.window)]
    coarse = grid.with_strides(tuple(wider))
    be, stats = get_backend("numpy"), {}
    how = DrillDown(coarse, 1 - 1e-9, Incremental(batch, block))
    drilled = scan(spec, how, Runtime(model, be, stats=stats))
    whole = scan(spec, Naive(batch), Runtime(model, be))
    assert log_error("obe drill-down numpy", drilled, whole) <= TOLERANCE
    assert stats["stage1"] == len(spec) * coarse.count
    assert stats["stage2"] == len(spec) * grid.count
