"""The GPU backend's RawKernel ops (kernels/*.cu, through runtime/kernels.py): the gather of a
batch's read-in contexts, convolution as im2col + ``xp.matmul``, depthwise convolution, max and
average pools, the fused bias + activation. Each takes the backend (its ``xp`` and device
weights) and works on ``xp`` arrays; with ``xp = numpy`` the kernels are the gcc host builds.

Scalars go as Python numbers (the loader passes them as 32-bit on both paths).
"""

from __future__ import annotations

import numpy as np

from kryptondb.runtime.kernels import kernel

BLOCK, MAX_GRID = 256, 65535  # threads per block; blocks per launch (kernels/README.md)


def launch(xp, name: str, total: int, args: tuple) -> None:
    """One launch of kernel ``name`` over ``total`` output elements (the kernels are
    grid-stride loops: any grid covers any size)."""
    if total > 0:
        kernel(name, xp)((min(-(-total // BLOCK), MAX_GRID),), (BLOCK,), args)


def i32(xp, values):
    return xp.ascontiguousarray(xp.asarray(values, dtype=np.int32))


def gather(backend, padded, ys, xs, rh: int, rw: int, new=None):
    """(B, C, rh, rw) read-in contexts of a batch at starts (ys, xs) in map coordinates: the
    stored view (kept on the device), ``new`` written over it (ivm.gather.NewValues), the pad
    value outside the map; one launch (kernels/gather.cu), the semantics of ivm.gather.gather."""
    xp = backend.xp
    view = xp.ascontiguousarray(backend.device(padded.view), dtype=np.float32)
    c, h, w = view.shape
    b = len(ys)
    out = xp.empty((b, c, rh, rw), np.float32)
    if new is None:
        nv, nys, nxs, nh, nw = xp.zeros(1, np.float32), ys, xs, 0, 0
        owners, grouped = np.zeros(b, np.int32), 0
    else:
        nv = xp.ascontiguousarray(xp.asarray(new.values, dtype=np.float32))
        nys, nxs, (nh, nw) = new.ys, new.xs, nv.shape[2:]
        grouped = int(new.owners is not None and len(np.unique(new.owners)) < len(new.owners))
        owners = new.owners if grouped else np.zeros(b, np.int32)
    launch(xp, "gather", out.size, (view, c, h, w, i32(xp, ys), i32(xp, xs), b, rh, rw, nv,
                                    i32(xp, nys), i32(xp, nxs), nh, nw, i32(xp, owners), grouped,
                                    float(padded.value), out))
    return out


def conv(backend, node, x, w, b, act=None):
    """A convolution (any groups) plus its bias and ``act`` (xp_ops.activation), fused."""
    xp = backend.xp
    x = xp.ascontiguousarray(x)
    n, c, h, wd = x.shape
    o, (ho, wo) = node.shape[0], node.shape[1:]
    geo = _geometry(node)
    if node.attr("groups", 1) == c and w.shape[0] == c:
        out = xp.empty((n, o, ho, wo), np.float32)
        launch(xp, "depthwise_conv", out.size, (x, w, b, n, c, h, wd, *geo, ho, wo, out))
        return out if act is None else bias_act(xp, out, xp.zeros(o, np.float32), act)
    return bias_act(xp, _dense(xp, node, x, w, geo), b, act)


def _geometry(node) -> tuple[int, ...]:
    """KH, KW, SH, SW, PT, PL, DH, DW: the kernels' window arguments."""
    (kh, kw), (sh, sw) = node.attr("kernel"), node.attr("stride")
    (dh, dw), (pt, pl, _, _) = node.attr("dilation", (1, 1)), node.attr("pads")
    return kh, kw, sh, sw, pt, pl, dh, dw


def _dense(xp, node, x, w, geo):
    """im2col of the batch (in pieces of at most IM2COL_BYTES), then one matmul per piece:
    (groups, O/groups, k) x (B, groups, k, OH*OW). A 1x1 convolution with stride 1 and no
    padding needs no im2col: the input is its own column matrix."""
    n, c, h, wd = x.shape
    o, (ho, wo), g = node.shape[0], node.shape[1:], node.attr("groups", 1)
    k = w.shape[1] * geo[0] * geo[1]
    wg = w.reshape(g, o // g, k)
    out = xp.empty((n, o, ho, wo), np.float32)
    if geo == (1, 1, 1, 1, 0, 0, 1, 1):
        out[...] = xp.matmul(wg[None], x.reshape(n, g, k, h * wd)).reshape(out.shape)
        return out
    step = max(1, IM2COL_BYTES // max(c * geo[0] * geo[1] * ho * wo * 4, 1))
    for s in range(0, n, step):
        part = x[s:s + step]
        cols = xp.empty((len(part), c * geo[0] * geo[1], ho * wo), np.float32)
        launch(xp, "im2col", cols.size, (part, len(part), c, h, wd, *geo, ho, wo, cols))
        res = xp.matmul(wg[None], cols.reshape(len(part), g, k, ho * wo))
        out[s:s + step] = res.reshape(len(part), o, ho, wo)
    return out


IM2COL_BYTES = 256 << 20  # cap on one column buffer, as numpy_ops; larger batches are split


def bias_act(xp, y, b, act=None):
    """y + b per channel, then ``act`` ((code, alpha, beta) or None), in place."""
    code, alpha, beta = act or (0, 0.0, 0.0)
    n, c = y.shape[:2]
    launch(xp, "bias_act", y.size, (y, b, n, c, y[0, 0].size, code, alpha, beta, y))
    return y


def maxpool(backend, node, x):
    xp = backend.xp
    x = xp.ascontiguousarray(x)
    n, c, h, w = x.shape
    out = xp.empty((n, *node.shape), np.float32)
    launch(xp, "max_pool", out.size, (x, n, c, h, w, *_geometry(node), *node.shape[1:], out))
    return out


def avgpool(backend, node, x):
    xp = backend.xp
    x = xp.ascontiguousarray(x)
    n, c, h, w = x.shape
    kh, kw, sh, sw, pt, pl, _, _ = _geometry(node)
    _, _, pb, pr = node.attr("pads")
    out = xp.empty((n, *node.shape), np.float32)
    launch(xp, "avg_pool", out.size, (x, n, c, h, w, kh, kw, sh, sw, pt, pl, pb, pr,
                                      *node.shape[1:], int(node.attr("count_include_pad", 0)),
                                      out))
    return out
