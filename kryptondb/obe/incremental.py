"""The incremental scan: positions through incremental inference over the input's materialized
views (kryptondb/ivm), in blocks, with chunks of a block run side by side by a pool of workers.

A window cut off at the border runs as a full-size box shifted back inside the input: the box
shows the fill inside the cut window and the input's own pixels elsewhere, so the changed region
the plan recomputes is a superset of the real one, which keeps the result exact.
"""

from __future__ import annotations

import numpy as np

from kryptondb.ivm.cost import region_sizes, theoretical
from kryptondb.ivm.gather import ChannelsLastViews, PaddedView, gather
from kryptondb.ivm.incremental import IncrementalPlan, base_views, read_views
from kryptondb.ivm.tail import tail_batch
from kryptondb.obe.spec import ScanSpec
from kryptondb.obe.strategy import Incremental, Runtime, add
from kryptondb.runtime.workers import InFlight, Pool


def views_of(graph, x: np.ndarray, backend) -> dict[str, np.ndarray]:
    """The views an incremental scan of ``x`` (C, H, W) reads: one pass with every view as an
    output, on the segments' variant of the backend (its sessions borrow the model's weights
    and keep no arena after the pass)."""
    return base_views(graph, x, backend.for_segments(), names=read_views(graph))


def incremental_positions(rt: Runtime, how: Incremental, spec: ScanSpec, corners: np.ndarray,
                          label: str) -> np.ndarray:
    """(len(corners), K): the targets' scores on ``spec``'s one input with the window at each
    corner. The planner's batch bounds the positions in flight (its memory footprint is the
    budget's); with a backend that prefers it (onnxruntime: one batch per core), they are split
    into one chunk per worker, run side by side. Plans are built for a block of positions at a
    time, all with the same region sizes (so with the same per-layer segments). Stats times are
    summed over workers."""
    job = _Blocks(rt, how, spec, corners)
    out = np.empty((len(corners), len(spec.targets)), np.float32)
    bar = rt.bar(len(corners), label + (" (incremental)" if how.tau is None
                                        else f" (tau {how.tau:g})"))
    with Pool(job.workers) as pool:
        try:
            for b in range(0, len(corners), job.size):
                part = slice(b, b + job.size)
                job.block(pool, corners[part], job.boxes[part], out[part], bar)
        finally:
            bar.close()
    cost = theoretical(rt.model.graph, spec.grid.window, how.tau)
    add(rt.stats, gather_s=0.0, compute_s=0.0, flops=cost.incremental_flops * len(corners))
    rt.stats["workers"], rt.stats["chunk"] = job.workers, job.chunk  # positions per call
    rt.stats["in_flight"] = max(rt.stats.get("in_flight", 0), job.flight.most)
    return out


class _Blocks:
    """One input's scan, a block of positions at a time: a plan per block, its positions in
    chunks (one per worker), each chunk's window values gathered, run and scored."""

    def __init__(self, rt: Runtime, how: Incremental, spec: ScanSpec, corners: np.ndarray):
        self.rt, self.tau, self.spec = rt, how.tau, spec
        graph = rt.model.graph
        workers, self.runner = rt.backend.concurrent()
        self.workers = min(workers, how.batch)
        self.chunk = max(1, how.batch // self.workers)  # chunk * workers <= batch: bound holds
        self.tail_batch = tail_batch(how.batch)
        self.size = max(self.chunk * self.workers, how.block or len(corners))  # a block's
        self.boxes = spec.grid.inside(corners)  # full windows: the changed regions' superset
        self.sizes = region_sizes(graph, self.boxes, spec.grid.window, how.tau, self.size)
        self.views = rt.views[0] if rt.views else views_of(graph, spec.inputs[0], rt.backend)
        if self.runner.channels_last and self.runner.gather is None:  # on the host
            # copies shared by the blocks' plans
            self.views = ChannelsLastViews(self.views, how.winograd)
        self.fills = PaddedView(spec.baseline(0), (0, 0, 0, 0), 0.0)
        self.image = PaddedView(spec.inputs[0], (0, 0, 0, 0), 0.0)
        self.flight = InFlight()

    def block(self, pool: Pool, corners, boxes, out: np.ndarray, bar) -> None:
        """Scores of one block into ``out``; counters added to the runtime's stats. A plan with
        a classifier tail (kryptondb/ivm/tail.py) runs it here over ``tail_batch`` chunks'
        positions at a time, on this thread while the other workers go on with the block."""
        plan = IncrementalPlan(self.rt.model.graph, boxes, self.spec.grid.window, self.views,
                               self.tau, self.sizes)
        add(self.rt.stats, blocks=1)
        waiting: list = []
        for idx, res, own in pool.map(lambda s, e: self.run_chunk(plan, corners, boxes, s, e),
                                      len(boxes), self.chunk):
            add(self.rt.stats, **own)
            if plan.tail is None:
                self.scored(out, bar, idx, res)
                continue
            waiting.append((idx, res))
            if sum(len(i) for i, _ in waiting) >= self.tail_batch:
                self.tails(None, plan, waiting, out, bar)
        if waiting:  # the block's last: split over the workers
            self.tails(pool, plan, waiting, out, bar)

    def tails(self, pool: Pool | None, plan: IncrementalPlan, waiting: list, out, bar) -> None:
        """The tail of the ``waiting`` (positions, tail inputs): without a pool, one call of
        ``tail_batch`` on this thread, the rest left waiting; with one, all of them."""
        idx = np.concatenate([i for i, _ in waiting])
        values = np.concatenate([v for _, v in waiting])
        waiting.clear()
        if pool is None and len(idx) > self.tail_batch:
            waiting.append((idx[self.tail_batch:], values[self.tail_batch:]))
            idx, values = idx[:self.tail_batch], values[:self.tail_batch]

        def run(s: int, e: int):
            own: dict = {}
            return idx[s:e], plan.run_tail(values[s:e], self.runner, own), own

        for part, res, own in pool.map(run, len(idx), self.tail_batch) if pool else [run(0, len(idx))]:
            add(self.rt.stats, **own)
            self.scored(out, bar, part, res)

    def scored(self, out: np.ndarray, bar, idx: np.ndarray, res: np.ndarray) -> None:
        out[idx] = self.spec.scores(self.rt.model, res.reshape(len(idx), -1))
        bar.update(len(idx))

    def run_chunk(self, plan: IncrementalPlan, corners, boxes, start: int, stop: int):
        """(positions, the plan's output for them, its counters) of ``start:stop`` of the
        block; the output is the tail's input where the plan has a tail."""
        idx = np.arange(start, stop)
        with self.flight(len(idx)):
            values = self.window_values(corners[idx], boxes[idx])
            own: dict = {}
            return idx, plan.run_to_tail(idx, values, self.runner, own), own

    def window_values(self, corners: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(B, C, h, w): what each box shows, the fill where its window is and the input where
        the window was cut off (the box sticks out of the window on the inside)."""
        h, w = self.spec.grid.window
        fill = gather(self.fills, boxes[:, 0], boxes[:, 1], h, w)
        cut = corners - boxes
        if not cut.any():
            return fill
        image = gather(self.image, boxes[:, 0], boxes[:, 1], h, w)
        rows = np.arange(h)[None, :] >= cut[:, :1]
        cols = np.arange(w)[None, :] >= cut[:, 1:]
        return np.where((rows[:, :, None] & cols[:, None, :])[:, None], fill, image)
