"""Region algebra: how a changed input region travels through each operator.

Regions are half-open intervals per axis, vectorised over many queries (occlusion positions) at
once: ``lo`` and ``hi`` are integer arrays of shape (n,). One function per operator kind maps the
changed region of its input(s) to the changed region of its output (tight) — the same functions
serve the cost model, the planner and the executor.

For batching, every query of a layer recomputes a region of one fixed size (``FixedRegion``):
the largest tight size over the queries, placed to contain the tight region and shifted back
inside the map at borders. Recomputing unchanged outputs is harmless, so results stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kryptondb.graph.ir import GLOBAL, WINDOWED, Node, Op
from kryptondb.graph.resample import Taps, node_taps


@dataclass(frozen=True)
class Interval:
    """Changed [lo, hi) along one axis for n queries; empty where hi <= lo."""

    lo: np.ndarray
    hi: np.ndarray

    @property
    def width(self) -> np.ndarray:
        return np.maximum(self.hi - self.lo, 0)


def window_axis(iv: Interval, size_out: int, k: int, s: int, pad_lo: int, d: int = 1) -> Interval:
    """Outputs of a sliding window whose window meets the changed input interval.

    Output o reads inputs [o*s - pad_lo, o*s - pad_lo + d*(k-1)]; it changes iff that span meets
    [lo, hi): o >= ceil((lo + pad_lo - d*(k-1)) / s) and o <= floor((hi - 1 + pad_lo) / s).
    """
    span = d * (k - 1)
    lo = -((-(iv.lo + pad_lo - span)) // s)  # ceil division
    hi = (iv.hi - 1 + pad_lo) // s + 1
    lo, hi = np.clip(lo, 0, size_out), np.clip(hi, 0, size_out)
    empty = iv.hi <= iv.lo
    return Interval(np.where(empty, 0, lo), np.where(empty, 0, np.maximum(hi, lo)))


def transposed_axis(iv: Interval, size_out: int, k: int, s: int, pad_lo: int,
                    d: int = 1) -> Interval:
    """Outputs of a transposed convolution that a changed input interval reaches: input i
    adds to outputs i*s - pad_lo + a*d (a < k), so [lo, hi) reaches
    [lo*s - pad_lo, (hi-1)*s - pad_lo + d*(k-1) + 1), clipped to the map (output padding only
    lengthens the map)."""
    lo = np.clip(iv.lo * s - pad_lo, 0, size_out)
    hi = np.clip((iv.hi - 1) * s - pad_lo + d * (k - 1) + 1, 0, size_out)
    empty = iv.hi <= iv.lo
    return Interval(np.where(empty, 0, lo), np.where(empty, 0, np.maximum(hi, lo)))


def resampled_axis(iv: Interval, t: Taps) -> Interval:
    """Outputs of a Resize whose taps meet the changed input interval: output o reads
    t.lo[o] and t.hi[o], both non-decreasing in o, so they form one run of outputs."""
    lo = np.searchsorted(t.hi, iv.lo, "left")
    hi = np.searchsorted(t.lo, iv.hi, "left")
    empty = iv.hi <= iv.lo
    return Interval(np.where(empty, 0, lo), np.where(empty, 0, np.maximum(hi, lo)))


def union(a: Interval, b: Interval) -> Interval:
    """Bounding interval (merges: residual Add, Concat); an empty side does not widen it."""
    ea, eb = a.hi <= a.lo, b.hi <= b.lo
    lo = np.where(ea, b.lo, np.where(eb, a.lo, np.minimum(a.lo, b.lo)))
    hi = np.where(ea, b.hi, np.where(eb, a.hi, np.maximum(a.hi, b.hi)))
    return Interval(lo, hi)


@dataclass(frozen=True)
class Region:
    """Changed rows and columns of a C x H x W map for n queries."""

    rows: Interval
    cols: Interval


def broadcast_axis(iv: Interval, size_in: int, size_out: int) -> Interval:
    """A merge input of size 1 along an axis the output spans (broadcast): a change of it
    changes the whole output axis."""
    if size_in == size_out:
        return iv
    changed = iv.hi > iv.lo
    return Interval(np.where(changed, 0, iv.lo), np.where(changed, size_out, iv.hi))


def node_region(node: Node, inputs: list[Region], out_shape,
                in_shapes: list[tuple[int, ...]] | None = None) -> Region | None:
    """The changed output region of ``node``; None for global ops (no incremental form).
    ``in_shapes`` (the inputs' C x H x W) widen broadcast merge inputs to the whole map."""
    if node.op in GLOBAL:
        return None
    if node.op in WINDOWED or node.op is Op.PAD:
        kh, kw = node.attr("kernel", (1, 1))
        sh, sw = node.attr("stride", (1, 1))
        dh, dw = node.attr("dilation", (1, 1))
        pt, pl, _, _ = node.attr("pads")
        r = inputs[0]
        return Region(window_axis(r.rows, out_shape[1], kh, sh, pt, dh),
                      window_axis(r.cols, out_shape[2], kw, sw, pl, dw))
    if node.op is Op.CONV_TRANSPOSE:
        (kh, kw), (sh, sw) = node.attr("kernel"), node.attr("stride")
        (dh, dw), (pt, pl, _, _) = node.attr("dilation", (1, 1)), node.attr("pads")
        r = inputs[0]
        return Region(transposed_axis(r.rows, out_shape[1], kh, sh, pt, dh),
                      transposed_axis(r.cols, out_shape[2], kw, sw, pl, dw))
    if node.op is Op.RESIZE:
        rows, cols = node_taps(node, _in_hw(node, in_shapes))
        return Region(resampled_axis(inputs[0].rows, rows), resampled_axis(inputs[0].cols, cols))
    if in_shapes is not None:
        inputs = [Region(broadcast_axis(r.rows, s[1], out_shape[1]),
                         broadcast_axis(r.cols, s[2], out_shape[2]))
                  for r, s in zip(inputs, in_shapes)]
    out = inputs[0]
    for r in inputs[1:]:
        out = Region(union(out.rows, r.rows), union(out.cols, r.cols))
    return out


def _in_hw(node: Node, in_shapes) -> tuple[int, int]:
    if in_shapes is None:
        raise ValueError(f"the region of Resize {node.name!r} needs its input's shape")
    return tuple(in_shapes[0][1:])


def as_map(const: np.ndarray, out_shape) -> np.ndarray:
    """A constant operand (rank <= 3, broadcasting like NumPy) as a C' x H x W map over the
    output: a read-only broadcast view, no copy."""
    c = const.reshape((1,) * (3 - const.ndim) + const.shape)
    return np.broadcast_to(c, (c.shape[0], *out_shape[1:]))


def spatial_params(node: Node, weights) -> tuple[str, ...]:
    """The constants of an Add/Mul that vary over the map (an input-sized offset, a position
    embedding, Sub/Div by a per-pixel value): their value at an output pixel depends on where
    the pixel is, so each query reads them at its region, like a view."""
    if node.op not in (Op.ADD, Op.MUL):
        return ()
    return tuple(p for p in node.params if _varies_spatially(weights[p].shape))


def _varies_spatially(shape) -> bool:
    if len(shape) > 3:
        return False
    _, h, w = (1,) * (3 - len(shape)) + tuple(shape)
    return h > 1 or w > 1


def cap_axis(iv: Interval, size: int, tau: float) -> Interval:
    """Projective field thresholding on one axis: an interval wider than round(tau * size) is
    narrowed to that width, keeping its centre (changes outside it are dropped: approximate)."""
    limit = max(1, int(round(tau * size)))
    width = iv.width
    lo = np.where(width > limit, iv.lo + (width - limit) // 2, iv.lo)
    return Interval(lo, np.where(width > limit, lo + limit, iv.hi))


def cap(region: Region, out_shape, tau: float | None) -> Region:
    """The region a layer recomputes under projective field threshold ``tau`` (None or 1: all)."""
    if tau is None or tau >= 1:
        return region
    return Region(cap_axis(region.rows, out_shape[1], tau), cap_axis(region.cols, out_shape[2], tau))


@dataclass(frozen=True)
class FixedRegion:
    """One size for all queries of a layer, and per-query starts that contain the tight region."""

    h: int
    w: int
    y: np.ndarray  # (n,) start rows
    x: np.ndarray  # (n,) start cols


def fix(region: Region, out_shape, size: tuple[int, int] | None = None) -> FixedRegion:
    """``size``: (h, w) to use instead of the largest here (at least as large), so that plans
    over parts of one query set share their shapes."""
    _, height, width = out_shape
    h, w = size or fixed_size(region)
    y = np.clip(region.rows.lo, 0, height - h)
    x = np.clip(region.cols.lo, 0, width - w)
    return FixedRegion(h, w, y.astype(np.int64), x.astype(np.int64))


def fixed_size(region: Region) -> tuple[int, int]:
    """The fixed size of a region: its largest tight extent over the queries (at least 1)."""
    return int(max(1, region.rows.width.max())), int(max(1, region.cols.width.max()))


@dataclass(frozen=True)
class ReadIn:
    """What a step reads to recompute a fixed output region: per query a context of (rh, rw)
    input pixels at starts (ys, xs) in input coordinates (may leave the map: padding). ``box``
    (transposed convolutions only): the (h, w) output the context yields, starting ``offset``
    (per query, rows and columns) before the region, which is cropped out of it."""

    rh: int
    rw: int
    ys: np.ndarray
    xs: np.ndarray
    box: tuple[int, int] | None = None
    offset: tuple[np.ndarray, np.ndarray] | None = None


def read_in(node: Node, out: FixedRegion, in_hw: tuple[int, int] | None = None) -> ReadIn:
    """The read-in context of a windowed, transposed or resampling node for its fixed output
    region (``in_hw``: the input's spatial size, which Resize needs)."""
    if node.op is Op.CONV_TRANSPOSE:
        return _read_transposed(node, out)
    if node.op is Op.RESIZE:
        rows, cols = node_taps(node, in_hw)
        (rh, ys), (rw, xs) = _read_taps(rows, out.h, out.y), _read_taps(cols, out.w, out.x)
        return ReadIn(rh, rw, ys, xs)
    kh, kw = node.attr("kernel", (1, 1))
    sh, sw = node.attr("stride", (1, 1))
    dh, dw = node.attr("dilation", (1, 1))
    pt, pl, _, _ = node.attr("pads")
    rh, rw = dh * (kh - 1) + 1 + (out.h - 1) * sh, dw * (kw - 1) + 1 + (out.w - 1) * sw
    return ReadIn(rh, rw, out.y * sh - pt, out.x * sw - pl)


def _read_taps(t: Taps, h: int, y: np.ndarray) -> tuple[int, np.ndarray]:
    """Context rows of Resize outputs [y, y + h): from the first row the region reads to the
    last, one size for every start the map allows, kept inside the map (Resize clamps at the
    border, so a context never reads padding)."""
    starts = np.arange(len(t.lo) - h + 1)
    rh = int((t.hi[starts + h - 1] + 1 - t.lo[starts]).max())
    return rh, np.minimum(t.lo[y], t.hi[-1] + 1 - rh).astype(np.int64)


def _read_transposed(node: Node, out: FixedRegion) -> ReadIn:
    """A transposed convolution applied without padding to inputs from row ys on yields
    outputs from row ys*s - pad_top on: the context starts at a stride-aligned row so that
    the output it yields contains the region (``box``), which is cropped out at ``offset``
    (it varies with the region's phase against the stride). Inputs outside the map are zero:
    they add nothing, as in the full computation."""
    (kh, kw), (sh, sw) = node.attr("kernel"), node.attr("stride")
    (dh, dw), (pt, pl, _, _) = node.attr("dilation", (1, 1)), node.attr("pads")
    rh, ys, bh, oy = _transposed_axis_read(out.h, out.y, kh, sh, pt, dh)
    rw, xs, bw, ox = _transposed_axis_read(out.w, out.x, kw, sw, pl, dw)
    return ReadIn(rh, rw, ys, xs, (bh, bw), (oy, ox))


def _transposed_axis_read(h: int, y: np.ndarray, k: int, s: int, pad_lo: int, d: int):
    """(context length, context starts, output box length, offsets of the region in it) along
    one axis. Output o = i*s - pad_lo + a*d: outputs [y, y + h) read inputs
    [ceil((y + pad_lo - span) / s), floor((y + h - 1 + pad_lo) / s)], span = d*(k-1); the
    context starts at floor((y + pad_lo - span) / s), so the region's offset in the box is
    span + (y + pad_lo - span) mod s."""
    span = d * (k - 1)
    need_in = need_box = 1
    for phase in range(s):  # the context length that serves every phase of the start
        start = (phase - span) // s
        offset = phase - start * s
        need_in = max(need_in, (phase + h - 1) // s - start + 1)
        need_box = max(need_box, -(-(offset + h - span - 1) // s) + 1)
    rh = max(need_in, need_box)
    starts = (y + pad_lo - span) // s
    return rh, starts.astype(np.int64), (rh - 1) * s + span + 1, (y + pad_lo - starts * s)
