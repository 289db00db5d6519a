"""Reference NumPy kernels, one per op kind, on batched NCHW float32 arrays.

These define what a correct result is: every other backend is tested against them. They favour
clarity, but stay vectorised (im2col + BLAS) so whole models run in reasonable time.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kryptondb.graph.ir import Node, Op
from kryptondb.graph.resample import Taps, node_taps

_IM2COL_BYTES = 256 << 20  # cap on one im2col buffer; larger batches are split


def pad2d(x: np.ndarray, pads, value: float = 0.0) -> np.ndarray:
    pt, pl, pb, pr = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=value)


def windows(x: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """A read-only (N, C, kh, kw, Ho, Wo) view of every window of a padded input."""
    n, c, _, _ = x.shape
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out_hw
    s = x.strides
    return as_strided(x, (n, c, kh, kw, ho, wo),
                      (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw), writeable=False)


def _ceil_extra(x, node, out_hw):
    """Zero rows/cols a ceil-mode window may reach past the bottom/right padding."""
    (kh, kw), (sh, sw), (dh, dw) = node.attr("kernel"), node.attr("stride"), node.attr("dilation", (1, 1))
    need_h = (out_hw[0] - 1) * sh + dh * (kh - 1) + 1
    need_w = (out_hw[1] - 1) * sw + dw * (kw - 1) + 1
    return max(0, need_h - x.shape[2]), max(0, need_w - x.shape[3])


def conv(node: Node, x: np.ndarray, w: np.ndarray, b: np.ndarray, out_shape) -> np.ndarray:
    xp = pad2d(x, node.attr("pads"))
    groups, (ho, wo) = node.attr("groups", 1), out_shape[1:]
    kernel, stride, dil = node.attr("kernel"), node.attr("stride"), node.attr("dilation", (1, 1))
    if groups == x.shape[1] and w.shape[0] == groups:
        out = _depthwise(xp, w, kernel, stride, dil, (ho, wo))
    else:
        out = _grouped(xp, w, groups, kernel, stride, dil, (ho, wo))
    out += b.reshape(1, -1, 1, 1)
    return out


def _depthwise(xp, w, kernel, stride, dil, out_hw):
    win = windows(xp, kernel, stride, dil, out_hw)
    out = np.zeros((xp.shape[0], xp.shape[1]) + tuple(out_hw), np.float32)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            out += win[:, :, i, j] * w[:, 0, i, j].reshape(1, -1, 1, 1)
    return out


def _grouped(xp, w, groups, kernel, stride, dil, out_hw):
    n, c = xp.shape[:2]
    o, cg = w.shape[:2]
    k = cg * kernel[0] * kernel[1]
    wg = w.reshape(groups, o // groups, k)
    per_item = c * kernel[0] * kernel[1] * out_hw[0] * out_hw[1] * 4
    step = max(1, _IM2COL_BYTES // max(per_item, 1))
    out = np.empty((n, o) + tuple(out_hw), np.float32)
    for s in range(0, n, step):
        win = windows(xp[s:s + step], kernel, stride, dil, out_hw)
        cols = win.reshape(win.shape[0], groups, k, out_hw[0] * out_hw[1])
        res = np.matmul(wg[None], cols)  # (n, groups, o/groups, ho*wo)
        out[s:s + step] = res.reshape(win.shape[0], o, *out_hw)
    return out


def conv_transpose(node: Node, x: np.ndarray, w: np.ndarray, b: np.ndarray,
                   out_shape) -> np.ndarray:
    """Each input pixel times the kernel, scattered to stride-spaced places: output row
    i*s - pad_top + a*d receives input row i through kernel row a (col2im), then cropped by
    the pads and grown by output_padding (rows no input reaches hold the bias)."""
    n, cin, h, wd = x.shape
    g, (kh, kw), (sh, sw) = node.attr("groups", 1), node.attr("kernel"), node.attr("stride")
    (dh, dw), (pt, pl, _, _) = node.attr("dilation", (1, 1)), node.attr("pads")
    cout, (ho, wo) = w.shape[1] * g, out_shape[1:]
    wg = w.reshape(g, cin // g, -1).transpose(0, 2, 1)  # (g, cout/g * kh * kw, cin/g)
    full = (max((h - 1) * sh + dh * (kh - 1) + 1, pt + ho),
            max((wd - 1) * sw + dw * (kw - 1) + 1, pl + wo))
    out = np.empty((n, cout, ho, wo), np.float32)
    step = max(1, _IM2COL_BYTES // max(cout * kh * kw * h * wd * 4, 1))
    for s0 in range(0, n, step):
        xs = x[s0:s0 + step]
        cols = np.matmul(wg[None], xs.reshape(len(xs), g, cin // g, h * wd))
        cols = cols.reshape(len(xs), cout, kh, kw, h, wd)
        buf = np.zeros((len(xs), cout) + full, np.float32)
        for a in range(kh):
            for c in range(kw):
                buf[:, :, a * dh:a * dh + (h - 1) * sh + 1:sh,
                    c * dw:c * dw + (wd - 1) * sw + 1:sw] += cols[:, :, a, c]
        out[s0:s0 + step] = buf[:, :, pt:pt + ho, pl:pl + wo]
    out += b.reshape(1, -1, 1, 1)
    return out


def interpolate(x: np.ndarray, rows: Taps, cols: Taps) -> np.ndarray:
    """Resample (N, C, H, W) at ``rows`` and ``cols``: taps of shape (h,) for every item, or
    (N, h) per item (the incremental plan's regions, in context coordinates)."""
    return _along(_along(x, 2, rows), 3, cols)


def _along(x: np.ndarray, axis: int, t: Taps) -> np.ndarray:
    def shaped(a):
        shape = [a.shape[0] if a.ndim == 2 else 1, 1, 1, 1]
        shape[axis] = a.shape[-1]
        return a.reshape(shape)

    lo = np.take_along_axis(x, shaped(t.lo), axis)
    if t.weight is None:
        return lo
    hi = np.take_along_axis(x, shaped(t.hi), axis)
    return lo + (hi - lo) * shaped(t.weight)


def layernorm(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, eps: float) -> np.ndarray:
    """Normalise over the channels (axis 1) at each pixel, then scale and shift per channel."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    d = x - x.mean(axis=1, keepdims=True)
    y = d / np.sqrt(np.square(d).mean(axis=1, keepdims=True) + np.float32(eps))
    return y * scale.reshape(shape) + shift.reshape(shape)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        inner = np.float32(np.sqrt(2 / np.pi)) * (x + np.float32(0.044715) * x * x * x)
        return np.float32(0.5) * x * (np.float32(1) + np.tanh(inner))
    from scipy.special import erf  # scipy.special costs ~100 ms to import; only GELU needs it

    return np.float32(0.5) * x * (np.float32(1) + erf(x * np.float32(1 / np.sqrt(2))))


def maxpool(node: Node, x: np.ndarray, out_shape) -> np.ndarray:
    xp = pad2d(x, node.attr("pads"), -np.inf)
    eh, ew = _ceil_extra(xp, node, out_shape[1:])
    xp = pad2d(xp, (0, 0, eh, ew), -np.inf)
    win = windows(xp, node.attr("kernel"), node.attr("stride"), node.attr("dilation", (1, 1)),
                  out_shape[1:])
    return win.max(axis=(2, 3))


def avgpool(node: Node, x: np.ndarray, out_shape) -> np.ndarray:
    xp = pad2d(x, node.attr("pads"))
    eh, ew = _ceil_extra(xp, node, out_shape[1:])
    xp = pad2d(xp, (0, 0, eh, ew))
    args = (node.attr("kernel"), node.attr("stride"), (1, 1), out_shape[1:])
    return windows(xp, *args).sum(axis=(2, 3)) / avgpool_divisor(node, x.shape[2:], out_shape)


def avgpool_divisor(node: Node, in_hw, out_shape) -> np.ndarray:
    """(1, 1, Ho, Wo): how many elements each window averages (padding counted or not)."""
    pt, pl, pb, pr = node.attr("pads")
    ones = np.ones((1, 1) + tuple(in_hw), np.float32)
    cnt = pad2d(ones, (pt, pl, pb, pr), 1.0 if node.attr("count_include_pad", 0) else 0.0)
    eh, ew = _ceil_extra(cnt, node, out_shape[1:])
    cnt = pad2d(cnt, (0, 0, eh, ew))
    args = (node.attr("kernel"), node.attr("stride"), (1, 1), out_shape[1:])
    return windows(cnt, *args).sum(axis=(2, 3))


def lrn(node: Node, x: np.ndarray) -> np.ndarray:
    size, alpha, beta, bias = (node.attr(k) for k in ("size", "alpha", "beta", "bias"))
    sq = np.square(x)
    lo, hi = (size - 1) // 2, size // 2  # ONNX: floor((size-1)/2) before, ceil((size-1)/2) after
    padded = np.pad(sq, ((0, 0), (lo, hi), (0, 0), (0, 0)))
    csum = np.concatenate([np.zeros_like(padded[:, :1]), np.cumsum(padded, axis=1)], axis=1)
    c = x.shape[1]
    window = csum[:, size:size + c] - csum[:, :c]
    return x / np.power(bias + (alpha / size) * window, beta)


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def channel_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    n, c = x.shape[:2]
    y = x.reshape(n, groups, c // groups, *x.shape[2:]).swapaxes(1, 2)
    return np.ascontiguousarray(y).reshape(x.shape)


def _hard_sigmoid(x, alpha, beta):
    return np.clip(alpha * x + beta, 0.0, 1.0)


def _binary(fn):
    def run(node, g, xs):
        acc = xs[0]
        for y in list(xs[1:]) + [g.weights[p] for p in node.params]:
            acc = fn(acc, y)
        return acc
    return run


KERNELS: Mapping[Op, Callable] = {
    Op.CONV: lambda n, g, xs: conv(n, xs[0], g.param(n, 0), g.param(n, 1), n.shape),
    Op.BATCHNORM: lambda n, g, xs: xs[0] * g.param(n, 0).reshape(-1, 1, 1)
    + g.param(n, 1).reshape(-1, 1, 1),
    Op.RELU: lambda n, g, xs: np.maximum(xs[0], 0.0),
    Op.CLIP: lambda n, g, xs: np.clip(xs[0], n.attr("min"), n.attr("max")),
    Op.LEAKY_RELU: lambda n, g, xs: np.where(xs[0] >= 0, xs[0], xs[0] * n.attr("alpha")),
    Op.SIGMOID: lambda n, g, xs: 1.0 / (1.0 + np.exp(-xs[0])),
    Op.HARD_SIGMOID: lambda n, g, xs: _hard_sigmoid(xs[0], n.attr("alpha"), n.attr("beta")),
    Op.HARD_SWISH: lambda n, g, xs: xs[0] * _hard_sigmoid(xs[0], 1 / 6, 0.5),
    Op.MUL: _binary(np.multiply),
    Op.ADD: _binary(np.add),
    Op.MAXPOOL: lambda n, g, xs: maxpool(n, xs[0], n.shape),
    Op.AVGPOOL: lambda n, g, xs: avgpool(n, xs[0], n.shape),
    Op.GLOBAL_AVGPOOL: lambda n, g, xs: xs[0].mean(axis=(2, 3), keepdims=True),
    Op.LRN: lambda n, g, xs: lrn(n, xs[0]),
    Op.CONCAT: lambda n, g, xs: np.concatenate(xs, axis=n.attr("axis") + 1),
    Op.GEMM: lambda n, g, xs: xs[0] @ g.param(n, 0).T + g.param(n, 1),
    Op.FLATTEN: lambda n, g, xs: xs[0].reshape(len(xs[0]), -1),
    Op.RESHAPE: lambda n, g, xs: xs[0].reshape(len(xs[0]), *n.shape),
    Op.SOFTMAX: lambda n, g, xs: softmax(xs[0], n.attr("axis") + 1),
    Op.PAD: lambda n, g, xs: pad2d(xs[0], n.attr("pads"), n.attr("value", 0.0)),
    Op.CHANNEL_SHUFFLE: lambda n, g, xs: channel_shuffle(xs[0], n.attr("groups")),
    Op.CONV_TRANSPOSE: lambda n, g, xs: conv_transpose(n, xs[0], g.param(n, 0), g.param(n, 1),
                                                       n.shape),
    Op.RESIZE: lambda n, g, xs: interpolate(xs[0], *node_taps(n, xs[0].shape[2:])),
    Op.LAYERNORM: lambda n, g, xs: layernorm(xs[0], g.param(n, 0), g.param(n, 1), n.attr("eps")),
    Op.GELU: lambda n, g, xs: gelu(xs[0], n.attr("approximate", "none")),
}
