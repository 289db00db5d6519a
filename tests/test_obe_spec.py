"""The occlusion scan's spec (kryptondb/obe): the grid's two border rules against a direct
reading of Captum's, the cut-off windows and tensor baselines against Captum's masking formula,
and the errors a caller gets for a spec, decisions or runtime that do not fit."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryptondb.errors import KryptonError
from kryptondb.graph.builder import Builder
from kryptondb.model.model import Model
from kryptondb.obe.grid import Grid
from kryptondb.obe.scan import scan
from kryptondb.obe.spec import Scores, ScanSpec
from kryptondb.obe.strategy import DrillDown, Incremental, Naive, Runtime
from kryptondb.obe.tuning import TAUS, tune
from kryptondb.runtime.backends import get_backend


def captum_starts(size: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Captum 0.9, ``Occlusion.attribute``: per axis, ``shift_counts = ceil((size - window) /
    stride) + 1``; ``_occlusion_mask`` puts the window of ones at ``index * stride`` and pads
    it by ``size - (index * stride + window)`` after it, a negative pad (the last windows)
    cutting it off at the border. (first pixel, one past the last) per position."""
    count = int(np.add(np.ceil(np.divide(size - window, stride)).astype(int), 1))
    return [(i * stride, min(size, i * stride + window)) for i in range(count)]


