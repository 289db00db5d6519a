"""Winograd's F(2x2, 3x3) and F(4x4, 3x3) for large 3x3 convolutions in incremental plans
(kryptondb/runtime/winograd.py): the layer equals the direct convolution for any context size,
batch and channels in either form; each form is a minimal filtering algorithm; the form follows
the contexts' size; a call allocates at most what the memory estimate counts; plans on
onnxruntime use it for eligible heads (with the nodes fused after
them: residual Adds, ReLU) and stay equal to full inference; the NumPy reference, a plan told
not to, or KRYPTONDB_WINOGRAD=0 never use it; the cost model prices it; a memory budget too
tight for its weights plans without them."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kryptondb
from kryptondb.graph.builder import Builder
from kryptondb.ivm import calibration as C
from kryptondb.ivm.frontier import chain_seconds, winograd_seconds
from kryptondb.ivm.regions import FixedRegion
from kryptondb.runtime import winograd
from kryptondb.runtime.backends import runs_winograd
from test_ivm_properties import _exact

TOLERANCE = 1e-5  # of the output's largest magnitude


def _direct(x_hwc: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 3x3 convolution with padding 0 in float64: (B, H, W, C) -> (B, Cout, H-2, W-2)."""
    win = np.lib.stride_tricks.sliding_window_view(x_hwc.astype(np.float64), (3, 3), axis=(1, 2))
    return np.einsum("bhwcij,ocij->bohw", win, w.astype(np.float64)) + b[None, :, None, None]


def _layer(cin: int, cout: int, seed: int = 0):
    b = Builder("one", (cin, 8, 8), seed=seed, bias_std=0.5)
    g = b.build(b.conv("input", "c", cout, 3, 1, 0, bias=True))
    return g["c"], g


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(1, 9), st.integers(3, 13), st.integers(3, 13), st.integers(1, 12),
       st.integers(1, 12), st.integers(0, 100), st.sampled_from([None, "F2", "F4"]))
def test_winograd_equals_the_direct_convolution(batch, h, w, cin, cout, seed, form):
    """Any context size (sides the tiles do not divide: the last tile row or column is
    computed and dropped), any batch (several calls of TILES tiles), any channels, in either
    form or the one chosen for the size."""
    node, g = _layer(cin, cout, seed)
    x = np.random.default_rng(seed).standard_normal((batch, h, w, cin)).astype(np.float32)
    ref = _direct(x, g.param(node, 0), g.param(node, 1))
    out = winograd.Winograd(node, g)(x, getattr(winograd, form) if form else None)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() <= TOLERANCE * np.abs(ref).max()


