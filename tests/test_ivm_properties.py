"""The central promise: incremental inference equals full inference, for random CNN DAGs with
what real graphs contain (convs with random kernel/stride/asymmetric pad/dilation/groups; max
and average pools with padding, ceil mode and either pad rule, followed by fused pointwise chains
with offsets; Inception-style concats of branches with different receptive fields; ResNet-D
shortcuts; residual Adds; Pads before pools; spatial constants; channel shuffles; LRN;
squeeze-excite; ConvNeXt blocks with LayerNorm over the channels and GELU; UNet decoder steps:
transposed convolutions with random kernel, stride, pads, output padding, dilation and groups,
Resize in every mode and coordinate rule by a scale or to a size, skip concats), random input
sizes, patch sizes, strides and fills, on both backends.

Biases are random (zero biases hide errors that an offset would show) and the graphs end in a
feature map or in logits, never a softmax (random weights saturate it, which hides errors)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kryptondb.runtime.backends import get_backend
from kryptondb.ivm.gather import ChannelsLastViews
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.graph.builder import Builder
from kryptondb.graph.resample import COORDS, MODES, NEAREST
from kryptondb.obe.occlusion import Grid, occluded_batch

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
EXACT = settings(SETTINGS, max_examples=150)  # the default run's examples for exactness
MANY = settings(SETTINGS, max_examples=500)  # under the slow marker
TOLERANCE = 1e-5  # of the output's largest magnitude


def _size(b, x):
    return b.shapes[x][1], b.shapes[x][2]


@st.composite
def cnns(draw):
    """A seeded random CNN built layer by layer, every layer valid for its input."""
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(9, 26)), draw(st.integers(9, 26))
    b = Builder("rand", (c, h, w), seed=draw(st.integers(0, 10_000)), bias_std=0.5)
    x = "input"
    for i in range(draw(st.integers(1, 6))):
        x = LAYERS[draw(st.sampled_from(sorted(LAYERS)))](draw, b, x, f"l{i}")
    if draw(st.booleans()):  # logits
        x = b.linear(b.flatten(b.global_pool(x)), "fc", draw(st.integers(2, 7)))
    return b.build(x)


def _conv(draw, b, x, name):
    hh, ww = _size(b, x)
    cin = b.shapes[x][0]
    kh, kw = draw(st.integers(1, min(5, hh))), draw(st.integers(1, min(5, ww)))
    d = draw(st.integers(1, 2)) if min(hh - kh, ww - kw) >= 2 * max(kh, kw) else 1
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    g = draw(st.sampled_from([g for g in (1, 2, cin) if cin % g == 0]))
    cout = g * draw(st.integers(1, 3))
    y = b.conv(x, name, cout, (kh, kw), draw(st.integers(1, 3)), pads, g, d, bias=True)
    return b.act(b.bn(y, name + ".bn"), draw(st.sampled_from(["relu", "relu6"])))


def _pool(draw, b, x, name):
    """A pool with padding at the borders (possibly asymmetric), then a pointwise chain that
    the plan fuses after it."""
    hh, ww = _size(b, x)
    k = draw(st.integers(1, min(3, hh, ww)))
    pads = tuple(draw(st.integers(0, (k - 1) // 2 if k > 1 else 0)) for _ in range(4))
    y = b.pool(x, draw(st.sampled_from(["max", "avg", "avg"])), k, draw(st.integers(1, 2)),
               pads, ceil=draw(st.booleans()), count_include_pad=draw(st.booleans()), name=name)
    return _pointwise_chain(draw, b, y, name)


def _pointwise_chain(draw, b, x, name):
    """0-3 of: 1x1 conv with bias, BatchNorm, ReLU, spatial constant (what follows a pool in
    Inception's pool projection and ResNet-D's shortcut)."""
    for j, kind in enumerate(draw(st.lists(st.sampled_from(["conv", "bn", "relu", "const"]),
                                           max_size=3))):
        sub = f"{name}.p{j}"
        if kind == "conv":
            x = b.conv(x, sub, draw(st.integers(1, 3)), 1, bias=True)
        elif kind == "bn":
            x = b.bn(x, sub)
        elif kind == "relu":
            x = b.act(x, "relu", sub)
        else:
            x = _const(draw, b, x, sub)
    return x


def _const(draw, b, x, name):
    """Add or Mul of a constant: input-sized (C x H x W), 1 x H x W, along one axis, or per
    channel."""
    c, hh, ww = b.shapes[x]
    shape = draw(st.sampled_from([(c, hh, ww), (1, hh, ww), (hh, ww), (c, 1, ww), (hh, 1),
                                  (c, 1, 1)]))
    return b.constant(x, draw(st.sampled_from(["add", "mul"])), shape, name)


def _residual(draw, b, x, name):
    y = b.conv_bn(x, name + ".c", name + ".bn", b.shapes[x][0], 3, 1, 1)
    return b.add(x, y, name)


def _branches(draw, b, x, name):
    """Inception-style: a concat of 2-4 branches with different receptive fields."""
    hh, ww = _size(b, x)
    kinds = ["1x1", "3x3", "avg", "max"] + (["5x5"] if min(hh, ww) >= 5 else [])
    outs = []
    for j, kind in enumerate(draw(st.lists(st.sampled_from(kinds), min_size=2, max_size=4))):
        sub, cout = f"{name}.b{j}", draw(st.integers(1, 3))
        if kind in ("1x1", "3x3", "5x5"):
            k = int(kind[0])
            outs.append(b.conv_bn(x, sub, sub + ".bn", cout, k, 1, k // 2))
            continue
        y = b.pool(x, kind, 3, 1, 1, count_include_pad=draw(st.booleans()), name=sub + ".pool")
        outs.append(b.act(b.conv(y, sub, cout, 1, bias=True), "relu", sub + ".relu"))
    return b.concat(outs, name)


def _resnet_d(draw, b, x, name):
    """ResNet-D downsampling: conv stride 2 beside an average pool 2x2 stride 2 (ceil mode,
    padding not counted) and a 1x1 conv with BatchNorm."""
    if min(_size(b, x)) < 2:
        return _residual(draw, b, x, name)
    cout = draw(st.integers(1, 4))
    main = b.conv_bn(x, name + ".c", name + ".bn", cout, 3, 2, 1)
    y = b.pool(x, "avg", 2, 2, ceil=True, count_include_pad=False, name=name + ".pool")
    short = b.bn(b.conv(y, name + ".down", cout, 1), name + ".down.bn")
    return b.add(main, short, name)


def _pad(draw, b, x, name):
    """Pad (any value), sometimes followed by a pool that reads the padded border."""
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    y = b.pad(x, pads, draw(st.sampled_from([0.0, 0.5, -1.0])), name)
    if draw(st.booleans()):
        y = b.pool(y, draw(st.sampled_from(["max", "avg"])), 2, draw(st.integers(1, 2)), 1,
                   ceil=draw(st.booleans()), count_include_pad=draw(st.booleans()),
                   name=name + ".pool")
    return y


def _shuffle(draw, b, x, name):
    y = b.conv(x, name, 2 * draw(st.integers(1, 2)), 1, bias=True)
    return b.channel_shuffle(y, 2, name + ".shuffle")


def _squeeze_excite(draw, b, x, name):
    """x times a per-channel gate from global context: global pooling (a global op), or an
    average pool over the whole map (a windowed op whose 1x1 output broadcasts)."""
    c, hh, ww = b.shapes[x]
    s = b.global_pool(x, name + ".gap") if draw(st.booleans()) else \
        b.pool(x, "avg", (hh, ww), 1, name=name + ".pool")
    return b.mul(x, _gate(b, s, c, name), name)


def _coordinate_attention(draw, b, x, name):
    """x times gates pooled along each axis (C x H x 1 and C x 1 x W maps that broadcast)."""
    c, hh, ww = b.shapes[x]
    rows = _gate(b, b.pool(x, "avg", (1, ww), 1, name=name + ".rows"), c, name + ".r")
    cols = _gate(b, b.pool(x, "avg", (hh, 1), 1, name=name + ".cols"), c, name + ".c")
    return b.mul(b.mul(x, rows, name + ".mr"), cols, name)


def _gate(b, s, c, name):
    s = b.act(b.conv(s, name + ".fc1", max(1, c // 2), 1, bias=True), "relu", name + ".relu")
    return b.act(b.conv(s, name + ".fc2", c, 1, bias=True), "sigmoid", name + ".gate")


def _lrn(draw, b, x, name):
    return b.lrn(x, draw(st.sampled_from([3, 5])), alpha=0.1, name=name)


def _convnext(draw, b, x, name):
    """A ConvNeXt block: depthwise k x k conv, LayerNorm over the channels, 1x1 expansion,
    GELU (erf or tanh), 1x1 projection, a per-channel scale, and the residual Add."""
    c = b.shapes[x][0]
    k = draw(st.sampled_from([3, 5, 7]))
    y = b.conv(x, name + ".dw", c, k, 1, k // 2, groups=c, bias=True)
    # eps 1e-2, not ConvNeXt's 1e-6: over 1-4 channels the variance at a pixel can be tiny,
    # and LayerNorm then magnifies rounding (of a conv run on a region) by up to 1/sqrt(eps)
    y = b.conv(b.layernorm(y, name + ".ln", 1e-2), name + ".pw1", 4 * c, 1, bias=True)
    y = b.act(y, draw(st.sampled_from(["gelu", "gelu_tanh"])), name + ".act")
    y = b.constant(b.conv(y, name + ".pw2", c, 1, bias=True), "mul", (c, 1, 1), name + ".gamma")
    return b.add(x, y, name)


def _transposed(draw, b, x, name):
    """A UNet decoder step: a transposed conv (random kernel, stride, pads, output padding,
    dilation, groups) with BatchNorm and ReLU, sometimes concatenated with a skip from before
    it, resized to its size."""
    c, hh, ww = b.shapes[x]
    s = draw(st.integers(1, 3)) if max(hh, ww) <= 14 else 1
    k, d = draw(st.integers(1, 4)), draw(st.integers(1, 2))
    pads = tuple(draw(st.integers(0, d * (k - 1))) for _ in range(4))
    if min(s * (hh - 1) + 1 + d * (k - 1) - pads[0] - pads[2],
           s * (ww - 1) + 1 + d * (k - 1) - pads[1] - pads[3]) < 1:
        pads = (0, 0, 0, 0)
    g = draw(st.sampled_from([g for g in (1, 2, c) if c % g == 0]))
    y = b.conv_transpose(x, name, g * draw(st.integers(1, 3)), k, s, pads,
                         draw(st.integers(0, s - 1)), g, d, bias=True)
    y = b.act(b.bn(y, name + ".bn"), "relu", name + ".relu")
    if draw(st.booleans()):
        skip = _resize(draw, b, x, name + ".skip", b.shapes[y][1:])
        y = b.concat([y, skip], name + ".cat")
    return y


def _resize(draw, b, x, name, size=None):
    """Resize (nearest or linear, every coordinate rule) by a scale or to a size."""
    _, hh, ww = b.shapes[x]
    scales = [v for v in (0.5, 1.5, 2.0, 7 / 3, 3.0)  # 7/3: sizes ONNX inference truncates apart
              if 1 <= v * min(hh, ww) and v * max(hh, ww) <= 40]
    scale = None
    if size is None and scales and draw(st.booleans()):
        scale = draw(st.sampled_from(scales))
    elif size is None:
        size = (draw(st.integers(1, min(40, 3 * hh))), draw(st.integers(1, min(40, 3 * ww))))
    return b.resize(x, size, scale, draw(st.sampled_from(MODES)), draw(st.sampled_from(COORDS)),
                    draw(st.sampled_from(NEAREST)), name)


def _act(draw, b, x, name):
    return b.act(x, draw(st.sampled_from(["relu", "relu6"])), name)


LAYERS = {"conv": _conv, "pool": _pool, "residual": _residual, "branches": _branches,
          "resnet_d": _resnet_d, "pad": _pad, "act": _act, "const": _const, "shuffle": _shuffle,
          "se": _squeeze_excite, "coord": _coordinate_attention, "lrn": _lrn,
          "convnext": _convnext, "transposed": _transposed, "resize": _resize}


@st.composite
def cases(draw):
    g = draw(cnns())
    _, h, w = g.input_shape
    patch = draw(st.integers(1, min(h, w)))
    stride = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 1000))
    return g, patch, stride, seed


def _check(case, backend_name, log_error):
    g, patch, stride, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(g.input_shape).astype(np.float32)
    fill = np.broadcast_to(rng.standard_normal((g.input_shape[0], 1, 1)).astype(np.float32),
                           g.input_shape).copy()
    grid = Grid(g.input_shape[1], g.input_shape[2], patch, stride)
    corners = grid.corners()
    be = get_backend(backend_name)
    # every other case gathers windowed layers' contexts channels-last (as onnxruntime scans do)
    views = base_views(g, x, be)
    plan = IncrementalPlan(g, corners, patch, ChannelsLastViews(views) if seed % 2 else views)
    idx = np.arange(len(corners))
    pv = np.stack([fill[:, y:y + patch, c:c + patch] for y, c in corners])
    out = plan.run(idx, pv, be, {})
    ref = be.run(g, {g.inputs[0]: occluded_batch(x, fill, corners, patch)})[g.output]
    assert log_error(f"incremental {backend_name}", out, ref) <= TOLERANCE


@EXACT
@given(cases())
def test_incremental_equals_full_numpy(log_error, case):
    _check(case, "numpy", log_error)


@EXACT
@given(cases())
def test_incremental_equals_full_onnxruntime(log_error, case):
    _check(case, "onnxruntime", log_error)


@pytest.mark.slow
@MANY
@given(cases())
def test_incremental_equals_full_many_numpy(log_error, case):
    _check(case, "numpy", log_error)


@pytest.mark.slow
@MANY
@given(cases())
def test_incremental_equals_full_many_onnxruntime(log_error, case):
    _check(case, "onnxruntime", log_error)


# -- regression cases (issue 11): found on real graphs, missed by the old generator ---------------


def _exact(g, patch, stride, backend_name, winograd=True):
    """max |incremental - full| / max |full| over every position of the grid (contexts of
    windowed layers gathered channels-last on onnxruntime, as its scans do, and large 3x3
    convolutions on them by Winograd unless ``winograd`` is False)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(g.input_shape).astype(np.float32)
    fill = np.full(g.input_shape, 0.7, np.float32)
    corners = Grid(g.input_shape[1], g.input_shape[2], patch, stride).corners()
    be = get_backend(backend_name)
    views = base_views(g, x, be)
    plan = IncrementalPlan(g, corners, patch, ChannelsLastViews(views, winograd)
                           if be.channels_last else views)
    pv = np.stack([fill[:, y:y + patch, c:c + patch] for y, c in corners])
    out = plan.run(np.arange(len(corners)), pv, be, {})
    ref = be.run(g, {g.inputs[0]: occluded_batch(x, fill, corners, patch)})[g.output]
    return float(np.abs(out - ref).max() / np.abs(ref).max()), plan


