"""The graph IR: immutability, build-time checks, shape inference against hand-worked and
brute-force answers, segments of zoo models, and BatchNorm folding."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

import kryptondb
from kryptondb.runtime.backends import get_backend
from kryptondb.errors import ShapeError
from kryptondb.graph import builder as builder_module
from kryptondb.graph.builder import Builder
from kryptondb.graph.fold import fold_batchnorm
from kryptondb.graph.ir import Graph, Node, Op, input_node, make_node
from kryptondb.graph.shapes import window_out

# -- Node and Graph.build ----------------------------------------------------------------------


def test_node_is_frozen():
    node = make_node("r", Op.RELU, ["x"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.name = "other"
    assert dataclasses.replace(node, name="other").name == "other" and node.name == "r"


def test_node_needs_a_name_and_non_input_nodes_need_inputs():
    with pytest.raises(ValueError, match="name"):
        Node("", Op.RELU, ("x",))
    with pytest.raises(ValueError, match="no inputs"):
        Node("r", Op.RELU)


def test_with_attrs_keeps_attrs_sorted_and_hashable():
    node = make_node("p", Op.MAXPOOL, ["x"], stride=(2, 2), kernel=(3, 3))
    changed = node.with_attrs(kernel=(2, 2))
    assert changed.attrs == (("kernel", (2, 2)), ("stride", (2, 2)))
    assert hash(changed) != hash(node)


def test_build_rejects_a_node_reading_an_undefined_input():
    nodes = [input_node("x", (1, 4, 4)), make_node("r", Op.RELU, ["nowhere"])]
    with pytest.raises(ShapeError, match="'r' reads 'nowhere'"):
        Graph.build("g", nodes, "r", {})


def test_build_rejects_a_duplicate_name():
    nodes = [input_node("x", (1, 4, 4)), make_node("r", Op.RELU, ["x"]),
             make_node("r", Op.SIGMOID, ["x"])]
    with pytest.raises(ShapeError, match="duplicate node name 'r'"):
        Graph.build("g", nodes, "r", {})


def test_build_rejects_a_missing_weight_and_an_unknown_output():
    nodes = [input_node("x", (1, 4, 4)), make_node("m", Op.MUL, ["x"], ["k"])]
    with pytest.raises(ShapeError, match="weight 'k'"):
        Graph.build("g", nodes, "m", {})
    with pytest.raises(ShapeError, match="output 'y' is not a node"):
        Graph.build("g", nodes, "y", {"k": np.ones(1)})


def test_build_freezes_weights():
    g = Graph.build("g", [input_node("x", (1, 2, 2)), make_node("m", Op.MUL, ["x"], ["k"])],
                    "m", {"k": np.ones((1, 1, 1))})
    with pytest.raises(ValueError, match="read-only"):
        g.weights["k"][0] = 2.0


# -- shape inference ---------------------------------------------------------------------------


def _graph(shape, node, weights=None) -> Graph:
    return Graph.build("g", [input_node("x", shape), node], node.name, weights or {})


def test_conv_shape_with_asymmetric_pads_stride_and_dilation():
    w = {"w": np.zeros((5, 3, 3, 2)), "b": np.zeros(5)}
    conv = make_node("c", Op.CONV, ["x"], ["w", "b"], kernel=(3, 2), stride=(2, 1),
                     pads=(1, 0, 2, 3), dilation=(2, 3), groups=1)
    # H: 10 + 1 + 2 - (2 * 2 + 1) = 8 -> 8 // 2 + 1 = 5;  W: 12 + 0 + 3 - (3 * 1 + 1) = 11 -> 12
    assert _graph((3, 10, 12), conv, w)["c"].shape == (5, 5, 12)


def test_conv_shape_rejects_weights_that_do_not_fit_the_groups():
    w = {"w": np.zeros((4, 2, 3, 3)), "b": np.zeros(4)}
    conv = make_node("c", Op.CONV, ["x"], ["w", "b"], kernel=(3, 3), stride=(1, 1),
                     pads=(1, 1, 1, 1), groups=1)
    with pytest.raises(ShapeError, match="groups=1 does not fit 3 input channels"):
        _graph((3, 8, 8), conv, w)


@pytest.mark.parametrize("size, kernel, stride, pad, floor_out, ceil_out", [
    (112, 3, 2, 0, 55, 56),  # GoogLeNet's pools: ceil mode adds a partial last window
    (5, 2, 2, 1, 3, 3),      # ceil would give 4, but that window starts in the end padding
    (6, 3, 2, 0, 2, 3),
    (7, 3, 2, 1, 4, 4),      # exact fit: ceil changes nothing
])
def test_maxpool_ceil_mode_follows_the_pytorch_rule(size, kernel, stride, pad, floor_out,
                                                     ceil_out):
    for ceil, want in ((0, floor_out), (1, ceil_out)):
        pool = make_node("p", Op.MAXPOOL, ["x"], kernel=(kernel, kernel), stride=(stride, stride),
                         pads=(pad,) * 4, dilation=(1, 1), ceil_mode=ceil)
        assert _graph((2, size, size), pool)["p"].shape == (2, want, want), ceil


def _brute_window_count(size, kernel, stride, lo, hi, dilation, ceil) -> int:
    """Walk the window starts over the padded axis and count the windows taken.

    Floor mode takes windows that fit. Ceil mode also takes one overhanging window when the
    last fitting one left elements uncovered, and drops windows starting in the end padding.
    """
    length, span = size + lo + hi, dilation * (kernel - 1) + 1
    starts = [s for s in range(0, length, stride) if s + span <= length]
    if ceil and starts and starts[-1] + span < length:
        starts.append(starts[-1] + stride)
    if ceil:
        starts = [s for s in starts if s < size + lo]
    return len(starts)


def test_window_out_matches_brute_force_count_of_window_starts():
    for size, k, s, lo, hi, d, ceil in itertools.product(range(1, 11), range(1, 5), range(1, 4),
                                                         range(3), range(3), (1, 2), (0, 1)):
        if ceil and max(lo, hi) >= k:
            continue  # ceil mode is a pooling option, and pools need pads < kernel
        want = _brute_window_count(size, k, s, lo, hi, d, ceil)
        if want == 0:  # not even one window fits
            with pytest.raises(ShapeError):
                window_out(size, k, s, lo, hi, d, bool(ceil))
        else:
            assert window_out(size, k, s, lo, hi, d, bool(ceil)) == want, (size, k, s, lo, hi, d)


def test_window_larger_than_padded_input_is_refused_even_in_ceil_mode():
    # (onnxruntime's integer division emits one window for this MaxPool; we refuse it plainly)
    for ceil in (False, True):
        with pytest.raises(ShapeError, match="window of 3 .* does not fit input 2"):
            window_out(2, 3, 2, 0, 0, 1, ceil)


# -- Graph.segment -----------------------------------------------------------------------------

SEGMENTS = {  # (model, name prefix or exact names) -> a piece of a zoo graph
    "resnet18 residual tail": ("resnet18", ("layer2.0.conv2", "layer2.0.add", "layer2.0.relu")),
    "resnet18 layer3": ("resnet18", "layer3."),
    "resnet18 head": ("resnet18", ("avgpool", "flatten", "fc", "softmax")),
    "inception3 Mixed_5b": ("inception3", "Mixed_5b."),
}


def _segment_names(graph, spec) -> list[str]:
    if isinstance(spec, str):
        return [n.name for n in graph.nodes if n.name.startswith(spec)]
    return list(spec)


@pytest.mark.parametrize("label", SEGMENTS)
def test_segment_inputs_are_the_external_producers(label):
    model, spec = SEGMENTS[label]
    graph = kryptondb.load_model(model).graph
    names = _segment_names(graph, spec)
    seg = graph.segment(names)
    external = {i for n in names for i in graph[n].inputs if i not in names}
    assert set(seg.inputs) == external
    assert all(seg[i].shape == graph[i].shape for i in seg.inputs)
    assert {n.name for n in seg.nodes} == set(names) | external


@pytest.mark.parametrize("label", SEGMENTS)
@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_segment_computes_what_the_full_graph_computes(label, backend, log_error):
    model, spec = SEGMENTS[label]
    graph = kryptondb.load_model(model).graph
    seg = graph.segment(_segment_names(graph, spec))
    x = np.random.default_rng(0).standard_normal((2, *graph.input_shape)).astype(np.float32)
    full = get_backend("numpy").run(graph, {"input": x}, seg.inputs + seg.outputs)
    ours = get_backend(backend).run(seg, {i: full[i] for i in seg.inputs})
    for out in seg.outputs:
        err = log_error(f"segment {label} {backend}", ours[out], full[out])
        assert err <= 1e-4, (out, err)


# -- BatchNorm folding -------------------------------------------------------------------------


def _conv2d(x, w, pad):
    """Plain cross-correlation, stride 1, written out with a sliding window view."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", win, w)


