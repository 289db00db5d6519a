"""Shape inference and cost figures, one function per op kind.

The window arithmetic here (``window_out``) is the single source of truth for output sizes: the
importer, the zoo, the backends and the describe table all ask it.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from kryptondb.errors import ShapeError
from kryptondb.graph.ops import GLOBAL, Node, Op

Shape = tuple[int, ...]


def window_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int,
               dilation: int = 1, ceil: bool = False) -> int:
    """Output length of a sliding window along one axis (PyTorch/ONNX ceil-mode rule)."""
    span = size + pad_lo + pad_hi - (dilation * (kernel - 1) + 1)
    if span < 0:
        raise ShapeError(f"window of {kernel} (dilation {dilation}) does not fit input {size}")
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + pad_lo:
        out -= 1  # the last window would start inside the bottom/right padding only
    return out


def _spatial(node: Node, shape: Shape, channels: int) -> Shape:
    if len(shape) != 3:
        raise ShapeError(f"{node.op.value} {node.name!r} needs a CxHxW input, got {list(shape)}")
    kh, kw = node.attr("kernel")
    sh, sw = node.attr("stride")
    pt, pl, pb, pr = node.attr("pads")
    dh, dw = node.attr("dilation", (1, 1))
    ceil = bool(node.attr("ceil_mode", 0))
    return (channels, window_out(shape[1], kh, sh, pt, pb, dh, ceil),
            window_out(shape[2], kw, sw, pl, pr, dw, ceil))


def _conv(node, shapes, w):
    weight = w[node.params[0]]
    cin, groups = shapes[0][0], node.attr("groups", 1)
    if weight.shape[1] * groups != cin or weight.shape[0] % groups:
        raise ShapeError(
            f"Conv {node.name!r}: weight {list(weight.shape)} with groups={groups} does not fit "
            f"{cin} input channels")
    return _spatial(node, shapes[0], weight.shape[0])


def _broadcast(node, shapes, w):
    consts = [w[p].shape for p in node.params]
    try:
        return tuple(np.broadcast_shapes(*shapes, *consts))
    except ValueError:
        raise ShapeError(f"{node.op.value} {node.name!r}: shapes {[list(s) for s in shapes]} "
                         "do not broadcast") from None


def _concat(node, shapes, w):
    axis = node.attr("axis")
    rest = {s[:axis] + s[axis + 1:] for s in shapes}
    if len(rest) != 1:
        raise ShapeError(f"Concat {node.name!r}: inputs {[list(s) for s in shapes]} differ "
                         f"off axis {axis + 1}")
    s = shapes[0]
    return s[:axis] + (sum(x[axis] for x in shapes),) + s[axis + 1:]


def _gemm(node, shapes, w):
    weight = w[node.params[0]]
    if shapes[0] != (weight.shape[1],):
        raise ShapeError(f"Gemm {node.name!r}: input {list(shapes[0])} does not fit weight "
                         f"{list(weight.shape)}; flatten first")
    return (weight.shape[0],)


def _reshape(node, shapes, w):
    target = node.attr("shape")
    if math.prod(target) != math.prod(shapes[0]):
        raise ShapeError(f"Reshape {node.name!r}: {list(shapes[0])} cannot become {list(target)}")
    return tuple(target)


def _pad(node, shapes, w):
    c, h, wd = shapes[0]
    pt, pl, pb, pr = node.attr("pads")
    return (c, h + pt + pb, wd + pl + pr)


def transposed_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int,
                   dilation: int = 1, output_padding: int = 0) -> int:
    """Output length of a transposed convolution along one axis (ONNX ConvTranspose)."""
    out = stride * (size - 1) + output_padding + dilation * (kernel - 1) + 1 - pad_lo - pad_hi
    if out < 1:
        raise ShapeError(f"transposed convolution of {size} (kernel {kernel}, stride {stride}, "
                         f"pads {pad_lo}, {pad_hi}) has no output")
    return out


def _conv_transpose(node, shapes, w):
    weight = w[node.params[0]]
    (cin, h, wd), groups = shapes[0], node.attr("groups", 1)
    if weight.shape[0] != cin or cin % groups:
        raise ShapeError(f"ConvTranspose {node.name!r}: weight {list(weight.shape)} with "
                         f"groups={groups} does not fit {cin} input channels")
    (kh, kw), (sh, sw) = node.attr("kernel"), node.attr("stride")
    pt, pl, pb, pr = node.attr("pads")
    (dh, dw), (oh, ow) = node.attr("dilation", (1, 1)), node.attr("output_padding", (0, 0))
    return (weight.shape[1] * groups, transposed_out(h, kh, sh, pt, pb, dh, oh),
            transposed_out(wd, kw, sw, pl, pr, dw, ow))


def _per_channel(node, shapes, w):
    c = shapes[0][0]
    for p in node.params:
        if w[p].shape != (c,):
            raise ShapeError(f"{node.op.value} {node.name!r}: {p!r} of shape {list(w[p].shape)} "
                             f"is not one value per channel ({c})")
    return shapes[0]


def _same(node, shapes, w):
    return shapes[0]


_RULES: dict[Op, Callable[[Node, Sequence[Shape], Mapping], Shape]] = {
    Op.INPUT: lambda n, s, w: tuple(n.attr("shape")),
    Op.CONV: _conv,
    Op.MAXPOOL: lambda n, s, w: _spatial(n, s[0], s[0][0]),
    Op.AVGPOOL: lambda n, s, w: _spatial(n, s[0], s[0][0]),
    Op.GLOBAL_AVGPOOL: lambda n, s, w: (s[0][0], 1, 1),
    Op.ADD: _broadcast,
    Op.MUL: _broadcast,
    Op.CONCAT: _concat,
    Op.GEMM: _gemm,
    Op.FLATTEN: lambda n, s, w: (math.prod(s[0]),),
    Op.RESHAPE: _reshape,
    Op.PAD: _pad,
    Op.CONV_TRANSPOSE: _conv_transpose,
    Op.RESIZE: lambda n, s, w: (s[0][0], *n.attr("size")),
    Op.LAYERNORM: _per_channel,
}


def infer_shape(node: Node, shapes: Sequence[Shape], weights: Mapping[str, np.ndarray]) -> Shape:
    return _RULES.get(node.op, _same)(node, shapes, weights)


# ---------------------------------------------------------------------------------------------
# Cost figures: FLOPs count a multiply-add as two operations.


def node_flops(node: Node, in_shapes: Sequence[Shape], weights: Mapping[str, np.ndarray]) -> int:
    out = math.prod(node.shape)
    if node.op is Op.CONV:
        w = weights[node.params[0]]
        return 2 * out * math.prod(w.shape[1:])
    if node.op is Op.CONV_TRANSPOSE:  # every input pixel meets the whole kernel once
        return 2 * math.prod(in_shapes[0][1:]) * math.prod(weights[node.params[0]].shape)
    if node.op is Op.GEMM:
        return 2 * math.prod(weights[node.params[0]].shape)
    if node.op is Op.RESIZE:
        return out * (1 if node.attr("mode") == "nearest" else 6)
    if node.op in (Op.LAYERNORM, Op.GELU):
        return out * 8
    if node.op in (Op.MAXPOOL, Op.AVGPOOL):
        return out * math.prod(node.attr("kernel"))
    if node.op is Op.LRN:
        return out * (node.attr("size") + 4)
    if node.op in (Op.GLOBAL_AVGPOOL, Op.SOFTMAX):
        return math.prod(in_shapes[0]) * (3 if node.op is Op.SOFTMAX else 1)
    if node.op in (Op.INPUT, Op.FLATTEN, Op.RESHAPE, Op.PAD, Op.CHANNEL_SHUFFLE, Op.CONCAT):
        return 0
    return out * max(1, len(node.inputs) + len(node.params) - 1)


def is_global(node: Node) -> bool:
    return node.op in GLOBAL
