"""Incremental re-inference across video frames.

Frames arrive in windows (chunks of the decoded stream). Every frame of a window is compared
with the window's *base*: the last frame of the previous window, whose materialized views (every
layer's output) were maintained incrementally. The pixels that changed are grouped into a few
boxes; each frame recomputes only the regions its boxes reach, layer by layer, over the base's
views. Frames of a window are independent given the base, so their boxes are batched together:
frames are grouped by the padded shape of their boxes, and one incremental plan per shape runs
all of a group's boxes in batched layer calls (several boxes of one frame see each other's new
values). The last frame's maintained views become the next window's base.

A frame whose boxes would save too little (theoretical speedup below ``MIN_SPEEDUP``) runs as a
full inference, and so does a key frame (``KEYFRAME EVERY n`` frames since the last one, or when
the changed area passes ``KEYFRAME AREA f``), whose full views then replace the base; with a
pixel threshold or tau, key frames bound the drift.

With threshold 0 and no tau, every frame's output equals full inference on its own pixels.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from kryptondb.ivm.cost import boxes_share
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.orv.delta import Box, boxes, changed, padded, prepare
from kryptondb.runtime.spread import run_spread

MIN_SPEEDUP = 1.2
ITEMS_PER_BATCH = 64


@dataclass
class Settings:
    threshold: float = 0.0          # pixel units; 0: exact
    tau: float | None = None        # projective field threshold
    keyframe_every: int | None = None
    keyframe_area: float = 0.5      # changed share of the frame that forces a key frame
    max_boxes: int = 4
    align: int = 16                 # box sides are padded to multiples of this
    agreement: bool = False         # also run full inference and compare
    min_speedup: float = MIN_SPEEDUP  # frames whose boxes save less run as full inference
    feature_scale: float | None = None  # change thresholds on feature maps (orv/features.py)


@dataclass
class FrameStat:
    changed: float = 0.0            # share of pixels over the threshold
    boxes: int = 0
    flops_share: float = 0.0        # recomputed FLOPs / full inference FLOPs (static estimate)
    mode: str = "incremental"       # incremental | reuse | full | keyframe
    agree: bool | None = None       # top-1 equal to full inference's (WITH AGREEMENT)
    max_abs_diff: float | None = None


@dataclass
class _Base:
    x: np.ndarray                   # (C, H, W) the base frame's input
    views: dict                     # empty until a box needs them (then made from x), so runs
                                    # of full frames never materialize views
    out: np.ndarray                 # (classes,) its model output
    since_key: int = 0


@dataclass(frozen=True)
class _Boxes:
    """One shape group of a window: its boxes' plan, the frame of each box, and their corners."""

    plan: IncrementalPlan
    owners: np.ndarray              # (n,) frame index of each box
    corners: np.ndarray             # (n, 2) top-left corners
    shape: tuple[int, int]


