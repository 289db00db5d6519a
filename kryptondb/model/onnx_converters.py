"""ONNX operators -> IR nodes: one converter per op type, ``CONVERTERS[op_type](ctx, node,
attributes)``, each checking what it reads (onnx_checks.py) and adding its IR nodes to the
import's context (onnx_import.py: ``ctx.add``, ``ctx.weight``, the constants, shapes and aliases
of the tensors converted so far)."""

from __future__ import annotations

import math

import numpy as np

from kryptondb.errors import ModelImportError, ShapeError, UnsupportedOpError
from kryptondb.model import onnx_checks as check
from kryptondb.graph.fold import bn_scale_shift
from kryptondb.graph.ir import POINTWISE, Op, make_node
from kryptondb.model.onnx_checks import label as _label


def _x(ctx, n, i=0, channels_last: bool = False) -> str:
    """The IR name of activation input ``i``; ``channels_last``: the converter also takes a
    channels-last (NHWC) tensor (see onnx_layout.py)."""
    t = n.input[i]
    if ctx.is_const(t):
        raise UnsupportedOpError(f"{n.op_type} node {_label(n)!r}: input {i} must be "
                                 "computed from the image, not a constant")
    if t in ctx.nhwc and not channels_last:
        raise UnsupportedOpError(
            f"{n.op_type} node {_label(n)!r}: input {i} is a channels-last (NHWC) tensor; on "
            "those only pointwise ops, MatMul, LayerNormalization, ReduceMean and the "
            "Transpose back to NCHW are supported")
    name = ctx.name(t)
    if name not in ctx.shapes:
        raise ModelImportError(f"node {_label(n)!r} reads {t!r}, never computed")
    return name


def keep_layout(ctx, n) -> None:
    """An op that maps each element on its own: its output is channels-last if its
    activation inputs are (all of them, or none)."""
    acts = [t for t in n.input if t and not ctx.is_const(t)]
    last = [t in ctx.nhwc for t in acts]
    if any(last) and not all(last):
        raise UnsupportedOpError(f"{n.op_type} node {_label(n)!r} mixes channels-last (NHWC) and "
                                 "NCHW inputs")
    if any(last):
        ctx.nhwc.add(n.output[0])


