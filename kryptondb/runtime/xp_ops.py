"""The NumPy kernels (numpy_ops.py) written against an array module ``xp`` (numpy or cupy): the
GPU backend's ops that are plain array code. Convolutions, depthwise convolutions, pools and
the fused bias + activation are RawKernels (runtime/windowed.py); everything here mirrors
numpy_ops.py op for op, so its results equal the reference's (float32, the same order of
operations where it matters). Ops absent here run through the reference on the host
(runtime/gpu.py).
"""

from __future__ import annotations

from typing import Callable, Mapping

from kryptondb.graph.ir import Node, Op


def pad2d(xp, x, pads, value: float = 0.0):
    pt, pl, pb, pr = pads
    if not any(pads):
        return x
    return xp.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def softmax(xp, x, axis: int):
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def hard_sigmoid(xp, x, alpha: float, beta: float):
    return xp.clip(alpha * x + beta, 0.0, 1.0)


def channel_shuffle(xp, x, groups: int):
    n, c = x.shape[:2]
    y = x.reshape(n, groups, c // groups, *x.shape[2:]).swapaxes(1, 2)
    return xp.ascontiguousarray(y).reshape(x.shape)


def _binary(name: str):
    def run(xp, node, params, xs):
        fn = getattr(xp, name)
        acc = xs[0]
        for y in list(xs[1:]) + list(params):
            acc = fn(acc, y)
        return acc
    return run


def _gemm(xp, node, params, xs):
    w, b = params
    return xp.matmul(xs[0], w.T) + b


# (xp, node, device params in node.params order, inputs) -> output
XP_OPS: Mapping[Op, Callable] = {
    Op.BATCHNORM: lambda xp, n, p, xs: xs[0] * p[0].reshape(-1, 1, 1) + p[1].reshape(-1, 1, 1),
    Op.RELU: lambda xp, n, p, xs: xp.maximum(xs[0], 0.0),
    Op.CLIP: lambda xp, n, p, xs: xp.clip(xs[0], n.attr("min"), n.attr("max")),
    Op.LEAKY_RELU: lambda xp, n, p, xs: xp.where(xs[0] >= 0, xs[0], xs[0] * n.attr("alpha")),
    Op.SIGMOID: lambda xp, n, p, xs: 1.0 / (1.0 + xp.exp(-xs[0])),
    Op.HARD_SIGMOID: lambda xp, n, p, xs: hard_sigmoid(xp, xs[0], n.attr("alpha"),
                                                       n.attr("beta")),
    Op.HARD_SWISH: lambda xp, n, p, xs: xs[0] * hard_sigmoid(xp, xs[0], 1 / 6, 0.5),
    Op.MUL: _binary("multiply"),
    Op.ADD: _binary("add"),
    Op.GLOBAL_AVGPOOL: lambda xp, n, p, xs: xs[0].mean(axis=(2, 3), keepdims=True),
    Op.CONCAT: lambda xp, n, p, xs: xp.concatenate(xs, axis=n.attr("axis") + 1),
    Op.GEMM: _gemm,
    Op.FLATTEN: lambda xp, n, p, xs: xs[0].reshape(len(xs[0]), -1),
    Op.RESHAPE: lambda xp, n, p, xs: xs[0].reshape(len(xs[0]), *n.shape),
    Op.SOFTMAX: lambda xp, n, p, xs: softmax(xp, xs[0], n.attr("axis") + 1),
    Op.PAD: lambda xp, n, p, xs: pad2d(xp, xs[0], n.attr("pads"), n.attr("value", 0.0)),
    Op.CHANNEL_SHUFFLE: lambda xp, n, p, xs: channel_shuffle(xp, xs[0], n.attr("groups")),
}


def activation(node: Node) -> tuple[int, float, float] | None:
    """(code, alpha, beta) of a pointwise activation the bias kernel fuses (codes of
    runtime/kernels.py's ACTIVATIONS: 1 ReLU, 2 Clip(alpha, beta), 7 LeakyReLU(alpha)); None
    for any other op."""
    if node.op is Op.RELU:
        return 1, 0.0, 0.0
    if node.op is Op.CLIP:
        return 2, float(node.attr("min")), float(node.attr("max"))
    if node.op is Op.LEAKY_RELU:
        return 7, float(node.attr("alpha")), 0.0
    return None