BACKENDS = pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])


@BACKENDS
@pytest.mark.parametrize("pool", [(13, 3, 1, 1, False, False), (13, 2, 2, 0, True, False),
                                  (13, 2, 2, 0, True, True), (12, 3, 2, 1, True, True)],
                         ids=["pad1-exclude", "ceil-exclude", "ceil-include", "pad1-ceil-include"])
def test_avgpool_divisor_applies_to_the_pool_not_the_fused_chain(backend, pool):
    """Average pools whose divisor varies at the borders (padding not counted, or ceil-mode
    windows past the padding), followed by a fused 1x1 conv with bias and ReLU (Inception's
    pool projection, ResNet-D's shortcut): the old plan divided the chain's output, 0.02 off."""
    size, k, s, p, ceil, include = pool
    b = Builder("pool_projection", (3, size, size), seed=1, bias_std=1.0)
    x = b.act(b.conv("input", "c1", 8, 3, 1, 1, bias=True), "relu")
    x = b.pool(x, "avg", k, s, p, ceil=ceil, count_include_pad=include)
    x = b.act(b.conv(x, "proj", 4, 1, bias=True), "relu")
    g = b.build(b.linear(b.flatten(b.global_pool(x)), "fc", 5))
    err, plan = _exact(g, 3, 2, backend)
    assert any(len(st_.segment.nodes) > 3 for st_ in plan.steps if st_.segment), "not fused"
    assert err <= TOLERANCE


