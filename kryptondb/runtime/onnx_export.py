"""Graph -> ONNX, so onnxruntime can run a whole model, a segment or one operator.

The exported model has a symbolic batch axis ``N``; weights become initializers, or, from a
given size on, extra graph inputs the caller feeds at every run (so no copy of them is made).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from kryptondb.graph.ir import Graph, Node, Op
from kryptondb.graph.ops import fed_shape
from kryptondb.graph.resample import Taps, node_taps
from kryptondb.runtime.base import NHWC, nhwc_source

if TYPE_CHECKING:
    import onnx

OPSET = 17
IR_VERSION = 8  # onnxruntime 1.31 accepts IR <= 13; 8 is the IR of opset 17


class _Emitter:
    def __init__(self, graph: Graph, fed_from: int | None = None):
        self.graph, self.nodes, self.inits, self.seen = graph, [], [], set()
        self.fed_from, self.fed = fed_from, {}

    def const(self, name: str, value) -> str:
        if name not in self.seen:
            from onnx import numpy_helper  # onnx costs ~55 ms to import; only exports need it

            self.seen.add(name)
            self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, key: str, shape=None) -> str:
        arr = self.graph.weights[key]
        tag = f"{key}" if shape is None else f"{key}::{'x'.join(map(str, shape))}"
        if self.fed_from is not None and arr.nbytes >= self.fed_from:
            self.fed[tag] = arr.shape if shape is None else tuple(shape)
            return tag
        return self.const(tag, arr if shape is None else arr.reshape(shape))

    def emit(self, op: str, inputs, output: str, **attrs) -> str:
        from onnx import helper  # onnx costs ~55 ms to import; only exports need it

        self.nodes.append(helper.make_node(op, list(inputs), [output], **attrs))
        return output


def weight_arrays(graph: Graph, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The initializers and fed inputs of ``model`` (exported from ``graph``) that are the
    graph's weights, as the graph's own arrays (reshaped views where the export reshaped
    them): a session can borrow these instead of keeping a copy."""
    out = {}
    for name in [i.name for i in model.graph.initializer] + [i.name for i in model.graph.input]:
        key, _, shape = name.partition("::")  # names as _Emitter.weight writes them
        arr = graph.weights.get(key)
        if arr is not None:
            out[name] = arr.reshape([int(v) for v in shape.split("x")]) if shape else arr
    return out


def _window_attrs(node: Node) -> dict:
    return dict(kernel_shape=list(node.attr("kernel")), strides=list(node.attr("stride")),
                pads=_onnx_pads(node.attr("pads")))


def _onnx_pads(pads):
    pt, pl, pb, pr = pads
    return [pt, pl, pb, pr]


def _emit_node(e: _Emitter, n: Node) -> None:
    x, out = list(n.inputs), n.name
    if n.op is Op.CONV:
        e.emit("Conv", [x[0], e.weight(n.params[0]), e.weight(n.params[1])], out,
               dilations=list(n.attr("dilation", (1, 1))), group=n.attr("groups", 1),
               **_window_attrs(n))
    elif n.op is Op.BATCHNORM:
        c = e.graph.weights[n.params[0]].shape[0]
        mid = e.emit("Mul", [x[0], e.weight(n.params[0], (c, 1, 1))], out + "::scaled")
        e.emit("Add", [mid, e.weight(n.params[1], (c, 1, 1))], out)
    elif n.op is Op.CLIP:
        lo = e.const(f"{out}::min", np.float32(n.attr("min")))
        hi = e.const(f"{out}::max", np.float32(n.attr("max")))
        e.emit("Clip", [x[0], lo, hi], out)
    elif n.op in (Op.ADD, Op.MUL):
        terms = x + [e.weight(p) for p in n.params]
        acc = terms[0]
        for k, t in enumerate(terms[1:]):
            acc = e.emit(n.op.value, [acc, t], out if k == len(terms) - 2 else f"{out}::{k}")
    elif n.op is Op.MAXPOOL:
        _emit_pool(e, n, "MaxPool", x, out, dilations=list(n.attr("dilation", (1, 1))))
    elif n.op is Op.AVGPOOL:
        _emit_pool(e, n, "AveragePool", x, out, count_include_pad=n.attr("count_include_pad", 0))
    else:
        _emit_simple(e, n, x, out)


