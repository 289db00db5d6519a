"""What a step computes in NumPy, without a backend segment: a lone merge of gathered buffers
(Add, Concat; Pad, whose gather is the whole op), a Resize's new region from its taps, and the
region cropped out of a transposed convolution's stride-aligned box; and a head as a segment
applies it to a gathered context, with an AveragePool's divisor correction."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kryptondb.graph.ir import WINDOWED, Graph, Node, Op
from kryptondb.graph.resample import Taps, node_taps
from kryptondb.runtime.numpy_ops import avgpool_divisor, interpolate


def resampled(step, idx: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """A Resize's new region from its gathered contexts: the node's taps at the region's
    rows and columns, moved into each context's coordinates."""
    _, _, ys, xs, pv = step.contexts[0]
    rows, cols = node_taps(step.head, pv.view.shape[1:])
    r = step.region
    return interpolate(buf, _shifted(rows, r.y[idx], r.h, ys[idx]),
                       _shifted(cols, r.x[idx], r.w, xs[idx]))


def _shifted(t: Taps, starts: np.ndarray, n: int, origin: np.ndarray) -> Taps:
    at = starts[:, None] + np.arange(n)
    return Taps(t.lo[at] - origin[:, None], t.hi[at] - origin[:, None],
                None if t.weight is None else t.weight[at])


def crop(out: np.ndarray, oy: np.ndarray, ox: np.ndarray, h: int, w: int) -> np.ndarray:
    """(B, C, h, w): each item's h x w window of ``out`` at its own offset (oy[b], ox[b])."""
    windows = sliding_window_view(out, (h, w), axis=(2, 3))
    return windows[np.arange(len(out)), :, oy, ox]


def merge(head: Node, bufs: list[np.ndarray]) -> np.ndarray:
    if head.op is Op.ADD:
        out = bufs[0] + bufs[1]
        for b in bufs[2:]:
            out += b
        return out
    if head.op is Op.CONCAT:
        return np.concatenate(bufs, axis=head.attr("axis") + 1)
    return bufs[0]  # Pad: the gathered context is the padded map


def padless(head: Node) -> Node:
    """The head as the segment applies it to a gathered context, which holds the padding."""
    if head.op is Op.CONV_TRANSPOSE:
        return head.with_attrs(pads=(0, 0, 0, 0), output_padding=(0, 0))
    if head.op not in WINDOWED:
        return head
    node = head.with_attrs(pads=(0, 0, 0, 0), ceil_mode=0)
    return node.with_attrs(count_include_pad=1) if head.op is Op.AVGPOOL else node


def pool_factor(node: Node, graph: Graph) -> np.ndarray | None:
    """(1, Ho, Wo): kh*kw / an AveragePool's divisor at each output, or None where it is 1
    everywhere. The segment pools a zero-padded context dividing by kh*kw; windows that
    exclude padding (count_include_pad=0) or reach past it (ceil mode) divide by fewer, and
    the factor, applied to the pool's own output before anything fused after it, restores
    them (a side map of its step: IncrementalPlan._sides)."""
    d = avgpool_divisor(node, graph[node.inputs[0]].shape[1:], node.shape)[0]
    kh, kw = node.attr("kernel")
    return None if (d == kh * kw).all() else (kh * kw / d).astype(np.float32)