@dataclass
class VideoIVM:
    """Streaming state: feed windows of preprocessed frames with ``window``."""

    model: object                   # kryptondb.Model
    backend: object
    settings: Settings = field(default_factory=Settings)
    base: _Base | None = None
    # gather_s, compute_s, per-step counters (layers); seconds per stage: change_detection_s,
    # incremental_s, full_s
    stats: dict = field(default_factory=dict)
    _shares: dict = field(default_factory=dict)

    def __post_init__(self):
        prepare()  # the box finder's import, now rather than mid-stream

    def window(self, x: np.ndarray) -> tuple[np.ndarray, list[FrameStat]]:
        """Model outputs (n, ...) for frames x (n, C, H, W), and per-frame stats."""
        g = self.model.graph
        s = self.settings
        n = len(x)
        outs: list = [None] * n
        stats = [FrameStat() for _ in range(n)]
        pending: list[tuple[int, list[Box]]] = []
        for i in range(n):
            if self.base is None:
                self._keyframe(x[i], outs, stats, i)
                continue
            with self._clock("change_detection_s"):
                mask = changed(x[i], self.base.x, s.threshold, self._std())
            stats[i].changed = float(mask.mean())
            self.base.since_key += 1
            if s.keyframe_every is not None and self.base.since_key >= s.keyframe_every:
                self._flush(x, pending, outs, stats)  # frames before the key frame: old base
                pending = []
                self._keyframe(x[i], outs, stats, i)
                continue
            if stats[i].changed > s.keyframe_area:  # most of the frame: full inference,
                pending.append((i, None))            # batched with the window's others
                continue
            with self._clock("change_detection_s"):
                found = boxes(mask, s.max_boxes)
            stats[i].boxes = len(found)
            if not found:
                outs[i], stats[i].mode = self.base.out, "reuse"
                continue
            pending.append((i, found))
        self._flush(x, pending, outs, stats)
        out = np.stack(outs)
        if s.agreement:
            self._agree(x, out, stats)
        return out, stats

    # -- internals ------------------------------------------------------------------------
    def _agree(self, x: np.ndarray, out: np.ndarray, stats: list[FrameStat]) -> None:
        """WITH AGREEMENT: each frame's top-1 and largest difference against full inference."""
        g, n = self.model.graph, len(x)
        full = run_spread(self.backend, g, {g.inputs[0]: x})[g.output].reshape(n, -1)
        mine = out.reshape(n, -1)
        for i in range(n):
            stats[i].agree = bool(mine[i].argmax() == full[i].argmax())
            stats[i].max_abs_diff = float(np.abs(mine[i] - full[i]).max())

    @contextmanager
    def _clock(self, stage: str):
        """Add the time the block takes to the stage's seconds (``stats[stage]``)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stats[stage] = self.stats.get(stage, 0.0) + (time.perf_counter() - t)

    def _std(self):
        """Per channel, the pixel difference of a unit difference of the model's input."""
        pre = self.model.preprocess
        return None if pre is None else tuple(s / pre.scale for s in pre.std or (1.0,))

    def _keyframe(self, xi, outs, stats, i):
        g = self.model.graph
        with self._clock("full_s"):
            views, out = base_views(g, xi, self.backend, with_output=True)
        self.base = _Base(xi.copy(), views, out)
        outs[i], stats[i].mode, stats[i].flops_share = out, "keyframe", 1.0

    def _share(self, shape, count) -> float:
        """Static FLOPs share of a frame with ``count`` boxes of ``shape`` (cached)."""
        key = (shape, count)
        if key not in self._shares:
            self._shares[key] = boxes_share(self.model.graph, shape, count, self.settings.tau)
        return self._shares[key]

    def _flush(self, x, pending, outs, stats):
        """Run the pending frames against the current base, grouped by padded box shape; the
        last pending frame's maintained views become the base."""
        if not pending:
            return
        g = self.model.graph
        groups, full_frames = self._group(pending, stats)
        last = pending[-1][0]
        others = full_frames  # the last one too: its views are made when a box needs them
        if others:
            with self._clock("full_s"):
                res = run_spread(self.backend, g, {g.inputs[0]: x[others]})[g.output]
            for k, i in enumerate(others):
                outs[i], stats[i].mode, stats[i].flops_share = res[k], "full", 1.0
        if groups and not self.base.views:  # a base that ran in full: its views, now
            with self._clock("full_s"):
                self.base.views = base_views(g, self.base.x, self.backend)
        kept = None
        for shape, members in groups.items():  # against the current base
            with self._clock("incremental_s"):
                try:
                    res = self._run_group(x, shape, members, outs, last)
                except KeyError:  # a maintained base lacks a view this shape's plan reads
                    self.base.views = base_views(g, self.base.x, self.backend)
                    res = self._run_group(x, shape, members, outs, last)
            kept = res if res is not None else kept
        if last in full_frames:  # the base moves to it; no views yet (see _Base)
            self.base = _Base(x[last].copy(), {}, outs[last], self.base.since_key)
        elif kept is not None:  # the input the views belong to: base pixels + the boxes
            self.base = _Base(kept[g.inputs[0]], kept, outs[last], self.base.since_key)

    def _group(self, pending, stats) -> tuple[dict[tuple[int, int], list], list[int]]:
        """(frames by the padded shape of their boxes, with the boxes' corners; frames to run
        in full: no boxes found, or boxes saving less than ``min_speedup``)."""
        _, height, width = self.model.graph.input_shape
        groups: dict[tuple[int, int], list] = {}
        full_frames = []
        for i, found in pending:
            if found is None:
                full_frames.append(i)
                continue
            pads = [padded(b, height, width, self.settings.align) for b in found]
            shape = (max(b.h for b in pads), max(b.w for b in pads))
            stats[i].flops_share = self._share(shape, len(pads))
            floor = self.settings.min_speedup
            if floor > 0 and stats[i].flops_share > 1 / floor:
                full_frames.append(i)
                continue
            corners = [(min(b.y0, height - shape[0]), min(b.x0, width - shape[1])) for b in pads]
            groups.setdefault(shape, []).append((i, corners))
        return groups, full_frames

    def _run_group(self, x, shape, members, outs, last):
        owners = np.array([i for i, corners in members for _ in corners])
        corners = np.array([c for _, cs in members for c in cs], dtype=np.int64)
        plan = IncrementalPlan(self.model.graph, corners, shape, self.base.views,
                               self.settings.tau)
        group = _Boxes(plan, owners, corners, shape)
        # batches of whole frames (all boxes of a frame in one batch); the last frame alone,
        # keeping its maintained views
        batch: list[int] = []
        for frame in (i for i, _ in members if i != last):
            batch.append(frame)
            if np.isin(owners, batch).sum() >= ITEMS_PER_BATCH:
                self._run_items(group, x, batch, outs)
                batch = []
        if batch:
            self._run_items(group, x, batch, outs)
        if last in owners:
            return self._run_items(group, x, [last], outs, keep=True)
        return None

    def _run_items(self, group: _Boxes, x, frames, outs, keep=False):
        """Run the boxes of ``frames``; with ``keep``, return the maintained views."""
        (h, w), owners, corners = group.shape, group.owners, group.corners
        items = np.flatnonzero(np.isin(owners, frames))
        vals = np.stack([x[owners[k], :, corners[k, 0]:corners[k, 0] + h,
                           corners[k, 1]:corners[k, 1] + w] for k in items])
        res = group.plan.run(items, vals, self.backend, self.stats, owners[items], keep)
        out, kept = res if keep else (res, None)
        seen = list(dict.fromkeys(owners[items]))  # frames in order of first appearance
        for row, frame in enumerate(seen):
            outs[frame] = out[row]
        return kept

