"""The classifier tail (kryptondb/ivm/tail.py): a suffix that ends in layers with large weights
is split at the one tensor before them; the plan's output is the same whether the tail runs per
chunk or over many chunks' positions at once, and the occlusion scan that runs it that way
equals the naive scan on random CNNs (every weighted layer counted as large)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from test_obe_properties import SETTINGS, TOLERANCE, scans

from kryptondb.graph.builder import Builder
from kryptondb.graph.ir import Graph
from kryptondb.ivm import tail as T
from kryptondb.ivm.counters import TAIL
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.obe.scan import scan
from kryptondb.obe.strategy import Incremental, Naive, Runtime
from kryptondb.runtime.backends import get_backend


def _vgg_like() -> Graph:
    """Convolutions, then fully connected layers on the flattened map (VGG's shape)."""
    b = Builder("vgg-like", (3, 16, 16), seed=3, bias_std=0.1)
    x = b.pool(b.act(b.conv("input", "c1", 6, 3, pad=1, bias=True), "relu", "c1.relu"), "max",
               2, 2)
    x = b.act(b.conv(x, "c2", 8, 3, pad=1, bias=True), "relu", "c2.relu")
    x = b.act(b.linear(b.flatten(x), "fc1", 32), "relu", "fc1.relu")
    return b.build(b.softmax(b.linear(x, "fc2", 10)))


def _large(graph: Graph, name: str) -> int:
    """A TAIL_WEIGHTS under which ``name``'s weights count as large."""
    return sum(graph.weights[p].nbytes for p in graph[name].params) - 1


def _plan(g: Graph, views, corners=((2, 3), (0, 0), (9, 8), (5, 12))) -> IncrementalPlan:
    return IncrementalPlan(g, np.array(corners), 4, views)


def test_the_tail_starts_at_the_first_large_layer_and_reads_one_tensor():
    g = _vgg_like()
    views = base_views(g, np.zeros(g.input_shape, np.float32), get_backend("numpy"))
    assert _plan(g, views).tail is None  # small weights: the suffix runs whole
    with mock.patch.object(T, "TAIL_WEIGHTS", _large(g, "fc1")):
        plan = _plan(g, views)
    assert plan.out == "flatten"
    assert [n.name for n in plan.tail.nodes] == ["flatten", "fc1", "fc1.relu", "fc2", "softmax"]
    assert plan.tail.inputs == ("flatten",) and plan.suffix.outputs == ("flatten",)


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_the_tail_over_many_chunks_equals_the_plan_run_per_chunk(backend):
    g, be = _vgg_like(), get_backend(backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(g.input_shape).astype(np.float32)
    views = base_views(g, x, be)
    whole = _plan(g, views)
    with mock.patch.object(T, "TAIL_WEIGHTS", _large(g, "fc1")):
        split = _plan(g, views)
    patch = rng.standard_normal((4, 3, 4, 4)).astype(np.float32)
    want = whole.run(np.arange(4), patch, be, {})
    stats: dict = {}
    parts = [split.run_to_tail(np.arange(a, b), patch[a:b], be, stats) for a, b in ((0, 1), (1, 4))]
    assert parts[0].shape == (1, *g["flatten"].shape)
    got = split.run_tail(np.concatenate(parts), be, stats)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.run(np.arange(4), patch, be, {}), want, rtol=1e-5, atol=1e-6)
    assert stats["layers"][TAIL][:2] == [1, 4]  # one call for the four positions
    full = be.run(g, {"input": _occluded(x, patch, split)})[g.output]
    np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-6)


def _occluded(x: np.ndarray, patch: np.ndarray, plan: IncrementalPlan) -> np.ndarray:
    r = plan.regions["input"]
    out = np.repeat(x[None], len(patch), axis=0)
    for k, (y, xx) in enumerate(zip(r.y, r.x)):
        out[k, :, y:y + 4, xx:xx + 4] = patch[k]
    return out


def test_no_tail_where_it_would_hold_a_view_or_leave_an_output_behind():
    g = _vgg_like()
    with mock.patch.object(T, "TAIL_WEIGHTS", _large(g, "c2")):  # a view's weights are large
        assert T.tail_cut(g, ("c2", "c2.relu", "flatten", "fc1", "fc1.relu", "fc2", "softmax"),
                          {"c2": None, "c2.relu": None}) is None
    rest = ("flatten", "fc1", "fc1.relu", "fc2", "softmax")
    two = Graph.build(g.name, g.nodes, ("softmax", "flatten"), g.weights)
    with mock.patch.object(T, "TAIL_WEIGHTS", _large(g, "fc2")):
        assert T.tail_cut(g, rest, {}) == ("flatten", rest[1:])
        assert T.tail_cut(two, rest, {}) is None  # the flattened map is an output too
        assert T.tail_cut(g, rest[1:], {}) is None  # the head keeps a layer


@SETTINGS
@given(scans())
def test_a_scan_with_tails_equals_the_naive_scan(log_error, case):
    """Every weighted layer counted as large: the scan runs a tail wherever a suffix has a
    weighted layer after a single-tensor cut (about one random CNN in eight here; the test
    below has one for certain), collected over chunks and tail calls of 3."""
    model, spec, batch, block = case
    be = get_backend("numpy")
    naive = scan(spec, Naive(batch), Runtime(model, be))
    stats: dict = {}
    with mock.patch.object(T, "TAIL_WEIGHTS", 0), \
            mock.patch("kryptondb.obe.incremental.tail_batch", lambda batch: 3):
        got = scan(spec, Incremental(batch, block), Runtime(model, be, stats=stats))
    assert log_error("obe incremental with tails", got, naive) <= TOLERANCE
    tail = stats.get("layers", {}).get(TAIL)
    assert tail is None or tail[1] == len(spec) * spec.grid.count  # every position, once


@pytest.mark.parametrize("batch,block", [(4, None), (5, 7), (64, None)])
def test_the_scan_of_a_vgg_like_network_runs_its_tail_and_equals_the_naive_scan(
        log_error, batch, block):
    """Tail calls of 3 positions mid-block, the rest split over the workers at its end."""
    from kryptondb.model.model import Model
    from kryptondb.obe.grid import Grid
    from kryptondb.obe.spec import ScanSpec

    g = _vgg_like()
    x = np.random.default_rng(1).standard_normal((1, *g.input_shape)).astype(np.float32)
    fill = np.zeros((3, 1, 1), np.float32)
    spec = ScanSpec(x, Grid(16, 16, (4, 4), (2, 2), "fit"), [3], fill, "probability")
    model, be = Model("vgg-like", g, None, "seeded"), get_backend("onnxruntime")
    naive = scan(spec, Naive(batch), Runtime(model, be))
    stats: dict = {}
    with mock.patch.object(T, "TAIL_WEIGHTS", _large(g, "fc1")), \
            mock.patch("kryptondb.obe.incremental.tail_batch", lambda batch: 3):
        got = scan(spec, Incremental(batch, block), Runtime(model, be, stats=stats))
    assert log_error("obe incremental, vgg-like tail", got, naive) <= TOLERANCE
    calls, positions = stats["layers"][TAIL][:2]
    assert positions == spec.grid.count and calls >= spec.grid.count // 3  # 3 per call at most
