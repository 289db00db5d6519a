"""Single operators, property-tested: a one-node ONNX model built by hand with onnx.helper (not our
exporter) runs in onnxruntime; the same file, imported, must give the same values on our numpy
and onnxruntime backends. Gemm and MatMul get a Flatten in front, since ONNX wants a 2-D input
and our importer takes one N x C x H x W image.

Hypothesis runs derandomized, so CI sees the same examples on every run.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from kryptondb.graph.ir import Op
from kryptondb.runtime.backends import get_backend
from kryptondb.model.onnx_import import import_onnx

TOLERANCE = 1e-4
BATCH = 2
OPS = settings(deadline=None, max_examples=40, derandomize=True, database=None)
FEW = settings(OPS, max_examples=20)  # ops with few distinct configurations

channels = st.integers(1, 6)
seeds = st.integers(0, 2**31 - 1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ops")


def _model(nodes, x_shape, inits=None, opset=17, out_rank=4):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH, *x_shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(out_rank)])
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "one_op", [x], [y], tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 17 else 9
    onnx.checker.check_model(model)
    return model


def _onnxruntime(model, x) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(["y"], {"x": x})[0]


def _input(shape, seed) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((BATCH, *shape)) * 2).astype(np.float32)


def _weights(seed, shape, low=None) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    if low is not None:  # bounded away from zero (divisors)
        return (rng.uniform(low, 2.0, shape) * rng.choice([-1, 1], shape)).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def check(workdir, log_error, label, model, x) -> None:
    """Our import of ``model`` on both backends equals onnxruntime on the hand-built model."""
    path = workdir / "op.onnx"
    onnx.save(model, str(path))
    graph = import_onnx(path).graph
    ref = _onnxruntime(model, x)
    for backend in ("numpy", "onnxruntime"):
        ours = get_backend(backend).run(graph, {graph.inputs[0]: x})[graph.output]
        err = log_error(f"op {label} {backend}", ours, ref)
        assert err <= TOLERANCE, f"{backend}: relative error {err:.2e}"


def _out_len(size, k, s, lo, hi, d=1, ceil=False) -> int:
    """ONNX's output length, written out here rather than taken from kryptondb.graph.shapes."""
    span = size + lo + hi - d * (k - 1) - 1
    if span < 0:
        return 0
    n = -(-span // s) + 1 if ceil else span // s + 1
    if ceil and (n - 1) * s >= size + lo:  # the last window would start in the end padding
        n -= 1
    return n


def _fits(hw, kernel, stride, pads, dilation=(1, 1), ceil=False) -> bool:
    return all(_out_len(hw[i], kernel[i], stride[i], pads[i], pads[i + 2], dilation[i], ceil) >= 1
               for i in range(2))


pair = lambda lo, hi: st.tuples(st.integers(lo, hi), st.integers(lo, hi))  # noqa: E731


# -- windowed ops --------------------------------------------------------------------------------


@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise", "depthwise x2"]))
    if kind in ("dense", "grouped"):
        groups = 1 if kind == "dense" else draw(st.integers(2, 3))
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    else:  # one group per input channel, with channel multiplier 1 or 2
        groups = cin = draw(st.integers(1, 6))
        cout = cin * (2 if kind == "depthwise x2" else 1)
    auto_pad = draw(st.sampled_from(["NOTSET"] * 3 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
    return dict(cin=cin, cout=cout, groups=groups, hw=draw(pair(5, 20)), kernel=draw(pair(1, 5)),
                stride=draw(pair(1, 3)), dilation=draw(pair(1, 2)), auto_pad=auto_pad,
                pads=draw(st.tuples(*[st.integers(0, 3)] * 4)) if auto_pad == "NOTSET" else None,
                bias=draw(st.booleans()), seed=draw(seeds))


@OPS
@given(conv_cases())
def test_conv(workdir, log_error, c):
    pads = c["pads"] or (0, 0, 0, 0)
    if c["auto_pad"].startswith("SAME"):  # onnxruntime refuses SAME padding with dilation
        assume(c["dilation"] == (1, 1))
    else:
        assume(_fits(c["hw"], c["kernel"], c["stride"], pads, c["dilation"]))
    w = _weights(c["seed"], (c["cout"], c["cin"] // c["groups"], *c["kernel"]))
    inits = {"w": w} | ({"b": _weights(c["seed"] + 1, (c["cout"],))} if c["bias"] else {})
    attrs = dict(kernel_shape=c["kernel"], strides=c["stride"], dilations=c["dilation"],
                 group=c["groups"], auto_pad=c["auto_pad"])
    attrs |= {"pads": list(pads)} if c["pads"] else {}
    node = helper.make_node("Conv", ["x", *inits], ["y"], name="conv", **attrs)
    model = _model([node], (c["cin"], *c["hw"]), inits)
    check(workdir, log_error, "Conv", model, _input((c["cin"], *c["hw"]), c["seed"]))


@st.composite
def pool_cases(draw):
    kernel = draw(pair(1, 4))
    pads = tuple(draw(st.integers(0, kernel[i % 2] - 1)) for i in range(4))  # ONNX: pad < kernel
    auto_pad = draw(st.sampled_from(["NOTSET"] * 4 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
    return dict(c=draw(channels), hw=draw(pair(5, 20)), kernel=kernel, stride=draw(pair(1, 3)),
                pads=pads if auto_pad == "NOTSET" else (0, 0, 0, 0), auto_pad=auto_pad,
                ceil=draw(st.integers(0, 1)), seed=draw(seeds))


def _pool_case(hw, kernel, stride, pads, ceil=1):
    """A hand-picked ceil-mode case for @example (the edges random draws may miss)."""
    return dict(c=2, hw=hw, kernel=kernel, stride=stride, pads=pads, auto_pad="NOTSET",
                ceil=ceil, seed=0)


def _same_fits(c) -> bool:
    """onnxruntime fails pools whose SAME padding would be negative (stride > kernel)."""
    return c["auto_pad"] in ("NOTSET", "VALID") or all(
        (-(-c["hw"][i] // c["stride"][i]) - 1) * c["stride"][i] + c["kernel"][i] >= c["hw"][i]
        for i in range(2))


def _pool(op, c, **attrs):
    if c["auto_pad"] == "NOTSET":
        attrs["pads"] = list(c["pads"])
    node = helper.make_node(op, ["x"], ["y"], name="pool", kernel_shape=c["kernel"],
                            strides=c["stride"], ceil_mode=c["ceil"], auto_pad=c["auto_pad"],
                            **attrs)
    return _model([node], (c["c"], *c["hw"]))


# ceil mode: a last window that would start in the end padding is dropped (5 -> 3, not 4)
@example(_pool_case((5, 5), (2, 2), (2, 2), (1, 1, 1, 1)), (1, 1))
@example(_pool_case((7, 6), (2, 2), (2, 3), (0, 0, 1, 1)), (1, 2))  # the same, dilated
@OPS
@given(pool_cases(), pair(1, 2))
def test_maxpool(workdir, log_error, c, dilation):
    if c["auto_pad"].startswith("SAME"):
        assume(dilation == (1, 1))
    assume(_same_fits(c))
    assume(_fits(c["hw"], c["kernel"], c["stride"], c["pads"], dilation, c["ceil"]))
    model = _pool("MaxPool", c, dilations=list(dilation))
    check(workdir, log_error, "MaxPool", model, _input((c["c"], *c["hw"]), c["seed"]))


# ceil mode with count_include_pad: the last window reaches past the padding; only the
# padding, not the overhang, counts in its divisor
@example(_pool_case((6, 6), (3, 3), (2, 2), (1, 1, 1, 1)), 1)
@example(_pool_case((5, 5), (2, 2), (2, 2), (1, 1, 1, 1)), 0)
@OPS
@given(pool_cases(), st.integers(0, 1))
def test_averagepool(workdir, log_error, c, count_include_pad):
    assume(_same_fits(c))
    assume(_fits(c["hw"], c["kernel"], c["stride"], c["pads"], ceil=c["ceil"]))
    model = _pool("AveragePool", c, count_include_pad=count_include_pad)
    check(workdir, log_error, "AveragePool", model, _input((c["c"], *c["hw"]), c["seed"]))


@FEW
@given(channels, pair(5, 12), seeds)
def test_global_average_pool(workdir, log_error, c, hw, seed):
    model = _model([helper.make_node("GlobalAveragePool", ["x"], ["y"], name="gap")], (c, *hw))
    check(workdir, log_error, "GlobalAveragePool", model, _input((c, *hw), seed))


# -- pointwise ops -------------------------------------------------------------------------------


@OPS
@given(st.integers(1, 8), st.sampled_from([1, 3, 5]), st.floats(1e-5, 1.0), st.floats(0.1, 1.0),
       st.floats(0.5, 3.0), seeds)
def test_lrn(workdir, log_error, c, size, alpha, beta, bias, seed):
    node = helper.make_node("LRN", ["x"], ["y"], name="lrn", size=size, alpha=alpha, beta=beta,
                            bias=bias)
    model = _model([node], (c, 6, 7))
    check(workdir, log_error, "LRN", model, _input((c, 6, 7), seed))


bounds = st.one_of(st.none(), st.floats(-2.0, 2.0, allow_subnormal=False))


@OPS
@given(bounds, bounds, st.sampled_from([6, 13]), seeds)
def test_clip(workdir, log_error, lo, hi, opset, seed):
    assume(lo is None or hi is None or lo <= hi)
    if opset == 6:  # bounds are attributes
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        node, inits = helper.make_node("Clip", ["x"], ["y"], name="clip", **attrs), {}
    else:  # bounds are optional inputs; "" skips one
        inits = {k: np.float32(v) for k, v in (("lo", lo), ("hi", hi)) if v is not None}
        names = ["x", "lo" if lo is not None else "", "hi" if hi is not None else ""]
        node = helper.make_node("Clip", names, ["y"], name="clip")
    model = _model([node], (3, 6, 6), inits, opset)
    check(workdir, log_error, "Clip", model, _input((3, 6, 6), seed))


ACTIVATION_ATTRS = {
    "LeakyRelu": st.fixed_dictionaries({"alpha": st.floats(-1.0, 1.0)}),
    "HardSigmoid": st.fixed_dictionaries({"alpha": st.floats(0.01, 1.0),
                                          "beta": st.floats(-1.0, 1.0)}),
    "HardSwish": st.just({}), "Sigmoid": st.just({}), "Relu": st.just({}),
}


@pytest.mark.parametrize("op", ACTIVATION_ATTRS)
@FEW
@given(data=st.data(), seed=seeds)
def test_activation(workdir, log_error, op, data, seed):
    attrs = data.draw(ACTIVATION_ATTRS[op])
    model = _model([helper.make_node(op, ["x"], ["y"], name="act", **attrs)], (3, 6, 7))
    check(workdir, log_error, op, model, _input((3, 6, 7), seed))


@FEW
@given(st.sampled_from([1, 2, 3, -1, -2, -3]), st.sampled_from([13, 17]), seeds)
def test_softmax(workdir, log_error, axis, opset, seed):
    model = _model([helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=axis)], (4, 5, 6),
                   opset=opset)
    check(workdir, log_error, "Softmax", model, _input((4, 5, 6), seed))


# -- arithmetic with constants, Concat, Pad --------------------------------------------------

C, H, W = 4, 5, 6
CONST_SHAPES = [(), (1,), (W,), (H, 1), (C, 1, 1), (1, C, 1, 1), (C, H, W), (1, 1, H, W)]


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
@FEW
@given(st.sampled_from(CONST_SHAPES), st.booleans(), seeds)
def test_arithmetic_with_constant(workdir, log_error, op, shape, const_first, seed):
    const_first &= op in ("Add", "Mul")  # we take only activation - / constant
    inits = {"k": _weights(seed, shape, low=0.5 if op == "Div" else None)}
    inputs = ["k", "x"] if const_first else ["x", "k"]
    model = _model([helper.make_node(op, inputs, ["y"], name="arith")], (C, H, W), inits)
    check(workdir, log_error, f"{op}-const", model, _input((C, H, W), seed))


@pytest.mark.parametrize("op", ["Add", "Mul", "Sum"])
@settings(FEW, max_examples=5)
@given(seeds)
def test_arithmetic_of_two_activations(workdir, log_error, op, seed):
    model = _model([helper.make_node(op, ["x", "x"], ["y"], name="arith")], (C, H, W))
    check(workdir, log_error, f"{op}-self", model, _input((C, H, W), seed))


@FEW
@given(st.sampled_from([1, 2, 3, -1, -2, -3]), st.integers(2, 3), seeds)
def test_concat(workdir, log_error, axis, copies, seed):
    node = helper.make_node("Concat", ["x"] * copies, ["y"], name="cat", axis=axis)
    model = _model([node], (C, H, W))
    check(workdir, log_error, "Concat", model, _input((C, H, W), seed))


@OPS
@given(st.tuples(*[st.integers(0, 3)] * 4), st.floats(-3.0, 3.0), st.booleans(), seeds)
def test_pad(workdir, log_error, pads, value, value_given, seed):
    pt, pl, pb, pr = pads
    inits = {"pads": np.array([0, 0, pt, pl, 0, 0, pb, pr], np.int64)}
    inits |= {"value": np.float32(value)} if value_given else {}
    node = helper.make_node("Pad", ["x", *inits], ["y"], name="pad", mode="constant")
    model = _model([node], (C, H, W), inits)
    check(workdir, log_error, "Pad", model, _input((C, H, W), seed))


# -- fully connected -----------------------------------------------------------------------------


@st.composite
def gemm_cases(draw):
    return dict(c=draw(st.integers(1, 4)), hw=draw(pair(1, 4)), k=draw(st.integers(1, 12)),
                trans_b=draw(st.integers(0, 1)), alpha=draw(st.floats(-2.0, 2.0)),
                beta=draw(st.floats(-2.0, 2.0)), bias=draw(st.sampled_from([None, "k", "1k", "1"])),
                seed=draw(seeds))


@OPS
@given(gemm_cases())
def test_gemm(workdir, log_error, g):
    features = g["c"] * g["hw"][0] * g["hw"][1]
    b_shape = (g["k"], features) if g["trans_b"] else (features, g["k"])
    bias_shape = {"k": (g["k"],), "1k": (1, g["k"]), "1": (1,)}.get(g["bias"])
    inits = {"b": _weights(g["seed"], b_shape)}
    inits |= {"c": _weights(g["seed"] + 1, bias_shape)} if bias_shape else {}
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", *inits], ["y"], name="gemm", transB=g["trans_b"],
                              alpha=g["alpha"], beta=g["beta"])]
    model = _model(nodes, (g["c"], *g["hw"]), inits, out_rank=2)
    check(workdir, log_error, "Gemm", model, _input((g["c"], *g["hw"]), g["seed"]))


@FEW
@given(st.integers(1, 4), pair(1, 4), st.integers(1, 12), seeds)
def test_matmul(workdir, log_error, c, hw, k, seed):
    inits = {"b": _weights(seed, (c * hw[0] * hw[1], k))}
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "b"], ["y"], name="matmul")]
    model = _model(nodes, (c, *hw), inits, out_rank=2)
    check(workdir, log_error, "MatMul", model, _input((c, *hw), seed))


# -- modern CNN ops: transposed convolution, Resize, LayerNorm, GELU (issue 13) ------------------


@st.composite
def conv_transpose_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2]))
    stride, kernel = draw(pair(1, 3)), draw(pair(1, 4))
    return dict(cin=groups * draw(st.integers(1, 3)), cout=groups * draw(st.integers(1, 3)),
                groups=groups, hw=draw(pair(2, 9)), kernel=kernel, stride=stride,
                dilation=draw(pair(1, 2)), pads=draw(st.tuples(*[st.integers(0, 3)] * 4)),
                extra=tuple(draw(st.integers(0, s - 1)) for s in stride),
                bias=draw(st.booleans()), seed=draw(seeds))