def fit_starts(size: int, window: int, stride: int) -> list[tuple[int, int]]:
    """KQL's rule: floor((size - window) / stride) + 1 windows, all inside."""
    return [(i * stride, i * stride + window) for i in range((size - window) // stride + 1)]


def _pixels(grid: Grid) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Each position's (rows, cols) extent, the window cut at the border."""
    h, w = grid.window
    return [((y, min(grid.height, y + h)), (x, min(grid.width, x + w)))
            for y, x in grid.corners().tolist()]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(1, 40), st.integers(1, 40), st.data())
def test_grid_counts_and_corners_follow_captum_and_kql(height, width, data):
    h, w = data.draw(st.integers(1, height)), data.draw(st.integers(1, width))
    border = data.draw(st.sampled_from(["fit", "cut"]))
    sy = data.draw(st.integers(1, h if border == "cut" and h < height else 9))
    sx = data.draw(st.integers(1, w if border == "cut" and w < width else 9))
    grid = Grid(height, width, (h, w), (sy, sx), border)
    rule = captum_starts if border == "cut" else fit_starts
    rows, cols = rule(height, h, sy), rule(width, w, sx)
    assert grid.shape == (len(rows), len(cols)) and grid.count == len(rows) * len(cols)
    assert _pixels(grid) == [(r, c) for r in rows for c in cols]  # row-major
    covered = np.zeros((height, width), bool)
    for (y0, y1), (x0, x1) in _pixels(grid):
        covered[y0:y1, x0:x1] = True
    assert covered.all() or border == "fit"
    inside = grid.inside(grid.corners())
    assert (inside >= 0).all() and (inside + grid.window <= (height, width)).all()
    assert (grid.corners() - inside < grid.window).all()  # the cut window lies in the box


def test_grid_examples():
    assert Grid(224, 224, 16, 4).shape == (53, 53)  # KQL's 53 x 53 heatmap
    assert Grid(224, 224, 16, 8).shape == (27, 27)
    assert Grid(224, 224, 16, 8, "cut").shape == (27, 27)  # (224 - 16) / 8 is whole
    assert Grid(10, 7, (4, 3), (3, 2), "cut").shape == (3, 3)  # ceil(6/3)+1, ceil(4/2)+1
    assert Grid(10, 7, (4, 3), (3, 2)).shape == (3, 3)
    assert Grid(11, 7, (4, 3), (3, 2)).shape == (3, 3) != Grid(11, 7, (4, 3), (3, 2),
                                                               "cut").shape
    assert Grid(32, 32, 8, 2) == Grid(32, 32, (8, 8), (2, 2), "fit")


@pytest.mark.parametrize("args, message", [
    ((10, 10, 11, 1), "the window's height 11 exceeds the input's 10"),
    ((10, 10, (2, 11), 1), "the window's width 11 exceeds the input's 10"),
    ((10, 10, 4, 5, "cut"), "stride 5 > window 4 along the height"),
    ((10, 10, 4, 2, "clip"), "border must be one of fit, cut"),
    ((10, 10, 0, 1), "the window must be a positive integer or a pair"),
    ((10, 10, 4, (1, 2, 3)), "the strides must be a positive integer or a pair"),
    ((10, 10, True, 1), "the window must be"),
    ((0, 10, 1, 1), "grid height must be a positive integer"),
])
def test_grid_errors(args, message):
    with pytest.raises(KryptonError, match=message.replace("(", r"\(")):
        Grid(*args)


def test_stride_past_the_window_is_fine_where_windows_fit_or_span_the_input():
    assert Grid(10, 10, 4, 5).shape == (2, 2)
    assert Grid(10, 10, (10, 4), (7, 4), "cut").shape == (1, 3)


# -- the spec, against Captum's masking formula ----------------------------------------------------


def _model(shape=(2, 9, 11), classes=5, seed=3) -> Model:
    b = Builder("m", shape, seed=seed, bias_std=0.5)
    y = b.act(b.conv("input", "c1", 3, 3, 1, 1, bias=True), "relu", "r1")
    y = b.pool(y, "max", 2, 2, name="p1")
    return Model("m", b.build(b.linear(b.flatten(b.global_pool(y)), "fc", classes)), None,
                 "seeded")


def captum_scores(model, x, baselines, grid: Grid, targets, logit: bool) -> np.ndarray:
    """(N, K, rows, cols) by Captum's formula, input * (1 - mask) + baseline * mask, the mask
    the window of ones at each position cut off at the border; the model's raw output (logit)
    or its softmax at each target."""
    be, g = get_backend("numpy"), model.graph
    base = np.broadcast_to(baselines, x.shape)
    out = np.empty((len(x), len(targets), *grid.shape), np.float32)
    for n in range(len(x)):
        for p, ((y0, y1), (x0, x1)) in enumerate(_pixels(grid)):
            mask = np.zeros(x.shape[1:], np.float32)
            mask[:, y0:y1, x0:x1] = 1
            occluded = x[n] * (1 - mask) + base[n] * mask
            res = be.run(g, {g.inputs[0]: occluded[None]})[g.output].reshape(1, -1)
            res = res if logit else model.probabilities(res)
            out[n, :, p // grid.cols, p % grid.cols] = res[0, list(targets)]
    return out


@pytest.mark.parametrize("how", [Naive(4), Incremental(3, 5), Incremental(64)],
                         ids=["naive", "incremental-blocks", "incremental"])
@pytest.mark.parametrize("score", ["logit", "probability"])
def test_scan_is_captums_formula(how, score):
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 9, 11)).astype(np.float32)
    baselines = rng.standard_normal((2, 2, 9, 11)).astype(np.float32)  # one per input
    grid = Grid(9, 11, (4, 3), (3, 2), "cut")
    spec = ScanSpec(x, grid, (4, 0, 2), baselines, score)
    got = scan(spec, how, Runtime(model, get_backend("numpy")))
    want = captum_scores(model, x, baselines, grid, (4, 0, 2), score == "logit")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_scores_record_and_counters():
    model, stats = _model(), {}
    x = np.zeros((2, 2, 9, 11), np.float32)
    spec = ScanSpec(x, Grid(9, 11, 3, 2), 1, 0.5)
    values = scan(spec, Incremental(4, 8), Runtime(model, get_backend("numpy"), stats=stats))
    assert Scores(spec, values).values.shape == (2, 1, 4, 5)
    assert stats["rows"] == 2 * 20 and stats["batches"] == 2 * 5
    assert stats["blocks"] == 2 * math.ceil(20 / 8) and 0 < stats["in_flight"] <= 4
    with pytest.raises(KryptonError, match=r"scores of shape \(1, 1, 4, 5\)"):
        Scores(spec, values[:1])


# -- errors ----------------------------------------------------------------------------------------


def _spec(**kw) -> ScanSpec:
    args = dict(inputs=np.zeros((1, 2, 9, 11), np.float32), grid=Grid(9, 11, 3, 2),
                targets=(1,)) | kw
    return ScanSpec(**args)


@pytest.mark.parametrize("kw, message", [
    (dict(inputs=np.zeros((2, 9, 11))), "must be N x C x H x W"),
    (dict(grid=Grid(9, 10, 3, 2)), "a Grid over the inputs' 9 x 11 pixels"),
    (dict(baselines=np.zeros((3, 9, 11))), r"baselines of shape \(3, 9, 11\) do not broadcast"),
    (dict(baselines=np.zeros((2, 2, 9, 11))), r"baselines of shape \(2, 2, 9, 11\)"),
    (dict(targets=()), "targets must be one or more class indices"),
    (dict(targets=(1, -1)), "targets must be"),
    (dict(targets=(True,)), "targets must be"),
    (dict(score="softmax"), "score must be one of probability, logit"),
])
def test_spec_errors(kw, message):
    with pytest.raises(KryptonError, match=message):
        _spec(**kw)