@pytest.mark.parametrize("f", [winograd.F2, winograd.F4], ids=["F2", "F4"])
def test_each_form_is_a_minimal_filtering_algorithm(f):
    """In one dimension, A^T [(G g) . (B^T d)] is the correlation of d (m + 2 values) with g
    (3): in float64, to rounding."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        g, d = rng.standard_normal(3), rng.standard_normal(f.n)
        ref = np.array([d[i:i + 3] @ g for i in range(f.m)])
        assert np.allclose(f.at @ ((f.g @ g) * (f.bt @ d)), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("h, w, m", [(9, 9, 4), (10, 10, 4), (13, 10, 4), (18, 17, 4),
                                     (11, 11, 2), (8, 8, 2), (6, 6, 2), (9, 8, 2), (16, 16, 2)])
def test_the_form_by_context_size(h, w, m):
    """F(4x4, 3x3) where its tiles cover both sides' outputs as tightly as F(2x2, 3x3)'s (4k - 1
    or 4k of them, from 7); its weights, 36 per channel pair, counted for such contexts only."""
    assert winograd.form(h, w).m == m
    node, g = _layer(3, 5)
    assert winograd.Winograd(node, g).weight_bytes(h, w) == 4 * (m + 2) ** 2 * 3 * 5
    assert winograd.form(h, w).tiles(h, w) == (-(-(h - 2) // m), -(-(w - 2) // m))


@pytest.mark.parametrize("side, per_context", [(6, 4), (12, 25), (9, 4)])
def test_winograd_splits_large_batches_into_calls_of_tiles(monkeypatch, side, per_context):
    """7 contexts, TILES 8: of 6x6 (4 tiles of 2x2), 2 per call; of 12x12 (25 of 2x2), one per
    call; of 9x9 (4 tiles of 4x4, 5 per call in this form), one per call."""
    node, g = _layer(4, 5)
    monkeypatch.setattr(winograd, "TILES", 8)
    sizes: list[int] = []
    session = winograd.session

    class Counted:
        def __init__(self, products, cin, cout):
            self.products = session(products, cin, cout)

        def run(self, outputs, feeds):
            sizes.append(feeds["v"].shape[1])
            return self.products.run(outputs, feeds)

    monkeypatch.setattr(winograd, "session", Counted)
    x = np.random.default_rng(1).standard_normal((7, side, side, 4)).astype(np.float32)
    ref = _direct(x, g.param(node, 0), g.param(node, 1))
    assert np.abs(winograd.Winograd(node, g)(x) - ref).max() <= TOLERANCE * np.abs(ref).max()
    per_call = {6: 2, 12: 1, 9: 1}[side]
    assert len(sizes) == -(-7 // per_call) and sum(sizes) == 7 * per_context
    assert winograd.call_tiles(winograd.form(side, side)) == (5 if side == 9 else 8)
    assert winograd.contexts_per_call(winograd.form(side, side), side, side) == per_call


@pytest.mark.parametrize("c, side, items", [(64, 9, 84), (64, 13, 20), (64, 6, 128),
                                             (32, 16, 9), (48, 11, 30)])
def test_scratch_bytes_bound_a_calls_allocations(c, side, items):
    """What a call allocates at its peak besides its output (tracemalloc: NumPy's buffers and
    the products onnxruntime returns), in either form, over several chunks, is at most what
    the memory estimate counts for it."""
    import tracemalloc

    node, g = _layer(c, c)
    wino = winograd.Winograd(node, g)
    x = np.random.default_rng(0).standard_normal((items, side, side, c)).astype(np.float32)
    wino(x)  # the weights and the session: not the call's
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y = wino(x)
        peak = tracemalloc.get_traced_memory()[1] - base - y.nbytes
    finally:
        tracemalloc.stop()
    assert 0.5 * wino.scratch_bytes(side, side) < peak <= wino.scratch_bytes(side, side)


@pytest.mark.parametrize("conv, ok", [
    (dict(k=3, s=1, d=1, groups=1, c=256), True),
    (dict(k=3, s=1, d=1, groups=1, c=128), False),  # too few channels to pay
    (dict(k=3, s=2, d=1, groups=1, c=256), False),
    (dict(k=3, s=1, d=2, groups=1, c=256), False),
    (dict(k=3, s=1, d=1, groups=2, c=256), False),
    (dict(k=1, s=1, d=1, groups=1, c=256), False),
    (dict(k=5, s=1, d=1, groups=1, c=256), False),
])
def test_eligible_layers(conv, ok):
    b = Builder("e", (conv["c"], 20, 20), seed=0)
    g = b.build(b.conv("input", "c", conv["c"], conv["k"], conv["s"], 0, conv["groups"],
                       conv["d"], bias=True))
    assert winograd.eligible(g["c"], g) is ok
    assert winograd.eligible(g["c"], g, min_channels=1) is (ok or conv["c"] == 128)


def _residual_net() -> "kryptondb.graph.ir.Graph":
    """3x3 convolutions alone, with ReLU, with a residual Add and ReLU fused after them, a
    strided one (not eligible), ending in logits."""
    b = Builder("wres", (3, 20, 20), seed=4, bias_std=0.5)
    x = b.act(b.conv("input", "stem", 6, 3, 1, 1, bias=True), "relu")
    y = b.act(b.conv_bn(x, "r.c1", "r.bn1", 6, 3, 1, 1), "relu")
    x = b.act(b.add(b.conv_bn(y, "r.c2", "r.bn2", 6, 3, 1, 1), x, "r.add"), "relu")
    x = b.act(b.conv(x, "down", 8, 3, 2, 1, bias=True), "relu")
    x = b.conv(x, "last", 8, 3, 1, 1, bias=True)
    return b.build(b.linear(b.flatten(b.global_pool(x)), "fc", 5))


class _Seen(list):
    """The layers' names called, and (``forms``) each call's form (its tiles' side)."""

    def __init__(self):
        super().__init__()
        self.forms: list[int] = []


@pytest.fixture
def calls(monkeypatch):
    """Every Winograd layer's calls, counted; eligible from one channel (the small graphs
    here), on nominal FLOP counts (every layer maintained)."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setenv("KRYPTONDB_CALIBRATION", C.NOMINAL)
    seen = _Seen()
    call, tiles = winograd.Winograd.__call__, winograd.input_tiles

    def counted(self, x, f=None):
        seen.append(self.name)
        return call(self, x, f)

    def formed(x, f=winograd.F2):  # the form the call ran (its first chunk's)
        if len(seen.forms) < len(seen):
            seen.forms.append(f.m)
        return tiles(x, f)

    monkeypatch.setattr(winograd.Winograd, "__call__", counted)
    monkeypatch.setattr(winograd, "input_tiles", formed)
    return seen


def test_plans_on_onnxruntime_run_eligible_heads_by_winograd_and_stay_exact(calls):
    """Heads alone, with ReLU, with a residual Add and ReLU fused after them (``rest``)."""
    err, plan = _exact(_residual_net(), 5, 3, "onnxruntime")
    wino = {s.head.name: s for s in plan.steps if s.winograd is not None}
    heads = {s.head.name for s in plan.steps}
    assert set(wino) == heads & {"stem", "r.c1", "r.c2", "last"}  # not the strided one
    assert {"stem", "r.c1", "r.c2", "down"} <= heads
    assert wino["r.c2"].rest is not None and "r.add" in wino["r.c2"].chain
    assert set(calls) == set(wino)
    assert err <= TOLERANCE


def test_plans_run_f4_where_the_contexts_fit_it(calls):
    """Each step runs the form for its contexts' size: on an 11x11 input with a 3x3 window,
    the stem's 7x7 contexts (5x5 outputs) by F(2x2, 3x3), the next head's 9x9 (7x7 outputs)
    by F(4x4, 3x3), the last one's 11x11 (9x9) by F(2x2, 3x3) again; exact."""
    b = Builder("w4", (3, 11, 11), seed=5, bias_std=0.5)
    x = b.act(b.conv("input", "stem", 6, 3, 1, 1, bias=True), "relu")
    x = b.act(b.conv(x, "c1", 6, 3, 1, 1, bias=True), "relu")
    x = b.act(b.add(b.conv(x, "c2", 6, 3, 1, 1, bias=True), x, "add"), "relu")
    err, plan = _exact(b.build(b.linear(b.flatten(b.global_pool(x)), "fc", 5)), 3, 2,
                       "onnxruntime")
    assert err <= TOLERANCE
    assert [s.contexts[0][:2] for s in plan.steps] == [(7, 7), (9, 9), (11, 11)]
    assert set(zip(calls, calls.forms)) == {("stem", 2), ("c1", 4), ("c2", 2)}


@pytest.mark.parametrize("how", ["numpy backend", "plan off", "environment"])
def test_winograd_off(calls, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("KRYPTONDB_WINOGRAD", "0")
    err, plan = _exact(_residual_net(), 5, 3,
                       "numpy" if how == "numpy backend" else "onnxruntime", how != "plan off")
    assert calls == [] and err <= TOLERANCE
    assert not plan.winograd and all(s.winograd is None for s in plan.steps)
    assert "r.c2" in {s.head.name for s in plan.steps}  # an eligible head, maintained
    assert runs_winograd("onnxruntime") is (how != "environment")
    assert not runs_winograd("numpy") and not runs_winograd("cupy")
    assert runs_winograd(None) is runs_winograd("ORT") is runs_winograd("onnxruntime")
    assert not runs_winograd("onnxruntime", allowed=False)  # a plan's winograd=False


def test_the_cost_model_prices_winograd_heads_at_their_rate():
    """A plan that runs Winograd, on a calibration that measured it: the head on its region
    grown to whole 2x2 tiles (5x6 -> 6x6) at the ``winograd`` rate, and a second call for the
    ReLU after it. Otherwise (no Winograd, or a calibration without its rate: read as the
    direct one) the direct form on the region, one call."""
    b = Builder("one", (256, 8, 8), seed=0)
    g = b.build(b.act(b.conv("input", "c", 256, 3, 1, 0, bias=True), "relu", "r"))
    chain, flops = (g["c"], g["r"]), 2 * 256 * 256 * 9 * 36
    rates = {k: ((1, 1e11 if k == "conv" else 3e11),) for k in C.KINDS}
    direct = C.Calibration(rates, 1e-3, float("inf"), 0.0, float("inf"), batch=1)
    fast = C.Calibration({**rates, "winograd": ((1, 2e11),)}, 1e-3, float("inf"), 0.0,
                         float("inf"), batch=1)
    r = FixedRegion(5, 6, np.zeros(1, int), np.zeros(1, int))
    on = {name: chain_seconds(cal, g, chain, {"c": r}, winograd=True)
          for name, cal in (("direct", direct), ("fast", fast))}
    assert direct.rate("winograd", 30) == direct.rate("conv", 30)  # a file without the kind
    assert on["direct"] == pytest.approx(flops * 30 / 36 / 1e11 + 1e-3)
    assert on["fast"] == pytest.approx(flops / 2e11 + 2e-3)
    assert chain_seconds(fast, g, chain, {"c": r}) == pytest.approx(on["direct"])


def test_a_tight_memory_budget_plans_without_winograd():
    """VGG16 at MEMORY 128 MB fits incremental only without Winograd's 100 MB of weights; at
    the default budget the plan keeps them."""
    con = kryptondb.connect()
    con.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS cat")
    q = "EXPLAIN PLAN FOR EXPLAIN OCCLUSION OF IMAGE cat USING MODEL vgg16 PATCH 16 STRIDE 8"
    tight = str(con.execute(q + " MEMORY 128 MB"))
    assert "IncrementalOcclusionScan" in tight and "winograd=False" in tight
    roomy = str(con.execute(q))
    assert "winograd=False" not in roomy and "Conv(W)" in str(
        con.execute(q.replace("PLAN FOR", "PLAN VERBOSE FOR")))


def test_calibration_files_with_and_without_winograd_rates():
    """A file without ``winograd512`` reads it as ``winograd``; without both, as ``conv`` (and
    plans price Winograd's layers as direct ones); with either, Winograd is priced; broken rows
    of either are errors naming the kind."""
    doc = C.default().to_json()
    assert {"winograd", "winograd512"} <= set(doc["rates"])

    def without(*kinds):
        return C.from_json(doc | {"rates": {k: v for k, v in doc["rates"].items()
                                            if k not in kinds}}, "old")
    one = without("winograd512")
    assert one.rate("winograd512", 49) == one.rate("winograd", 49) != one.rate("conv", 49)
    none = without("winograd", "winograd512")
    assert none.rate("winograd512", 49) == none.rate("winograd", 49) == none.rate("conv", 49)
    assert one.prices_winograd and without("winograd").prices_winograd
    assert not none.prices_winograd
    for kind in ("winograd", "winograd512"):
        for bad in ([], [[4, -1.0]], "fast"):
            with pytest.raises(C.CalibrationError,
                               match="winograd" if bad != "fast" else "not a calibration file"):
                C.from_json(doc | {"rates": doc["rates"] | {kind: bad}}, "bad")


def test_winograd_rates_by_channels():
    """Read log-log between the widths measured (256: 1e11, 512: 4e11), the nearest outside
    them; a 3x3 head of 384 channels (in 512, out 384) is priced at the rate between."""
    rates = {k: ((1, 5e10),) for k in C.KINDS}
    cal = C.Calibration({**rates, "winograd": ((1, 1e11),), "winograd512": ((1, 4e11),)},
                        0.0, float("inf"), 0.0, float("inf"), batch=1)
    assert cal.winograd_rate(36, 256) == pytest.approx(1e11)
    assert cal.winograd_rate(36, 362) == pytest.approx(2e11, rel=1e-3)  # 256 * sqrt(2)
    assert cal.winograd_rate(36, 1024) == cal.winograd_rate(36, 512) == pytest.approx(4e11)
    assert cal.winograd_rate(36, 128) == pytest.approx(1e11)
    b = Builder("wide", (512, 8, 8), seed=0)
    g = b.build(b.conv("input", "c", 384, 3, 1, 0, bias=True))
    r = FixedRegion(6, 6, np.zeros(1, int), np.zeros(1, int))
    flops = 2 * 512 * 384 * 9 * 36
    assert winograd_seconds(cal, g, g["c"], r) == pytest.approx(
        flops / cal.winograd_rate(36, 384))


def test_calibrate_measures_winograd_as_plans_call_it(monkeypatch):
    """Each Winograd width at its channels, on calls of at least TILES tiles (or a batch)."""
    from kryptondb.ivm import calibrate

    seen = []
    monkeypatch.setattr(calibrate, "_timed",
                        lambda backend, g, items: seen.append((g, items)) or 1.0)
    for kind, width in C.WINOGRAD_WIDTHS.items():
        seen.clear()
        calibrate.rates(None, kind, 0.0, sides=(3, 8, 40))
        assert [g.input_shape for g, _ in seen] == [(width, s + 2, s + 2) for s in (4, 8, 40)]
        assert [n for _, n in seen] == [min(calibrate.BATCH, -(-winograd.TILES // (s // 2) ** 2))
                                        for s in (4, 8, 40)]  # F(2x2, 3x3)'s tiles


def test_a_plan_without_winograd_reaches_the_executor(calls, tmp_path):
    """``winograd=False`` on the scan (what the memory rule writes): the executor's plans run
    every head directly; without it, the same scan runs eligible heads by Winograd; the
    heatmaps agree."""
    from test_memory_budget import _run_with
    from test_obe_naive import tiny_connection

    con = tiny_connection(tmp_path)
    q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 4 STRIDE 2 INCREMENTAL"
    on, _ = _run_with(con, q, batch=8)
    assert calls, "the tiny model has no 3x3 convolution the plan runs by Winograd"
    calls.clear()
    off, _ = _run_with(con, q, batch=8, winograd=False)
    assert calls == []
    np.testing.assert_allclose(on.probability, off.probability, atol=1e-6)


def test_calibrate_times_winograd_on_every_core_at_once():
    """The runs start together, one thread each (a plan's chunks run side by side); each runs
    once to warm up and once per rep."""
    from kryptondb.ivm import calibrate

    inside, together, calls, lock = [0], [], [], threading.Lock()

    def run():
        with lock:
            inside[0] += 1
            calls.append(threading.get_ident())
        deadline = time.monotonic() + 1.0  # the warm-ups run one after the other: alone
        while inside[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        together.append(inside[0] == 2)
        time.sleep(0.002)
        with lock:
            inside[0] -= 1

    assert calibrate._side_by_side([run, run], reps=3) > 0
    assert len(calls) == 2 * 4 and len(set(calls[2:])) == 2
    assert together == [False, False] + [True] * 6