@OPS
@given(conv_transpose_cases())
def test_conv_transpose(workdir, log_error, c):
    out = [c["stride"][i] * (c["hw"][i] - 1) + c["extra"][i] + c["dilation"][i] *
           (c["kernel"][i] - 1) + 1 - c["pads"][i] - c["pads"][i + 2] for i in range(2)]
    assume(min(out) >= 1)
    w = _weights(c["seed"], (c["cin"], c["cout"] // c["groups"], *c["kernel"]))
    inits = {"w": w} | ({"b": _weights(c["seed"] + 1, (c["cout"],))} if c["bias"] else {})
    node = helper.make_node("ConvTranspose", ["x", *inits], ["y"], name="convt",
                            kernel_shape=c["kernel"], strides=c["stride"], pads=c["pads"],
                            dilations=c["dilation"], group=c["groups"], output_padding=c["extra"])
    model = _model([node], (c["cin"], *c["hw"]), inits)
    check(workdir, log_error, "ConvTranspose", model, _input((c["cin"], *c["hw"]), c["seed"]))


@st.composite
def resize_cases(draw):
    hw = draw(pair(2, 9))
    by_size = draw(st.booleans())
    return dict(hw=hw, mode=draw(st.sampled_from(["nearest", "linear"])),
                coord=draw(st.sampled_from(["half_pixel", "pytorch_half_pixel", "asymmetric",
                                            "align_corners"])),
                nearest=draw(st.sampled_from(["floor", "ceil", "round_prefer_floor",
                                              "round_prefer_ceil"])),
                sizes=draw(pair(1, 20)) if by_size else None,
                scales=None if by_size else draw(st.tuples(*[st.sampled_from(
                    [0.5, 1.0, 1.5, 2.0, 3.0, 7 / 3])] * 2)),
                opset=draw(st.sampled_from([13, 17])), seed=draw(seeds))


@OPS
@given(resize_cases())
def test_resize(workdir, log_error, c):
    if c["scales"]:
        assume(all(int(np.float32(i) * np.float32(s)) >= 1 for i, s in zip(c["hw"], c["scales"])))
        inits = {"scales": np.array([1, 1, *c["scales"]], np.float32)}
        names = ["x", "", "scales"]
    else:
        inits = {"sizes": np.array([BATCH, 2, *c["sizes"]], np.int64)}
        names = ["x", "", "", "sizes"]
    node = helper.make_node("Resize", names, ["y"], name="resize", mode=c["mode"],
                            coordinate_transformation_mode=c["coord"], nearest_mode=c["nearest"])
    model = _model([node], (2, *c["hw"]), inits, c["opset"])
    check(workdir, log_error, "Resize", model, _input((2, *c["hw"]), c["seed"]))


def _channels_last(*nodes):
    """Transpose to N x H x W x C, ``nodes`` (reading "t", writing "u"), Transpose back."""
    return [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), *nodes,
            helper.make_node("Transpose", ["u"], ["y"], perm=[0, 3, 1, 2])]


@FEW
@given(st.integers(1, 6), st.floats(1e-6, 1e-2), st.booleans(), seeds)
def test_layernorm_over_channels_last(workdir, log_error, c, eps, bias, seed):
    inits = {"s": _weights(seed, (c,))} | ({"b": _weights(seed + 1, (c,))} if bias else {})
    ln = helper.make_node("LayerNormalization", ["t", *inits], ["u"], axis=-1, epsilon=eps)
    model = _model(_channels_last(ln), (c, 5, 6), inits)
    check(workdir, log_error, "LayerNormalization", model, _input((c, 5, 6), seed))


@FEW
@given(st.integers(1, 6), st.integers(1, 9), seeds)
def test_matmul_and_bias_over_channels_last(workdir, log_error, c, k, seed):
    """nn.Linear on a channels-last map: a 1x1 convolution."""
    inits = {"m": _weights(seed, (c, k)), "b": _weights(seed + 1, (k,))}
    nodes = _channels_last(helper.make_node("MatMul", ["t", "m"], ["tm"]),
                           helper.make_node("Add", ["b", "tm"], ["u"]))
    model = _model(nodes, (c, 5, 6), inits)
    check(workdir, log_error, "MatMul channels-last", model, _input((c, 5, 6), seed))


@FEW
@given(st.sampled_from(["none", "tanh"]), seeds)
def test_gelu(workdir, log_error, approximate, seed):
    node = helper.make_node("Gelu", ["x"], ["y"], approximate=approximate)
    model = _model([node], (3, 5, 6), opset=20)
    check(workdir, log_error, f"Gelu {approximate}", model, _input((3, 5, 6), seed))


def _erf_gelu(half_first: bool, divide: bool):
    """x * 0.5 * (1 + erf(x / sqrt 2)) as PyTorch exports it before opset 20 (or with 0.5 * x
    first, and x times 1/sqrt 2)."""
    k = {"r": np.float32(np.sqrt(2) if divide else 1 / np.sqrt(2)), "one": np.float32(1),
         "half": np.float32(0.5)}
    nodes = [helper.make_node("Div" if divide else "Mul", ["x", "r"], ["a"]),
             helper.make_node("Erf", ["a"], ["e"]), helper.make_node("Add", ["e", "one"], ["g"])]
    if half_first:
        nodes += [helper.make_node("Mul", ["x", "half"], ["h"]),
                  helper.make_node("Mul", ["h", "g"], ["y"])]
    else:
        nodes += [helper.make_node("Mul", ["x", "g"], ["xg"]),
                  helper.make_node("Mul", ["xg", "half"], ["y"])]
    return nodes, k


@pytest.mark.parametrize("half_first, divide", [(False, True), (True, True), (False, False)])
def test_gelu_written_with_erf(workdir, log_error, half_first, divide):
    nodes, inits = _erf_gelu(half_first, divide)
    model = _model(nodes, (3, 5, 6), inits, opset=13)
    check(workdir, log_error, "Gelu as Erf", model, _input((3, 5, 6), 0))
    path = workdir / "op.onnx"
    assert {n.op for n in import_onnx(path).graph.nodes} == {Op.INPUT, Op.GELU}


def _layernorm_chain(axes_input: bool):
    """ConvNeXt's channels-first LayerNorm2d as exported: ReduceMean over axis 1 (axes an
    attribute before opset 18, an input from it), Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div."""
    def mean(src, out):
        if axes_input:
            return helper.make_node("ReduceMean", [src, "axes"], [out])
        return helper.make_node("ReduceMean", [src], [out], axes=[1])
    inits = {"two": np.float32(2), "eps": np.float32(1e-6)}
    inits |= {"axes": np.array([1], np.int64)} if axes_input else {}
    return [mean("x", "m"), helper.make_node("Sub", ["x", "m"], ["d"]),
            helper.make_node("Pow", ["d", "two"], ["p"]), mean("p", "v"),
            helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"]),
            helper.make_node("Div", ["d", "s"], ["y"])], inits


@pytest.mark.parametrize("opset", [13, 18])
def test_layernorm_written_with_reduce_mean(workdir, log_error, opset):
    nodes, inits = _layernorm_chain(axes_input=opset >= 18)
    model = _model(nodes, (5, 4, 6), inits, opset=opset)
    check(workdir, log_error, "LayerNorm as ReduceMean", model, _input((5, 4, 6), 0))
    assert {n.op for n in import_onnx(workdir / "op.onnx").graph.nodes} == {Op.INPUT,
                                                                            Op.LAYERNORM}


_PADS = np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)