def test_batchnorm_folding_preserves_results(monkeypatch):
    seen = []

    def spy(gamma, beta, mean, var, eps):  # the raw BN parameters the builder drew
        seen.append((gamma, beta, mean, var, eps))
        return original(gamma, beta, mean, var, eps)

    original = builder_module.bn_scale_shift
    monkeypatch.setattr(builder_module, "bn_scale_shift", spy)
    b = Builder("tiny", (3, 9, 9), seed=3, state=None)
    graph = b.build(b.conv_bn("input", "conv", "bn", 4, 3, 1, 1, eps=1e-3))
    assert [n.op for n in graph.nodes] == [Op.INPUT, Op.CONV, Op.RELU]  # the BN is gone

    (gamma, beta, mean, var, eps), = seen
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    y = _conv2d(x.astype(np.float64), b.weights["conv.weight"].astype(np.float64), 1)
    c = (-1, 1, 1)
    y = (y - mean.reshape(c)) / np.sqrt(var.reshape(c) + eps) * gamma.reshape(c) + beta.reshape(c)
    want = np.maximum(y, 0)
    for backend in ("numpy", "onnxruntime"):
        got = get_backend(backend).run(graph, {"input": x})[graph.output]
        assert np.abs(got - want).max() / np.abs(want).max() <= 1e-5, backend


def test_batchnorm_after_a_shared_conv_is_not_folded():
    w = {"w": np.ones((2, 2, 1, 1), np.float32), "b": np.zeros(2, np.float32),
         "s": np.full(2, 2.0, np.float32), "t": np.ones(2, np.float32)}
    nodes = [input_node("x", (2, 3, 3)),
             make_node("c", Op.CONV, ["x"], ["w", "b"], kernel=(1, 1), stride=(1, 1),
                       pads=(0, 0, 0, 0), groups=1),
             make_node("bn", Op.BATCHNORM, ["c"], ["s", "t"]),
             make_node("sum", Op.ADD, ["c", "bn"])]  # the conv's raw output is used too
    folded = fold_batchnorm(nodes, w)
    assert [n.op for n in folded] == [Op.INPUT, Op.CONV, Op.BATCHNORM, Op.ADD]
