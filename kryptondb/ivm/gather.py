"""The gather: per query, the read-in context of a layer — the stored view, the query's new
values written over it, and the layer's pad value where the context leaves the map — built for a
whole batch with NumPy fancy indexing (no per-query Python loop)."""

from __future__ import annotations

import numpy as np


class PaddedView:
    """A materialized view padded once with ``value`` by enough margin for every query."""

    def __init__(self, view: np.ndarray, margin: tuple[int, int, int, int], value: float):
        t, l, b, r = margin
        self.margin = (t, l)
        self.data = np.pad(view, ((0, 0), (t, b), (l, r)), constant_values=value) \
            if any(margin) else view


def margins(view_shape, ys, xs, rh, rw) -> tuple[int, int, int, int]:
    _, h, w = view_shape
    return (max(0, -int(ys.min())), max(0, -int(xs.min())),
            max(0, int(ys.max()) + rh - h), max(0, int(xs.max()) + rw - w))


def gather(padded: PaddedView, ys: np.ndarray, xs: np.ndarray, rh: int, rw: int,
           new: np.ndarray | None = None, ny: np.ndarray | None = None,
           nx: np.ndarray | None = None) -> np.ndarray:
    """(B, C, rh, rw) contexts at starts (ys, xs) in map coordinates, with ``new`` (B, C, h, w)
    written at (ny, nx) where it falls inside each context."""
    t, l = padded.margin
    rows = ys[:, None] + np.arange(rh) + t  # (B, rh)
    cols = xs[:, None] + np.arange(rw) + l  # (B, rw)
    buf = padded.data[:, rows[:, :, None], cols[:, None, :]]  # (C, B, rh, rw)
    buf = np.ascontiguousarray(buf.transpose(1, 0, 2, 3))
    if new is not None:
        overlay(buf, new, ny - ys, nx - xs)
    return buf


def overlay(buf: np.ndarray, new: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> None:
    """Write new[b] at offset (oy[b], ox[b]) into buf[b], clipped to buf's extent."""
    b, _, h, w = new.shape
    rh, rw = buf.shape[2:]
    ii = oy[:, None] + np.arange(h)  # (B, h) target rows
    jj = ox[:, None] + np.arange(w)
    vi, vj = (ii >= 0) & (ii < rh), (jj >= 0) & (jj < rw)
    if vi.all() and vj.all():
        bb = np.arange(b)[:, None, None]
        buf.transpose(0, 2, 3, 1)[bb, ii[:, :, None], jj[:, None, :]] = new.transpose(0, 2, 3, 1)
        return
    bb, si, sj = np.nonzero(vi[:, :, None] & vj[:, None, :])
    buf.transpose(0, 2, 3, 1)[bb, ii[bb, si], jj[bb, sj]] = new.transpose(0, 2, 3, 1)[bb, si, sj]