# -- constants the importer folds: F.pad's pads, ConstantOfShape's value -------------------------


def test_pads_from_a_constant_chain(workdir, log_error):
    """nn.ZeroPad2d's export: pads = Cast(Reshape(Transpose(Slice(Reshape(Concat(pads,
    ConstantOfShape(value 0 int64))))))), once refused as 'Concat ... constant'."""
    k = {"p": np.array([1, 2, 0, 3], np.int64), "n": np.array([4], np.int64),
         "sh": np.array([-1, 2], np.int64), "st": np.array([-1], np.int64),
         "en": np.array([-(2 ** 63)], np.int64), "ax": np.array([0], np.int64),
         "flat": np.array([-1], np.int64), "v": np.float32(0.5)}
    zero = numpy_helper.from_array(np.zeros(1, np.int64))
    nodes = [helper.make_node("ConstantOfShape", ["n"], ["z"], value=zero),
             helper.make_node("Concat", ["p", "z"], ["c"], axis=0),
             helper.make_node("Reshape", ["c", "sh"], ["r"]),
             helper.make_node("Slice", ["r", "st", "en", "ax", "st"], ["s"]),
             helper.make_node("Transpose", ["s"], ["t"], perm=[1, 0]),
             helper.make_node("Reshape", ["t", "flat"], ["f"]),
             helper.make_node("Cast", ["f"], ["pads"], to=TensorProto.INT64),
             helper.make_node("Pad", ["x", "pads", "v"], ["y"], mode="constant")]
    model = _model(nodes, (C, H, W), k, opset=13)
    check(workdir, log_error, "Pad of a constant chain", model, _input((C, H, W), 0))


@pytest.mark.parametrize("source", ["constant shape", "traced shape"])
def test_constant_of_shape_keeps_its_value(workdir, log_error, source):
    """A ConstantOfShape that is no placeholder weight holds its value (it was replaced by
    seeded random numbers): a pad value from a constant shape, a fill of the image's shape
    (read off the image: never a weight) added to it."""
    fill = numpy_helper.from_array(np.array([0.25], np.float32))
    if source == "constant shape":
        inits = {"one": np.array([1], np.int64), "scalar": np.array([], np.int64), "pads": _PADS}
        nodes = [helper.make_node("ConstantOfShape", ["one"], ["v"], value=fill),
                 helper.make_node("Reshape", ["v", "scalar"], ["value"]),
                 helper.make_node("Pad", ["x", "pads", "value"], ["y"], mode="constant")]
    else:
        inits = {}
        nodes = [helper.make_node("Shape", ["x"], ["shape"]),
                 helper.make_node("ConstantOfShape", ["shape"], ["fill"], value=fill),
                 helper.make_node("Add", ["x", "fill"], ["y"])]
    model = _model(nodes, (C, H, W), inits)
    check(workdir, log_error, f"ConstantOfShape {source}", model, _input((C, H, W), 0))