@BACKENDS
def test_residual_adds_fuse_into_the_convolution_before_them(backend):
    """A residual Add changing exactly its convolution's rectangle joins that convolution's
    step (one call for conv, BN, Add and ReLU; the skip read at the rectangle), also where
    the other branch comes later in graph order (a strided 1x1 shortcut) or is a convolution
    changing a larger rectangle (then only the larger branch's chain takes the Add)."""
    b = Builder("residual", (3, 32, 32), seed=3, bias_std=0.5)
    x = b.act(b.conv("input", "stem", 8, 3, 1, 1, bias=True), "relu")
    y = b.act(b.conv_bn(x, "b1.c1", "b1.bn1", 8, 3, 1, 1), "relu")
    x = b.act(b.add(b.conv_bn(y, "b1.c2", "b1.bn2", 8, 3, 1, 1), x, "b1.add"), "relu")
    y = b.act(b.conv_bn(x, "b2.c1", "b2.bn1", 16, 3, 2, 1), "relu")
    y = b.conv_bn(y, "b2.c2", "b2.bn2", 16, 3, 1, 1)
    x = b.act(b.add(y, b.conv(x, "b2.short", 16, 1, 2), "b2.add"), "relu")
    x = b.act(b.add(b.conv(x, "wide", 16, 5, 1, 2), b.conv(x, "narrow", 16, 1), "b3.add"),
              "relu")
    p = b.conv(x, "b4.p", 16, 3, 1, 1)  # two users: the Add below heads its own chain
    y = b.act(b.add(p, x, "b4.ab"), "relu")  # a chain headed by an Add, joining another Add
    x = b.act(b.add(y, b.conv(p, "b4.c", 16, 1), "b4.add"), "relu")
    g = b.build(b.linear(b.flatten(b.global_pool(x)), "fc", 5))
    err, plan = _exact(g, 3, 2, backend)
    chains = {c[0].name: [n.name for n in c] for c in plan.cut.chains}
    assert "b1.add" in chains["b1.c2"] and "b2.add" in chains["b2.c2"]
    assert "b3.add" in chains["wide"] and chains["narrow"] == ["narrow"]
    assert "b4.add" in chains["b4.ab"]
    assert plan.cut.k == len(plan.cut.chains)  # every chain maintained: the fused steps ran
    assert [len(st_.inputs) for st_ in plan.steps if st_.chain[0] in ("b1.c2", "wide")] == [2, 2]
    assert err <= TOLERANCE


