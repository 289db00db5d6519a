"""Contexts gathered channels-last (ivm.gather.ChannelsLast) are the channels-first contexts
transposed, at borders, with new values written in, and with several boxes per owner; graph
inputs fed channels-last run the same on every backend."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryptondb.errors import ShapeError
from kryptondb.graph.builder import Builder
from kryptondb.graph.ir import Graph
from kryptondb.graph.ops import input_node
from kryptondb.ivm.gather import (ChannelsLast, ChannelsLastViews, NewValues, PaddedView, gather,
                                  margins)
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.obe.occlusion import Grid, occluded_batch
from kryptondb.runtime.backends import get_backend
from kryptondb.runtime.base import NHWC


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(3, 9), st.integers(1, 6), st.integers(1, 4),
       st.booleans(), st.integers(0, 2 ** 16))
def test_channels_last_contexts_are_the_contexts_transposed(c, side, r, n, owned, seed):
    rng = np.random.default_rng(seed)
    view = rng.standard_normal((c, side, side)).astype(np.float32)
    b = 5
    ys, xs = rng.integers(-r, side, b), rng.integers(-r, side, b)
    vals = rng.standard_normal((b, c, n, n)).astype(np.float32)
    new = NewValues(vals, ys + rng.integers(-n, r + 1, b), xs + rng.integers(-n, r + 1, b),
                    rng.integers(0, 2, b) if owned else None)
    margin = margins(view.shape, ys, xs, r, r)
    first = gather(PaddedView(view, margin, -1.5), ys, xs, r, r, new)
    hwc = np.ascontiguousarray(view.transpose(1, 2, 0))
    last = gather(ChannelsLast(view, margin, -1.5, lambda: hwc), ys, xs, r, r, new)
    assert last.shape == (b, r, r, c)
    np.testing.assert_array_equal(last.transpose(0, 3, 1, 2), first)


def _conv_graph(channels_last: bool) -> tuple[Graph, Graph]:
    b = Builder("ref", (3, 7, 7), seed=4, bias_std=0.5)
    ref = b.build(b.act(b.conv("input", "c", 4, 3, bias=True), "relu"))
    nodes = [input_node("x", (3, 7, 7), channels_last)]
    nodes += [n.__class__(n.name, n.op, ("x",) if n.inputs == ("input",) else n.inputs,
                          n.params, n.attrs) for n in ref.nodes if n.name != "input"]
    return ref, Graph.build("hwc", nodes, ref.output, ref.weights)


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_a_channels_last_input_computes_what_the_channels_first_one_does(backend):
    ref, g = _conv_graph(True)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 7)).astype(np.float32)
    be = get_backend(backend)
    want = be.run(ref, {"input": x})[ref.output]
    got = be.run(g, {"x": np.ascontiguousarray(x.transpose(0, 2, 3, 1))})[g.output]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match=r"must be N x 7 x 7 x 3, got 2 x 3 x 7 x 7"):
        be.run(g, {"x": x})


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_an_output_asked_for_channels_last_is_the_output_transposed(backend):
    ref, _ = _conv_graph(False)
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 7)).astype(np.float32)
    out = get_backend(backend).run(ref, {"input": x}, [ref.output, ref.output + NHWC])
    assert out[ref.output + NHWC].shape == (2, 5, 5, 4)
    np.testing.assert_array_equal(out[ref.output + NHWC], out[ref.output].transpose(0, 2, 3, 1))


@pytest.mark.parametrize("suffix", ["", NHWC], ids=["names", "names-ending-in-nhwc"])
def test_steps_whose_readers_all_gather_channels_last_hand_their_values_on_so(suffix):
    """c1 is read by a 3x3 convolution only (channels-last contexts): its values come back
    channels-last; c2 feeds a 1x1 convolution the values as they are, and c3 is the frontier:
    both stay channels-first; the heatmap is the full inference's either way. A model's own
    names may end in the suffix that asks for a value channels-last (an imported file names
    them): they are still that model's tensors, as they are."""
    b = Builder("layouts", (3, 16, 16), seed=3, bias_std=0.5)
    x = b.act(b.conv("input", "c1" + suffix, 8, 3, pad=1, bias=True), "relu", "r1" + suffix)
    x = b.act(b.conv(x, "c2" + suffix, 8, 3, pad=1, bias=True), "relu", "r2" + suffix)
    x = b.act(b.conv(x, "c3" + suffix, 6, 1, bias=True), "relu", "r3" + suffix)
    g = b.build(b.linear(b.flatten(b.global_pool(x)), "fc", 5))
    rng = np.random.default_rng(2)
    img = rng.standard_normal(g.input_shape).astype(np.float32)
    fill = np.zeros(g.input_shape, np.float32)
    corners = Grid(16, 16, 4, 3).corners()
    be = get_backend("onnxruntime")
    plan = IncrementalPlan(g, corners, 4, ChannelsLastViews(base_views(g, img, be)))
    assert [s.chain[0] for s in plan.steps][:2] == ["c1" + suffix, "c2" + suffix]
    assert [s.out_last for s in plan.steps] == [True] + [False] * (len(plan.steps) - 1)
    pv = np.stack([fill[:, y:y + 4, c:c + 4] for y, c in corners])
    out = plan.run(np.arange(len(corners)), pv, be, {})
    batch = {g.inputs[0]: occluded_batch(img, fill, corners, 4)}
    want = be.run(g, batch)[g.output]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    for backend in (be, get_backend("numpy")):  # the model's r2, and r2 asked channels-last
        got = backend.run(g, batch, ["r2" + suffix, "r2" + suffix + NHWC])
        assert got["r2" + suffix].shape == (len(corners), 8, 16, 16)
        np.testing.assert_array_equal(got["r2" + suffix + NHWC],
                                      got["r2" + suffix].transpose(0, 2, 3, 1))
