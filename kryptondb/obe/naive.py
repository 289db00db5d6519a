"""The naive scan: every position's occluded input through the full model, in batches."""

from __future__ import annotations

import numpy as np

from kryptondb.ivm.cost import theoretical
from kryptondb.obe.occlusion import occluded_batch, per_channel
from kryptondb.obe.spec import ScanSpec
from kryptondb.obe.strategy import Naive, Runtime, add


def naive_positions(rt: Runtime, how: Naive, spec: ScanSpec, corners: np.ndarray,
                    label: str) -> np.ndarray:
    """(len(corners), K): the targets' scores on ``spec``'s one input with the window at each
    corner, ``how.batch`` occluded copies per forward pass."""
    x, fill, g = spec.inputs[0], per_channel(spec.baseline(0)), rt.model.graph
    out = np.empty((len(corners), len(spec.targets)), np.float32)
    bar, window, rows = rt.bar(len(corners), label), spec.grid.window, np.asarray(corners).tolist()
    try:
        for s in range(0, len(corners), how.batch):
            xb = occluded_batch(x, fill, rows[s:s + how.batch], window)
            res = rt.backend.run(g, {g.inputs[0]: xb})[g.output].reshape(len(xb), -1)
            out[s:s + how.batch] = spec.scores(rt.model, res)
            bar.update(len(xb))
    finally:
        bar.close()
    add(rt.stats, flops=theoretical(g, spec.grid.window).full_flops * len(corners),
        bytes=len(corners) * x.nbytes)
    return out
