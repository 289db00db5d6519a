"""Channels-last tensors and the ops that normalise or mix channels.

PyTorch writes ConvNeXt's block as ``permute(0, 2, 3, 1)``, LayerNorm and ``nn.Linear`` over the
last axis, ``permute(0, 3, 1, 2)`` back. The IR keeps every map C x H x W: a Transpose to
channels-last becomes no node at all, only a note that the ONNX tensor is the same map seen as
N x H x W x C (``ctx.nhwc``). Pointwise ops keep the note (onnx_converters.keep_layout), MatMul
by a C x C' constant over it is a 1x1 convolution, LayerNormalization over its last axis is a
LayerNorm over the channels, and the Transpose back drops the note. Any other op meeting a
channels-last tensor is refused by name.
"""

from __future__ import annotations

import numpy as np

from kryptondb.errors import ModelImportError, UnsupportedOpError
from kryptondb.graph.ir import Op, make_node
from kryptondb.model import onnx_checks as check
from kryptondb.model import onnx_converters as basic
from kryptondb.model.onnx_checks import label

TO_LAST, TO_FIRST = [0, 2, 3, 1], [0, 3, 1, 2]


def channel_axis(ctx, t: str) -> int | None:
    """The ONNX axis holding the channels of activation ``t`` (N x C x H x W: 1,
    channels-last: 3, N x C: 1); None for other ranks."""
    rank = len(ctx.shapes[ctx.name(t)]) + 1
    if t in ctx.nhwc:
        return 3
    return 1 if rank in (2, 4) else None


def normalised_axes(n, axes, rank: int) -> list[int]:
    return sorted(check.axis(n, int(v), rank, "axes") for v in axes)


def _transpose(ctx, n, a):
    """To channels-last and back (a note, no node), or a channel shuffle."""
    perm = list(a.get("perm", []))
    t = n.input[0]
    if len(ctx.shapes.get(ctx.name(t), ())) == 3 and perm in (TO_LAST, TO_FIRST):
        if (t in ctx.nhwc) != (perm == TO_FIRST):
            want = "an N x C x H x W" if perm == TO_LAST else "a channels-last"
            raise UnsupportedOpError(f"Transpose {label(n)!r}: perm {perm} expects {want} "
                                     "tensor")
        ctx.alias[n.output[0]] = basic._x(ctx, n, channels_last=True)
        if perm == TO_LAST:
            ctx.nhwc.add(n.output[0])
        return
    _shuffle(ctx, n, perm)


def _shuffle(ctx, n, perm):
    """The channel shuffle Reshape(N,g,C/g,H,W) -> Transpose -> Reshape(N,C,H,W)."""
    x = basic._x(ctx, n)
    src = next((m for m in ctx.nodes if m.name == x), None)
    if src is None or src.op is not Op.RESHAPE or perm != [0, 2, 1, 3, 4]:
        raise UnsupportedOpError(
            f"Transpose {label(n)!r}: only NCHW <-> channels-last (perm 0,2,3,1 and back) and "
            "the channel-shuffle pattern (Reshape, Transpose 0,2,1,3,4, Reshape) are supported")
    groups = ctx.shapes[x][0]
    # the shuffle yields the C x H x W layout directly; the Reshape after it becomes a no-op
    ctx.add(make_node(n.output[0], Op.CHANNEL_SHUFFLE, [src.inputs[0]], groups=groups))
    for user in ctx.users.get(n.output[0], []):
        if user.op_type != "Reshape":
            raise UnsupportedOpError(f"Transpose {label(n)!r}: expected a Reshape after the "
                                     "shuffle")


def _matmul(ctx, n, a):
    """Over a channels-last map, times a C x C' constant: a 1x1 convolution."""
    if n.input[0] not in ctx.nhwc:
        basic.CONVERTERS["MatMul"](ctx, n, a)
        return
    x = basic._x(ctx, n, channels_last=True)
    b = basic._matrix(ctx, n)
    if b.shape[0] != ctx.shapes[x][0]:
        raise check.malformed(n, f"B of shape {list(b.shape)} does not fit "
                              f"{ctx.shapes[x][0]} channels")
    out = n.output[0]
    params = (ctx.weight(f"{out}.weight", b.T.reshape(*b.T.shape, 1, 1)),
              ctx.weight(f"{out}.bias", np.zeros(b.shape[1])))
    ctx.add(make_node(out, Op.CONV, [x], params, kernel=(1, 1), stride=(1, 1),
                      pads=(0, 0, 0, 0), dilation=(1, 1), groups=1))
    ctx.nhwc.add(out)