def _emit_pool(e: _Emitter, n: Node, op: str, x, out, **attrs) -> None:
    """A ceil-mode pool whose last window would start past the input and its end padding
    (kernel smaller than stride): onnxruntime computes our size, but ONNX shape inference
    still counts that window, and a later Add/Mul with a map of the true size fails to load.
    A Slice to the true size (a no-op at run time) makes the static shape agree."""
    ceil = n.attr("ceil_mode", 0)
    static = _onnx_ceil_size(e.graph[x[0]].shape[1:], n) if ceil else n.shape[1:]
    if tuple(static) == tuple(n.shape[1:]):
        e.emit(op, x, out, ceil_mode=ceil, **attrs, **_window_attrs(n))
        return
    pooled = e.emit(op, x, f"{out}::ceil", ceil_mode=ceil, **attrs, **_window_attrs(n))
    zeros = e.const(f"{out}::starts", np.zeros(2, np.int64))
    ends = e.const(f"{out}::ends", np.array(n.shape[1:], np.int64))
    e.emit("Slice", [pooled, zeros, ends, e.const(f"{out}::axes", np.array([2, 3], np.int64))],
           out)


def _onnx_ceil_size(in_hw, n: Node) -> tuple[int, int]:
    """The output size ONNX shape inference gives a ceil-mode pool: every started window."""
    pads, dil = n.attr("pads"), n.attr("dilation", (1, 1))
    return tuple(-(-(in_hw[i] + pads[i] + pads[i + 2] - dil[i] * (n.attr("kernel")[i] - 1) - 1)
                   // n.attr("stride")[i]) + 1 for i in range(2))


def _emit_simple(e: _Emitter, n: Node, x, out) -> None:
    if n.op is Op.GEMM:
        e.emit("Gemm", [x[0], e.weight(n.params[0]), e.weight(n.params[1])], out, transB=1)
    elif n.op is Op.LEAKY_RELU:
        e.emit("LeakyRelu", x, out, alpha=float(n.attr("alpha")))
    elif n.op is Op.HARD_SIGMOID:
        e.emit("HardSigmoid", x, out, alpha=float(n.attr("alpha")), beta=float(n.attr("beta")))
    elif n.op is Op.LRN:
        e.emit("LRN", x, out, size=n.attr("size"), alpha=float(n.attr("alpha")),
               beta=float(n.attr("beta")), bias=float(n.attr("bias")))
    elif n.op is Op.CONCAT:
        e.emit("Concat", x, out, axis=n.attr("axis") + 1)
    elif n.op is Op.SOFTMAX:
        e.emit("Softmax", x, out, axis=n.attr("axis") + 1)
    elif n.op is Op.FLATTEN:
        e.emit("Flatten", x, out, axis=1)
    elif n.op is Op.RESHAPE:
        e.emit("Reshape", [x[0], e.const(f"{out}::shape", np.array([0, *n.shape], np.int64))], out)
    elif n.op is Op.PAD:
        pt, pl, pb, pr = n.attr("pads")
        pads = e.const(f"{out}::pads", np.array([0, 0, pt, pl, 0, 0, pb, pr], np.int64))
        val = e.const(f"{out}::value", np.float32(n.attr("value", 0.0)))
        e.emit("Pad", [x[0], pads, val], out)
    elif n.op is Op.CHANNEL_SHUFFLE:
        _emit_shuffle(e, n, x[0], out)
    elif n.op in _EMITTERS:
        _EMITTERS[n.op](e, n, x[0], out)
    else:  # Relu, Sigmoid, HardSwish, GlobalAveragePool: no attributes
        e.emit(n.op.value, x, out)


def _emit_shuffle(e: _Emitter, n: Node, x: str, out: str) -> None:
    c, h, w = e.graph[x].shape
    g = n.attr("groups")
    split = e.const(f"{out}::split", np.array([0, g, c // g, h, w], np.int64))
    back = e.const(f"{out}::back", np.array([0, c, h, w], np.int64))
    a = e.emit("Reshape", [x, split], f"{out}::5d")
    b = e.emit("Transpose", [a], f"{out}::t", perm=[0, 2, 1, 3, 4])
    e.emit("Reshape", [b, back], out)


def _emit_conv_transpose(e: _Emitter, n: Node, x: str, out: str) -> None:
    """Dilation is written into the kernel (zeros between its taps): ONNX shape inference
    sizes a dilated ConvTranspose as if undilated, and onnxruntime then refuses the graph."""
    dil, weight = n.attr("dilation", (1, 1)), e.weight(n.params[0])
    kernel = n.attr("kernel")
    if dil != (1, 1):
        w = e.graph.weights[n.params[0]]
        kernel = tuple(d * (k - 1) + 1 for d, k in zip(dil, kernel))
        spread = np.zeros(w.shape[:2] + kernel, np.float32)
        spread[:, :, ::dil[0], ::dil[1]] = w
        weight = e.const(f"{n.params[0]}@dilated", spread)  # not a weight_arrays name
    e.emit("ConvTranspose", [x, weight, e.weight(n.params[1])], out, group=n.attr("groups", 1),
           output_padding=list(n.attr("output_padding", (0, 0))), kernel_shape=list(kernel),
           strides=list(n.attr("stride")), pads=_onnx_pads(n.attr("pads")))


def _emit_resize(e: _Emitter, n: Node, x: str, out: str) -> None:
    """A Resize op where onnxruntime's sizes and coordinates are the node's: by scales where
    the output size (input times scale, truncated; in float32 at run time, in float64 by ONNX
    shape inference) is the node's, by sizes where the node's scale is output / input (what
    onnxruntime then takes). Otherwise (a scale whose product ONNX shape inference truncates
    differently) the node's own taps, as Gathers and weights."""
    attrs = dict(mode=n.attr("mode"), coordinate_transformation_mode=n.attr("coord"),
                 nearest_mode=n.attr("nearest", "floor"))
    (_, h, w), scale, size = e.graph[x].shape, n.attr("scale"), n.attr("size")
    f32 = [np.float32(v) for v in scale]
    if all(int(np.float32(i) * s) == int(i * float(s)) == o for i, s, o in zip((h, w), f32, size)):
        scales = e.const(f"{out}::scales", np.array([1, 1, *scale], np.float32))
        e.emit("Resize", [x, "", scales], out, **attrs)
    elif all(np.float32(o) / np.float32(i) == s for i, s, o in zip((h, w), f32, size)):
        shape = e.emit("Shape", [x], f"{out}::shape")
        nc = e.emit("Slice", [shape, e.const(f"{out}::0", np.array([0], np.int64)),
                              e.const(f"{out}::2", np.array([2], np.int64))], f"{out}::nc")
        hw = e.const(f"{out}::hw", np.array(size, np.int64))
        sizes = e.emit("Concat", [nc, hw], f"{out}::sizes", axis=0)
        e.emit("Resize", [x, "", "", sizes], out, **attrs)
    else:
        rows, cols = node_taps(n, (h, w))
        _emit_taps(e, _emit_taps(e, x, rows, 2, f"{out}::rows"), cols, 3, out)


def _emit_taps(e: _Emitter, x: str, t: Taps, axis: int, out: str) -> str:
    """x resampled along ``axis`` at taps ``t``: lo + (hi - lo) * weight, as numpy_ops does."""
    lo = e.emit("Gather", [x, e.const(f"{out}::lo", t.lo)], f"{out}::at_lo" if t.weight is not
                None else out, axis=axis)
    if t.weight is None:
        return lo
    hi = e.emit("Gather", [x, e.const(f"{out}::hi", t.hi)], f"{out}::at_hi", axis=axis)
    weight = t.weight.reshape((-1, 1) if axis == 2 else (-1,))
    step = e.emit("Mul", [e.emit("Sub", [hi, lo], f"{out}::diff"), e.const(f"{out}::w", weight)],
                  f"{out}::step")
    return e.emit("Add", [lo, step], out)


def _emit_layernorm(e: _Emitter, n: Node, x: str, out: str) -> None:
    """LayerNormalization normalises trailing axes: over C of a C x H x W map it runs on the
    channels-last layout, as PyTorch exports ConvNeXt's norm."""
    eps = float(n.attr("eps"))
    scale, shift = e.weight(n.params[0]), e.weight(n.params[1])
    if len(n.shape) == 1:
        e.emit("LayerNormalization", [x, scale, shift], out, axis=-1, epsilon=eps)
        return
    last = e.emit("Transpose", [x], f"{out}::nhwc", perm=[0, 2, 3, 1])
    normed = e.emit("LayerNormalization", [last, scale, shift], f"{out}::normed", axis=-1,
                    epsilon=eps)
    e.emit("Transpose", [normed], out, perm=[0, 3, 1, 2])


def _emit_gelu(e: _Emitter, n: Node, x: str, out: str) -> None:
    """x * 0.5 * (1 + erf(x / sqrt 2)), or its tanh approximation (no Gelu op before opset
    20)."""
    c = lambda k, v: e.const(f"{out}::{k}", np.float32(v))  # noqa: E731
    if n.attr("approximate", "none") == "tanh":
        cube = e.emit("Mul", [x, e.emit("Mul", [x, x], f"{out}::sq")], f"{out}::cube")
        inner = e.emit("Add", [x, e.emit("Mul", [cube, c("k", 0.044715)], f"{out}::kc")],
                       f"{out}::inner")
        arg = e.emit("Mul", [inner, c("r", np.sqrt(2 / np.pi))], f"{out}::arg")
        curve = e.emit("Tanh", [arg], f"{out}::curve")
    else:
        curve = e.emit("Erf", [e.emit("Mul", [x, c("r", 1 / np.sqrt(2))], f"{out}::arg")],
                       f"{out}::curve")
    gate = e.emit("Add", [curve, c("one", 1.0)], f"{out}::gate")
    e.emit("Mul", [e.emit("Mul", [x, gate], f"{out}::xg"), c("half", 0.5)], out)


_EMITTERS = {Op.CONV_TRANSPOSE: _emit_conv_transpose, Op.RESIZE: _emit_resize,
             Op.LAYERNORM: _emit_layernorm, Op.GELU: _emit_gelu}


def _value_info(name: str, shape) -> onnx.ValueInfoProto:
    from onnx import TensorProto, helper  # onnx costs ~55 ms to import; only exports need it

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])


def onnx_input(node: Node) -> str:
    """The exported model's input for a graph input: a channels-last one is fed under its
    own name + NHWC and transposed to the graph's name inside the model."""
    return node.name + NHWC if node.attr("channels_last") else node.name


def _asked_shape(graph: Graph, output: str) -> tuple[int, ...]:
    """An output's per-sample shape as asked for: (H, W, C) for an NHWC one."""
    if src := nhwc_source(graph, output):
        c, h, w = graph[src].shape
        return (h, w, c)
    return graph[output].shape


def to_onnx(graph: Graph, outputs: Sequence[str] | None = None,
            fed_from: int | None = None) -> onnx.ModelProto:
    """An ONNX model computing ``outputs`` (default: the graph's) with a batch axis ``N``;
    weights of ``fed_from`` bytes or more become graph inputs after the graph's own (the
    caller feeds them: ``weight_arrays``) instead of initializers."""
    from onnx import TensorProto, helper  # onnx costs ~55 ms to import; only exports need it

    e = _Emitter(graph, fed_from)
    ins = [graph[i] for i in graph.inputs]
    for n in ins:
        if n.attr("channels_last"):  # folded into onnxruntime's NCHWc ReorderInput
            e.emit("Transpose", [onnx_input(n)], n.name, perm=[0, 3, 1, 2])
    for n in graph.nodes:
        if n.op is not Op.INPUT:
            _emit_node(e, n)
    outs = list(outputs or graph.outputs)
    for o in outs:  # an NHWC output: folded into onnxruntime's NCHWc ReorderOutput
        if src := nhwc_source(graph, o):
            e.emit("Transpose", [src], o, perm=[0, 2, 3, 1])
    fed = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v)) for k, v in e.fed.items()]
    g = helper.make_graph(
        e.nodes, graph.name or "kryptondb",
        [_value_info(onnx_input(n), fed_shape(n)) for n in ins] + fed,
        [_value_info(o, _asked_shape(graph, o)) for o in outs], e.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kryptondb")
    model.ir_version = IR_VERSION
    return model