@BACKENDS
@pytest.mark.parametrize("shape", [(3, 12, 12), (1, 12, 12), (12, 12), (3, 1, 12), (12, 1)])
@pytest.mark.parametrize("kind", ["add", "mul"])
def test_spatial_constants_are_sliced_to_each_region(backend, shape, kind):
    """x + C with C input-sized (or varying along one axis) crashed the plan with a ShapeError;
    a constant after a conv is fused into its step and read at each query's region."""
    b = Builder("spatial_const", (3, 12, 12), seed=2, bias_std=0.5)
    x = b.constant("input", kind, shape)
    x = b.act(b.conv(x, "c1", 4, 3, 1, 1, bias=True), "relu")
    x = b.constant(x, kind, (4, *shape[1:]) if shape[0] == 3 else shape)
    g = b.build(b.linear(b.flatten(b.global_pool(x)), "fc", 5))
    err, plan = _exact(g, 3, 2, backend)
    assert any(st_.sides for st_ in plan.steps)
    assert err <= TOLERANCE


def test_input_sized_constant_from_onnx(tmp_path):
    """The issue's case as an ONNX file: Add of a 1 x 3 x H x W initializer to the input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from kryptondb.model.onnx_import import import_onnx

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("C", (1, 3, 10, 10)), ("W", (4, 3, 3, 3)), ("B", (4,)))]
    nodes = [helper.make_node("Add", ["x", "C"], ["xc"]),
             helper.make_node("Conv", ["xc", "W", "B"], ["y"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "xc", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 10, 10])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "x_plus_c.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    err, _ = _exact(import_onnx(str(path)).graph, 4, 3, "onnxruntime")
    assert err <= TOLERANCE


@BACKENDS
def test_gates_pooled_along_one_axis_broadcast_over_the_map(backend):
    """Coordinate attention: x times a C x H x 1 and a C x 1 x W gate. A change of a gate's
    row reaches the whole row of the product: the region algebra widens broadcast inputs."""
    b = Builder("coord", (2, 14, 14), seed=4, bias_std=0.5)
    x = b.act(b.conv("input", "c1", 4, 3, 1, 1, bias=True), "relu")
    x = _coordinate_attention(None, b, x, "ca")
    g = b.build(b.conv(x, "c2", 3, 3, 1, 1, bias=True))
    err, plan = _exact(g, 2, 3, backend)
    assert "ca.mr" in plan.incremental
    assert err <= TOLERANCE


@BACKENDS
def test_fused_chain_after_a_strided_layer_with_empty_regions(backend):
    """A 1-pixel patch between the samples of a stride-2 layer changes nothing there; the
    region algebra parks such empty regions at different places for the head (a strided conv)
    and a fused 1x1 conv, and the old plan wrote the chain's values at the wrong one."""
    b = Builder("strided", (1, 9, 9), seed=0, bias_std=0.5)
    x = b.act(b.conv("input", "l0", 1, 1, 2, bias=True), "relu")
    g = b.build(b.act(b.conv(x, "l1", 2, 1, bias=True), "relu"))
    err, plan = _exact(g, 1, 1, backend)
    assert [s.name for s in plan.steps][0] == "l1"  # l0, its ReLU and l1 fused
    assert err <= TOLERANCE