def layernorm(ctx, n, out: str, eps: float, scale=None, shift=None) -> None:
    """A LayerNorm over the channels of ``n``'s input 0, written as ``out``."""
    x = n.input[0]
    name = basic._x(ctx, n, 0, channels_last=True)
    c = ctx.shapes[name][0]
    scale = np.ones(c) if scale is None else check.sized(n, scale, c, "the scale")
    shift = np.zeros(c) if shift is None else check.sized(n, shift, c, "the bias")
    params = (ctx.weight(f"{out}.scale", scale), ctx.weight(f"{out}.shift", shift))
    ctx.add(make_node(out, Op.LAYERNORM, [name], params, eps=float(eps)))
    if x in ctx.nhwc:
        ctx.nhwc.add(out)


def _layernorm(ctx, n, a):
    if len([o for o in n.output if o]) > 1:
        raise UnsupportedOpError(f"LayerNormalization {label(n)!r}: the Mean and InvStdDev "
                                 "outputs are not supported")
    x = n.input[0]
    basic._x(ctx, n, channels_last=True)
    rank = len(ctx.shapes[ctx.name(x)]) + 1
    axis = check.axis(n, a.get("axis", -1), rank)
    if axis != channel_axis(ctx, x) or axis != rank - 1:
        raise UnsupportedOpError(
            f"LayerNormalization {label(n)!r}: only over the channels is supported (the last "
            f"axis of a channels-last map, or of N x C), not from axis {axis} of rank {rank}")
    layernorm(ctx, n, n.output[0], a.get("epsilon", 1e-5), check.constant(ctx, n, 1, "scale"),
              check.optional(ctx, n, 2, "bias"))


def _reduce_mean(ctx, n, a):
    """Over the spatial axes: global average pooling (flattened unless keepdims)."""
    x = basic._x(ctx, n, channels_last=True)
    rank = len(ctx.shapes[x]) + 1
    axes = a["axes"] if "axes" in a else \
        check.int_vector(n, check.constant(ctx, n, 1, "axes"), "the axes (input 1)") \
        if len(n.input) > 1 and n.input[1] else []
    spatial = [1, 2] if n.input[0] in ctx.nhwc else [2, 3]
    if rank != 4 or normalised_axes(n, axes, rank) != spatial:
        raise UnsupportedOpError(
            f"ReduceMean {label(n)!r}: only over the spatial axes (global average pooling) is "
            f"supported, or over the channels as part of a LayerNorm; got axes {list(axes)}")
    keep = a.get("keepdims", 1)
    out = n.output[0]
    pooled = out if keep else f"{out}::pooled"
    ctx.add(make_node(pooled, Op.GLOBAL_AVGPOOL, [x]))
    if keep and n.input[0] in ctx.nhwc:
        ctx.nhwc.add(out)
    if not keep:
        ctx.add(make_node(out, Op.FLATTEN, [pooled]))


def _gelu(ctx, n, a):
    approximate = a.get("approximate", "none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate not in ("none", "tanh"):
        raise check.malformed(n, f"approximate {approximate!r} is neither 'none' nor 'tanh'")
    ctx.add(make_node(n.output[0], Op.GELU, [basic._x(ctx, n, channels_last=True)],
                      approximate=approximate))
    basic.keep_layout(ctx, n)


def check_outputs(ctx) -> None:
    for o in ctx.outputs:
        if o in ctx.nhwc:
            raise ModelImportError(f"graph output {o!r} is channels-last (N x H x W x C); only "
                                   "N x C x H x W outputs are supported")


CONVERTERS = {
    "Transpose": _transpose,
    "MatMul": _matmul,
    "LayerNormalization": _layernorm,
    "ReduceMean": _reduce_mean,
    "Gelu": _gelu,
}
