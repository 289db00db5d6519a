"""Change detection: which pixels of a frame differ from the base frame, grouped into a few
boxes that incremental inference recomputes.

Differences are measured on the model's input tensor, in pixel units (the normalisation undone),
so ``THRESHOLD 8/255`` means "eight grey levels on any channel". Threshold 0 marks every pixel
that differs at all: the exact mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    y0: int
    x0: int
    y1: int  # exclusive
    x1: int

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def w(self) -> int:
        return self.x1 - self.x0

    @property
    def area(self) -> int:
        return self.h * self.w

    def union(self, o: "Box") -> "Box":
        return Box(min(self.y0, o.y0), min(self.x0, o.x0), max(self.y1, o.y1), max(self.x1, o.x1))

    def gap(self, o: "Box") -> int:
        """Chebyshev distance between the boxes (0 when they touch or overlap)."""
        dy = max(0, max(self.y0, o.y0) - min(self.y1, o.y1))
        dx = max(0, max(self.x0, o.x0) - min(self.x1, o.x1))
        return max(dy, dx)


def changed(x: np.ndarray, base: np.ndarray, threshold: float, std=None) -> np.ndarray:
    """(H, W) mask of pixels where any channel of ``x`` differs from ``base`` (both C x H x W,
    normalised model inputs) by more than ``threshold`` pixel units (0: by anything)."""
    diff = np.abs(x - base)
    if std is not None and threshold > 0:
        diff = diff * np.asarray(std, np.float32).reshape(-1, 1, 1)
    return (diff > threshold).any(axis=0)


def boxes(mask: np.ndarray, max_boxes: int = 4, merge_gap: int = 8) -> list[Box]:
    """Bounding boxes of the changed pixels: regions of changes less than about ``merge_gap``
    pixels apart, then merged (cheapest union first) until at most ``max_boxes`` remain.

    >>> m = np.zeros((32, 32), bool); m[2:4, 2:5] = True; m[20:30, 20:22] = True
    >>> boxes(m)
    [Box(y0=2, x0=2, y1=4, x1=5), Box(y0=20, x0=20, y1=30, x1=22)]
    >>> boxes(m, max_boxes=1)
    [Box(y0=2, x0=2, y1=30, x1=22)]
    """
    if not mask.any():
        return []
    cell = max(1, merge_gap)
    found = _regions(mask, cell)
    while len(found) > 32:  # scattered noise: coarser cells until a few dozen regions remain
        cell *= 2
        found = _regions(mask, cell)
    while len(found) > max_boxes:  # merge the pair whose union adds the least area
        best = None
        for i in range(len(found)):
            for j in range(i + 1, len(found)):
                a, b = found[i], found[j]
                cost = a.union(b).area - a.area - b.area
                if best is None or cost < best[0]:
                    best = (cost, i, j)
        _, i, j = best
        merged = found[i].union(found[j])
        found = [b for k, b in enumerate(found) if k not in (i, j)] + [merged]
    return sorted(found, key=lambda b: (b.y0, b.x0))


def prepare():
    """scipy.ndimage, imported (~160 ms, once per process): video plans call this as they
    start, so the import does not stall the stream at the first frame that has boxes."""
    from scipy import ndimage  # ~160 ms to import: only video deltas need it

    return ndimage


def _regions(mask: np.ndarray, cell: int) -> list[Box]:
    """Tight boxes of the changed pixels, one per group of touching ``cell``-pixel cells that
    hold a change (so changes less than about a cell apart join one box)."""
    ndimage = prepare()
    h, w = mask.shape
    gh, gw = -(-h // cell), -(-w // cell)
    grid = np.zeros((gh * cell, gw * cell), bool)
    grid[:h, :w] = mask
    cells = grid.reshape(gh, cell, gw, cell).any(axis=(1, 3))
    labels, _ = ndimage.label(cells, structure=np.ones((3, 3), bool))
    pixels = np.repeat(np.repeat(labels, cell, 0), cell, 1)[:h, :w] * mask
    return [Box(sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
            for sl in ndimage.find_objects(pixels) if sl is not None]


def padded(box: Box, height: int, width: int, align: int = 16) -> Box:
    """The box grown to a multiple of ``align`` per side (so boxes of similar sizes share one
    batched shape), kept inside the image."""
    h = min(height, -(-box.h // align) * align)
    w = min(width, -(-box.w // align) * align)
    y0 = min(max(0, box.y0 - (h - box.h) // 2), height - h)
    x0 = min(max(0, box.x0 - (w - box.w) // 2), width - w)
    return Box(y0, x0, y0 + h, x0 + w)