def test_baselines_broadcast():
    for b in (0.5, np.zeros((2, 1, 1)), np.zeros((1, 1, 11)), np.zeros((1, 2, 9, 11))):
        assert _spec(baselines=b).baseline(0).shape == (2, 9, 11)


@pytest.mark.parametrize("how, message", [
    (Naive(2), None),
    (DrillDown(Grid(9, 11, 2, 4), 0.5, Naive(2)), "must differ from the scan's grid"),
    ("naive", "a scan runs Naive, Incremental or DrillDown"),
])
def test_scan_errors(how, message):
    rt = Runtime(_model(), get_backend("numpy"))
    with pytest.raises(KryptonError, match="target 5 is out of range: the model has 5 outputs"):
        scan(_spec(targets=(0, 5)), Naive(2), rt)
    with pytest.raises(KryptonError, match="the model takes 2 x 9 x 11 inputs"):
        scan(ScanSpec(np.zeros((1, 2, 8, 11)), Grid(8, 11, 3, 2), 0), Naive(2), rt)
    if message:
        with pytest.raises(KryptonError, match=message):
            scan(_spec(), how, rt)


@pytest.mark.parametrize("make, message", [
    (lambda: Naive(0), "the batch must be a positive integer"),
    (lambda: Incremental(2, 0), "the block must be a positive integer"),
    (lambda: Incremental(2, tau=1.5), r"tau must be in \(0, 1\]"),
    (lambda: DrillDown(Grid(9, 11, 3, 4), 1.0, Naive(2)), r"ratio must be in \(0, 1\)"),
    (lambda: DrillDown((9, 11), 0.5, Naive(2)), "the coarse grid must be a Grid"),
    (lambda: DrillDown(Grid(9, 11, 3, 4), 0.5, "naive"), "a drill-down stage is Naive"),
])
def test_decision_errors(make, message):
    with pytest.raises(KryptonError, match=message):
        make()


# -- tuning, given a way to compute heatmaps -------------------------------------------------------


def test_tuning_measures_every_tau_against_the_exact_map():
    class Ref:
        entry, input_shape = "m", (3, 64, 64)

    calls = []

    def occlude(image, tau, drill):
        calls.append((image, tau, drill))
        exact = np.linspace(0, 1, 49, dtype=np.float32).reshape(7, 7)
        return exact if tau is None else exact[::-1]

    t = tune(Ref(), ["a.png", "b.png"], occlude, patch=16, stride=8)
    d = t.table.to_pydict()
    assert (t.model, t.patch, t.stride) == ("m", 16, 8)
    assert len(d["tau"]) == 2 * len(TAUS) * 2  # per image, tau and drill-down setting
    assert [c for c in calls if c[0] == "a.png"][0] == ("a.png", None, False)  # exact first
    assert ("a.png", 1.0, False) not in calls  # tau 1, one stage: the exact scan itself
    exact_rows = [s for s, tau, dd in zip(d["ssim"], d["tau"], d["drilldown"])
                  if tau == 1 and not dd]
    assert exact_rows == [1.0, 1.0] and min(d["ssim"]) < 0.5
    with pytest.raises(KryptonError, match="at least one image"):
        tune(Ref(), [], occlude)


# -- drill-down's stages ---------------------------------------------------------------------------


def test_drill_down_recomputes_the_union_of_each_targets_lowest_estimates():
    from kryptondb.approx import drilldown as D
    from kryptondb.obe.drilldown import drill_down

    grid = Grid(30, 30, 4, 2)
    how = DrillDown(grid.with_strides(6), 0.2, Naive(1))
    rng = np.random.default_rng(1)
    truth = rng.random((grid.count, 2)).astype(np.float32)  # two targets
    index = {tuple(c): i for i, c in enumerate(grid.corners().tolist())}

    def stage(corners, label):
        return truth[[index[tuple(c)] for c in corners.tolist()]]

    stats: dict = {}
    out = drill_down(how, grid, stage, stats)
    fine, coarse = grid.corners(), how.coarse
    estimates = [D.upsample(stage(coarse.corners(), "")[:, k].reshape(coarse.shape), 6, fine)
                 for k in range(2)]
    picked = set(D.select(estimates[0], 0.2)) | set(D.select(estimates[1], 0.2))
    assert len(picked) > len(D.select(estimates[0], 0.2))  # the two targets pick differently
    for i in range(grid.count):
        want = truth[i] if i in picked else [estimates[0][i], estimates[1][i]]
        np.testing.assert_array_equal(out[i], want)
    assert stats == {"stage1": coarse.count, "stage2": len(picked)}