def _pads(n, a, kernel, stride, dil, hw):
    auto = check.auto_pad(n, a)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(hw, kernel, stride, dil):
            total = max(0, (math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads.append((lo, total - lo))
        return (pads[0][0], pads[1][0], pads[0][1], pads[1][1])
    if auto == "VALID":
        return (0, 0, 0, 0)
    return check.ints(n, a, "pads", 4, 0, default=(0, 0, 0, 0))


def _window(ctx, n, a, kernel):
    x = _x(ctx, n)
    if len(kernel) != 2:
        raise UnsupportedOpError(f"{n.op_type} {_label(n)!r}: only 2-D windows are supported")
    kernel = check.ints(n, {"kernel_shape": list(kernel)}, "kernel_shape", 2, 1)
    stride = check.ints(n, a, "strides", 2, 1, default=(1, 1))
    dil = check.ints(n, a, "dilations", 2, 1, default=(1, 1))
    pads = _pads(n, a, kernel, stride, dil, ctx.shapes[x][1:])
    return x, dict(kernel=kernel, stride=stride, pads=pads, dilation=dil)


def _conv(ctx, n, a):
    w = check.kernel(ctx, n, a)
    out = n.output[0]
    b = check.optional(ctx, n, 2, "bias")
    b = np.zeros(w.shape[0]) if b is None else check.sized(n, b, w.shape[0], "the bias")
    x, win = _window(ctx, n, a, w.shape[2:])
    params = (ctx.weight(f"{out}.weight", w), ctx.weight(f"{out}.bias", b))
    ctx.add(make_node(out, Op.CONV, [x], params, groups=check.ints(n, a, "group", 1, 1, 1)[0],
                      **win))


def _bn(ctx, n, a):
    x = _x(ctx, n)
    channels = ctx.shapes[x][0]
    gamma, beta, mean, var = (check.sized(n, check.constant(ctx, n, i, what), channels, what)
                              for i, what in enumerate(("scale", "bias", "mean", "var"), 1))
    scale, shift = bn_scale_shift(gamma, beta, mean, var, a.get("epsilon", 1e-5))
    out = n.output[0]
    params = (ctx.weight(f"{out}.scale", scale), ctx.weight(f"{out}.shift", shift))
    ctx.add(make_node(out, Op.BATCHNORM, [x], params))


def _pool(op):
    def convert(ctx, n, a):
        if len([o for o in n.output if o]) > 1:
            raise UnsupportedOpError(f"MaxPool {_label(n)!r} with an indices output is not supported")
        if "kernel_shape" not in a:
            raise check.malformed(n, "attribute kernel_shape is missing")
        x, win = _window(ctx, n, a, tuple(a["kernel_shape"]))
        if any(p >= k for p, k in zip(win["pads"], win["kernel"] * 2)):
            raise check.malformed(n, f"pads {list(win['pads'])} must be smaller than the kernel "
                                  f"{list(win['kernel'])}")
        extra = {"count_include_pad": a.get("count_include_pad", 0)} if op is Op.AVGPOOL else {}
        if op is Op.AVGPOOL and win["dilation"] != (1, 1):
            raise UnsupportedOpError(f"AveragePool {_label(n)!r}: dilation is not supported")
        ctx.add(make_node(n.output[0], op, [x], ceil_mode=a.get("ceil_mode", 0), **win, **extra))
    return convert


def _unary(op, **defaults):
    def convert(ctx, n, a):
        attrs = {k: float(a.get(k, v)) for k, v in defaults.items()}
        ctx.add(make_node(n.output[0], op, [_x(ctx, n, channels_last=op in POINTWISE)], **attrs))
        keep_layout(ctx, n)
    return convert


def _clip(ctx, n, a):
    lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
    if len(n.input) > 1 and n.input[1]:
        lo = check.scalar(n, check.constant(ctx, n, 1, "min"), "min")
    if len(n.input) > 2 and n.input[2]:
        hi = check.scalar(n, check.constant(ctx, n, 2, "max"), "max")
    ctx.add(make_node(n.output[0], Op.CLIP, [_x(ctx, n, channels_last=True)], min=float(lo),
                      max=float(hi)))
    keep_layout(ctx, n)


def _per_sample_const(ctx, t: str, rank: int, channels_last: bool = False) -> np.ndarray:
    """A constant operand as it broadcasts over one sample (the batch axis dropped); met by a
    channels-last activation, in NCHW order."""
    c = np.asarray(ctx.consts[t], np.float32)
    if c.ndim > rank + 1:  # it would add axes in front of the batch axis
        raise ShapeError(f"constant {t!r} of shape {list(c.shape)} has more axes than the "
                         f"activation it meets (batch and {rank})")
    if c.ndim > rank:  # drop the batch axis of a full-rank constant
        if c.shape[0] != 1:
            raise ShapeError(f"constant {t!r} of shape {list(c.shape)} varies along the batch")
        c = c[0]
    if channels_last:
        c = c.reshape((1,) * (3 - c.ndim) + c.shape).transpose(2, 0, 1)
    return c


def _arith(kind):
    def convert(ctx, n, a):
        xs = [_x(ctx, n, i, True) for i, t in enumerate(n.input) if not ctx.is_const(t)]
        if not xs:
            raise UnsupportedOpError(f"{n.op_type} {_label(n)!r} has only constant inputs")
        keep_layout(ctx, n)
        rank, last = len(ctx.shapes[xs[0]]), n.output[0] in ctx.nhwc
        consts = [_per_sample_const(ctx, t, rank, last) for t in n.input if ctx.is_const(t)]
        if kind in ("Sub", "Div") and (ctx.is_const(n.input[0]) or len(xs) != 1):
            raise UnsupportedOpError(f"{kind} {_label(n)!r}: only activation {kind} constant is "
                                     "supported")
        if kind == "Sub":
            consts = [-c for c in consts]
        if kind == "Div":
            consts = [1.0 / c for c in consts]
        op = Op.MUL if kind in ("Mul", "Div") else Op.ADD
        out = n.output[0]
        params = [ctx.weight(f"{out}.const{i}", c) for i, c in enumerate(consts)]
        ctx.add(make_node(out, op, xs, params))
    return convert


def _concat(ctx, n, a):
    xs = [_x(ctx, n, i) for i in range(len(n.input))]
    if not xs:
        raise check.malformed(n, "has no inputs")
    axis = check.axis(n, a.get("axis", 1), len(ctx.shapes[xs[0]]) + 1)
    if axis == 0:
        raise UnsupportedOpError(f"Concat {_label(n)!r} along the batch axis is not supported")
    ctx.add(make_node(n.output[0], Op.CONCAT, xs, axis=axis - 1))


def _gemm(ctx, n, a):
    if a.get("transA", 0):
        raise UnsupportedOpError(f"Gemm {_label(n)!r} with transA=1 is not supported")
    b = _matrix(ctx, n) * a.get("alpha", 1.0)
    w = b if a.get("transB", 0) else b.T
    c = check.optional(ctx, n, 2, "C")
    c = np.zeros(w.shape[0]) if c is None else np.asarray(c, np.float32).reshape(-1)
    if c.size not in (1, w.shape[0]):
        raise check.malformed(n, f"C has {c.size} values for {w.shape[0]} outputs")
    bias = np.broadcast_to(c * a.get("beta", 1.0), w.shape[:1])
    out = n.output[0]
    params = (ctx.weight(f"{out}.weight", w), ctx.weight(f"{out}.bias", bias))
    ctx.add(make_node(out, Op.GEMM, [_flat_input(ctx, n)], params))


def _flat_input(ctx, n) -> str:
    x = _x(ctx, n)
    if len(ctx.shapes[x]) == 1:
        return x
    if math.prod(ctx.shapes[x][1:]) != 1:
        raise ShapeError(f"{n.op_type} {_label(n)!r} needs a flat input, got {list(ctx.shapes[x])}")
    flat = f"{x}::flat"
    if flat not in ctx.shapes:
        ctx.add(make_node(flat, Op.FLATTEN, [x]))
    return flat


def _matrix(ctx, n) -> np.ndarray:
    b = np.asarray(check.constant(ctx, n, 1, "B"), np.float32)
    if b.ndim != 2:
        raise UnsupportedOpError(f"{n.op_type} {_label(n)!r}: only a 2-D constant B is supported, "
                                 f"got shape {list(b.shape)}")
    return b


def _matmul(ctx, n, a):
    w = _matrix(ctx, n).T
    out = n.output[0]
    params = (ctx.weight(f"{out}.weight", w), ctx.weight(f"{out}.bias", np.zeros(w.shape[0])))
    ctx.add(make_node(out, Op.GEMM, [_flat_input(ctx, n)], params))


def _flatten(ctx, n, a):
    if a.get("axis", 1) != 1:
        raise UnsupportedOpError(f"Flatten {_label(n)!r}: only axis=1 is supported")
    ctx.add(make_node(n.output[0], Op.FLATTEN, [_x(ctx, n)]))


def _reshape(ctx, n, a):
    x = _x(ctx, n)
    shape = ctx.shapes[x]
    target = check.int_vector(n, check.constant(ctx, n, 1, "shape"), "the shape (input 1)")
    if not target:
        raise check.malformed(n, "the target shape is empty")
    per = [shape[i] if d == 0 and i < len(shape) else d for i, d in enumerate(target[1:])]
    if -1 in per:
        known = math.prod(d for d in per if d != -1)
        per[per.index(-1)] = math.prod(shape) // max(known, 1)
    if target[0] == -1 and math.prod(per) != math.prod(shape):
        raise UnsupportedOpError(f"Reshape {_label(n)!r} folds the batch axis into features")
    per = tuple(per)
    if per == shape:
        ctx.alias[n.output[0]] = x
    elif len(per) == 1:
        ctx.add(make_node(n.output[0], Op.FLATTEN, [x]))
    else:
        ctx.add(make_node(n.output[0], Op.RESHAPE, [x], shape=per))


def _softmax(ctx, n, a):
    x = _x(ctx, n)
    shape = ctx.shapes[x]
    axis = check.axis(n, a.get("axis", 1 if ctx.opset < 13 else -1), len(shape) + 1)
    if axis == 0:
        raise UnsupportedOpError(f"Softmax {_label(n)!r} along the batch axis is not supported")
    per = axis - 1
    if ctx.opset < 13:  # softmax over the flattened trailing dims: fine when only one is > 1
        big = [i for i in range(per, len(shape)) if shape[i] > 1]
        if len(big) > 1:
            raise UnsupportedOpError(f"Softmax {_label(n)!r} over several axes is not supported")
        per = big[0] if big else per
    ctx.add(make_node(n.output[0], Op.SOFTMAX, [x], axis=per))


def _pad(ctx, n, a):
    mode = a.get("mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
        raise UnsupportedOpError(f"Pad {_label(n)!r}: only constant padding is supported")
    pads = list(a["pads"]) if "pads" in a else \
        check.int_vector(n, check.constant(ctx, n, 1, "pads"), "the pads (input 1)")
    value = a.get("value", 0.0)
    if len(n.input) > 2 and n.input[2]:
        value = check.scalar(n, check.constant(ctx, n, 2, "value"), "the pad value")
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
        raise UnsupportedOpError(f"Pad {_label(n)!r}: only spatial padding of NCHW is supported")
    if any(p < 0 for p in pads):  # ONNX crops there; the PAD op and its kernels only grow
        raise UnsupportedOpError(f"Pad {_label(n)!r}: negative (cropping) pads {pads} are not "
                                 "supported")
    ctx.add(make_node(n.output[0], Op.PAD, [_x(ctx, n)], pads=(pads[2], pads[3], pads[6],
                      pads[7]), value=float(value)))


def _lrn_size(n, a) -> int:
    size = check.ints(n, a, "size", 1, 1)[0]
    if size % 2 == 0:
        raise check.malformed(n, f"size {size} must be odd")
    return size


def _identity(ctx, n, a):
    ctx.alias[n.output[0]] = _x(ctx, n, channels_last=True)
    keep_layout(ctx, n)


CONVERTERS = {
    "Conv": _conv,
    "BatchNormalization": _bn,
    "Relu": _unary(Op.RELU),
    "Sigmoid": _unary(Op.SIGMOID),
    "LeakyRelu": _unary(Op.LEAKY_RELU, alpha=0.01),
    "HardSigmoid": _unary(Op.HARD_SIGMOID, alpha=0.2, beta=0.5),
    "HardSwish": _unary(Op.HARD_SWISH),
    "Clip": _clip,
    "Mul": _arith("Mul"),
    "Add": _arith("Add"),
    "Sum": _arith("Add"),
    "Sub": _arith("Sub"),
    "Div": _arith("Div"),
    "MaxPool": _pool(Op.MAXPOOL),
    "AveragePool": _pool(Op.AVGPOOL),
    "GlobalAveragePool": _unary(Op.GLOBAL_AVGPOOL),
    "LRN": lambda ctx, n, a: ctx.add(make_node(
        n.output[0], Op.LRN, [_x(ctx, n)], size=_lrn_size(n, a), alpha=float(a.get("alpha", 1e-4)),
        beta=float(a.get("beta", 0.75)), bias=float(a.get("bias", 1.0)))),
    "Concat": _concat,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Softmax": _softmax,
    "Pad": _pad,
    "Dropout": _identity,
    "Identity": _identity,
}