def test_ceil_pool_whose_last_window_starts_past_the_input():
    """Kernel 1, stride 2, ceil mode on 8 x 6: onnxruntime returns 4 x 3 like us, but ONNX
    shape inference says 5 x 4, so a Mul by a 4 x 3 constant after it failed to load (naive
    and incremental alike); the exporter slices the pool to its true size."""
    b = Builder("ceil_past", (6, 8, 6), seed=0, bias_std=0.5)
    x = b.pool("input", "avg", 1, 2, 0, ceil=True)
    g = b.build(b.constant(b.act(x, "relu"), "mul", (1, 4, 3)))
    assert _exact(g, 1, 1, "onnxruntime")[0] <= TOLERANCE


# -- issue 13: decoders whose output map is larger than their input ------------------------------


@BACKENDS
@pytest.mark.parametrize("k, s, pads, extra", [(2, 2, 0, 0), (3, 2, 1, 1), (4, 2, 1, 0),
                                               (3, 3, (0, 2, 1, 0), 2), (1, 2, 0, 1)])
def test_transposed_conv_regions_are_cropped_from_a_stride_aligned_box(backend, k, s, pads,
                                                                       extra):
    """Every 1- and 2-pixel patch: the changed rows of a transposed conv start at every phase
    against its stride (and kernel 1 < stride leaves rows no input reaches); a fused BatchNorm,
    ReLU and input-sized offset run on the aligned box before each region is cropped out."""
    b = Builder("decoder", (2, 7, 8), seed=3, bias_std=0.5)
    y = b.conv_transpose(b.conv("input", "c0", 3, 3, 1, 1, bias=True), "up", 4, k, s, pads,
                         extra, bias=True)
    y = b.constant(b.act(b.bn(y, "bn"), "relu"), "add", (1, *b.shapes[y][1:]))
    g = b.build(b.conv(y, "c1", 3, 3, 1, 1, bias=True))
    for patch in (1, 2):
        err, plan = _exact(g, patch, 1, backend)
        step = next(st_ for st_ in plan.steps if st_.head.op.value == "ConvTranspose")
        assert step.box is not None and step.name == "add_2"  # the chain fused, cropped after
        assert err <= TOLERANCE


@BACKENDS
@pytest.mark.parametrize("mode, coord", [("nearest", "asymmetric"), ("linear", "half_pixel"),
                                         ("linear", "align_corners")])
def test_resize_regions_read_contexts_inside_the_map(backend, mode, coord):
    """Upsampling by 2, by 7/3 and to a size, then a skip concat: contexts at the borders are
    kept inside the map (Resize clamps there, it does not pad)."""
    b = Builder("upsample", (3, 6, 7), seed=4, bias_std=0.5)
    x = b.conv("input", "c0", 3, 3, 1, 1, bias=True)
    y = b.resize(b.resize(x, scale=2.0, mode=mode, coord=coord), scale=7 / 3, mode=mode,
                 coord=coord)
    skip = b.resize(b.conv(x, "c1", 2, 1, bias=True), size=b.shapes[y][1:], mode=mode,
                    coord=coord)
    g = b.build(b.conv(b.concat([y, skip]), "c2", 2, 3, 1, 1, bias=True))
    err, _ = _exact(g, 2, 1, backend)
    assert err <= TOLERANCE
