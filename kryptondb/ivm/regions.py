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
    if in_shapes is not None:
        inputs = [Region(broadcast_axis(r.rows, s[1], out_shape[1]),
                         broadcast_axis(r.cols, s[2], out_shape[2]))
                  for r, s in zip(inputs, in_shapes)]
    out = inputs[0]
    for r in inputs[1:]:
        out = Region(union(out.rows, r.rows), union(out.cols, r.cols))
    return out


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


def read_in(node: Node, out: FixedRegion) -> tuple[int, int, np.ndarray, np.ndarray]:
    """The read-in context of a windowed node for its fixed output region: size (rh, rw) and
    per-query starts in input coordinates (may be negative or run past the map: padding)."""
    kh, kw = node.attr("kernel", (1, 1))
    sh, sw = node.attr("stride", (1, 1))
    dh, dw = node.attr("dilation", (1, 1))
    pt, pl, _, _ = node.attr("pads")
    rh, rw = dh * (kh - 1) + 1 + (out.h - 1) * sh, dw * (kw - 1) + 1 + (out.w - 1) * sw
    return rh, rw, out.y * sh - pt, out.x * sw - pl
