"""Sibling steps (ivm/siblings.py): maintained layers that read one context run as one backend
call, and compute what they compute as separate steps, on every host backend."""

import numpy as np
import pytest

from kryptondb.graph.builder import Builder
from kryptondb.graph.ir import Graph
from kryptondb.ivm.gather import ChannelsLastViews
from kryptondb.ivm.frontier import shared_context
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.ivm.layer_plan import layer_plan
from kryptondb.ivm.siblings import Siblings
from kryptondb.obe.occlusion import Grid, occluded_batch
from kryptondb.runtime.backends import get_backend


def _inception(pad: int) -> Graph:
    """A stem, a module of three 1x1 convolutions on one input (one feeds a 3x3), and a
    reduction whose 3x3 convolution and max pool read one 3x3-stride-2 context (padded by
    ``pad``: the convolution pads with 0, the pool with -inf)."""
    b = Builder("siblings", (3, 20, 20), seed=5, bias_std=0.5)
    x = b.act(b.conv("input", "stem", 8, 3, pad=1, bias=True), "relu", "stem.relu")
    one = b.act(b.conv(x, "a.1x1", 4, 1, bias=True), "relu", "a.relu")
    two = b.act(b.conv(x, "b.1x1", 6, 1, bias=True), "relu", "b.relu")
    two = b.act(b.conv(two, "b.3x3", 4, 3, pad=1, bias=True), "relu", "b3.relu")
    three = b.conv(x, "c.1x1", 3, 1, bias=True)
    x = b.concat([one, two, three], "cat")
    red = b.act(b.conv(x, "r.3x3", 6, 3, stride=2, pad=pad, bias=True), "relu", "r.relu")
    x = b.concat([red, b.pool(x, "max", 3, 2, pad=pad, name="r.pool")], "cat2")
    return b.build(b.linear(b.flatten(b.global_pool(x)), "fc", 5))


def _plan(g: Graph, backend: str, corners, patch: int, img) -> IncrementalPlan:
    be = get_backend(backend)
    views = base_views(g, img, be)
    return IncrementalPlan(g, corners, patch,
                           ChannelsLastViews(views) if be.channels_last else views)


def _groups(plan) -> list[list[str]]:
    return [[m.head.name for m in s.members] for s in plan.schedule if isinstance(s, Siblings)]


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
@pytest.mark.parametrize("pad", [0, 1])
def test_siblings_compute_what_full_inference_does(backend, pad):
    g = _inception(pad)
    rng = np.random.default_rng(pad)
    img = rng.standard_normal(g.input_shape).astype(np.float32)
    fill = np.zeros(g.input_shape, np.float32)
    corners = Grid(20, 20, 5, 3).corners()
    plan = _plan(g, backend, corners, 5, img)
    groups = _groups(plan)
    assert ["a.1x1", "b.1x1", "c.1x1"] in groups
    # unpadded, both read the same context; padded, the pad values differ: never one call
    assert (["r.3x3", "r.pool"] in groups) == (pad == 0)
    stats: dict = {}
    pv = np.stack([fill[:, y:y + 5, c:c + 5] for y, c in corners])
    out = plan.run(np.arange(len(corners)), pv, get_backend(backend), stats)
    be = get_backend(backend)
    want = be.run(g, {g.inputs[0]: occluded_batch(img, fill, corners, 5)})[g.output]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    # one call per batch, counted under the first member; EXPLAIN shows one segment
    assert "a.relu" in stats["layers"] and not {"b.relu", "c.1x1"} & set(stats["layers"])
    rows = {r.name: r.segment for r in layer_plan(g, (5, 5), corners=corners).rows}
    assert rows["a.1x1"] == rows["b.1x1"] == rows["c.1x1"] != rows["b.3x3"]


def test_siblings_with_several_boxes_per_owner_match_separate_steps():
    """Video frames: several changed boxes of one input gather each other's new values; a
    group does it once for all its members, as each separate step did."""
    g = _inception(0)
    rng = np.random.default_rng(7)
    img = rng.standard_normal(g.input_shape).astype(np.float32)
    corners = np.array([[0, 0], [2, 3], [9, 9], [12, 4], [15, 15], [6, 13]])
    values = rng.standard_normal((len(corners), 3, 5, 5)).astype(np.float32)
    owners = np.array([0, 0, 1, 1, 1, 2])
    be = get_backend("onnxruntime")
    plan = _plan(g, "onnxruntime", corners, 5, img)
    assert _groups(plan)
    got = plan.run(np.arange(len(corners)), values, be, {}, owners)
    plan.schedule = list(plan.steps)  # each step alone
    want = plan.run(np.arange(len(corners)), values, be, {}, owners)
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_plans_of_other_patch_sizes_on_one_model_get_their_own_sibling_segments():
    """Segments are cached per model: a plan whose contexts are of another size (another
    patch, a video's other boxes) must not run the first plan's segment."""
    g = _inception(0)
    img = np.random.default_rng(3).standard_normal(g.input_shape).astype(np.float32)
    fill = np.zeros(g.input_shape, np.float32)
    be = get_backend("onnxruntime")
    for patch in (5, 3, 5):
        corners = Grid(20, 20, patch, 4).corners()
        plan = _plan(g, "onnxruntime", corners, patch, img)
        assert _groups(plan)
        pv = np.stack([fill[:, y:y + patch, c:c + patch] for y, c in corners])
        out = plan.run(np.arange(len(corners)), pv, be, {})
        want = be.run(g, {g.inputs[0]: occluded_batch(img, fill, corners, patch)})[g.output]
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pad", [0, 1])
def test_whether_steps_share_a_call_does_not_depend_on_the_queries(pad):
    """Decided by the heads: a plan over border positions (contexts that leave the map), one
    over interior ones and EXPLAIN's centre patch group alike; padded, a convolution (pad 0)
    and a max pool (pad -inf) never share."""
    g = _inception(pad)
    img = np.random.default_rng(4).standard_normal(g.input_shape).astype(np.float32)
    border, inner = Grid(20, 20, 5, 3).corners(), np.array([[7, 7], [8, 6]])
    assert _groups(_plan(g, "onnxruntime", border, 5, img)) == \
        _groups(_plan(g, "onnxruntime", inner, 5, img))
    seg = {r.name: r.segment for r in layer_plan(g, (5, 5), corners=border).rows}
    assert (seg["r.3x3"] == seg["r.pool"]) == (pad == 0)


def test_an_average_pool_with_a_divisor_map_prices_as_no_sibling():
    """Excluding padding, a pool's border outputs divide by fewer: its step reads a divisor
    map besides its context (a side map), so it never shares, and the cost model knows."""
    b = Builder("pools", (3, 12, 12), seed=2)
    x = b.conv("input", "c", 4, 3, pad=1)
    y = b.pool(x, "avg", 3, 1, pad=1, count_include_pad=False, name="p")
    z = b.conv(x, "d", 4, 3, pad=1)
    g = b.build(b.linear(b.flatten(b.global_pool(b.concat([y, z], "cat"))), "fc", 3))
    assert shared_context(g, [g["p"]]) is None
    assert shared_context(g, [g["d"]]) is not None
