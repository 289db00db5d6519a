"""Tuning change thresholds on feature maps for a target top-1 agreement.

One scale sets every layer's threshold (scale x the layer's standard deviation on the first
frame, kryptondb/orv/features.py). On a prefix of the video, the exact labels come from full
inference; then the plan runs at each candidate scale, smallest first, and the largest scale
whose agreement (and that of every smaller one) reaches the target is chosen. Scale 0 is exact,
so there is always a choice. The rows (scale, agreement, FLOPs share, seconds) are the
agreement/speed curve of that prefix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kryptondb.errors import KryptonError
from kryptondb.orv.features import FeatureIVM

SCALES = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
MIN_TARGET = 0.5  # below: the labels of a near-tie flip more often than not


@dataclass(frozen=True)
class Candidate:
    scale: float
    agreement: float     # top-1 equal to full inference's, share of the prefix's frames
    flops_share: float   # mean over the frames of the FLOPs run / a full inference's
    seconds: float


@dataclass(frozen=True)
class FeatureTuning:
    """The tuned scale for ``target`` on ``frames`` frames, the per-layer thresholds it gives
    (gate name, theta) and every candidate tried."""

    target: float
    frames: int
    scale: float
    thresholds: tuple[tuple[str, float], ...]
    candidates: tuple[Candidate, ...]

    def table(self) -> pa.Table:
        rows = self.candidates
        return pa.table({"scale": [c.scale for c in rows],
                         "agreement": [c.agreement for c in rows],
                         "flops_share": [c.flops_share for c in rows],
                         "seconds": [c.seconds for c in rows],
                         "chosen": [c.scale == self.scale for c in rows]})


def check_target(target: float) -> float:
    """A top-1 agreement target in [MIN_TARGET, 1], else KryptonError."""
    if not isinstance(target, (int, float)) or not MIN_TARGET <= target <= 1:
        raise KryptonError(f"the agreement target is a share of frames in [{MIN_TARGET:g}, 1] "
                           f"(e.g. 0.99), got {target!r}")
    return float(target)


def tune_scale(model, backend, chunks: list[np.ndarray], target: float,
               keyframe_every: int | None = None, scales=SCALES) -> FeatureTuning:
    """The largest scale in ``scales`` (ascending) whose top-1 agreement with full inference on
    ``chunks`` (windows of model inputs, the video's prefix in order) reaches ``target``."""
    target = check_target(target)
    if not chunks or not sum(len(x) for x in chunks):
        raise KryptonError("tuning needs at least one frame")
    g = model.graph
    exact = np.concatenate([backend.run(g, {g.inputs[0]: x})[g.output].reshape(len(x), -1)
                            for x in chunks]).argmax(1)
    tried, chosen = [], None
    for scale in sorted(set(float(s) for s in scales)):
        ivm = FeatureIVM(model, backend, scale, keyframe_every=keyframe_every)
        t = time.perf_counter()
        outs, shares = [], []
        for x in chunks:
            out, stats = ivm.window(x)
            outs.append(out.reshape(len(x), -1))
            shares += [s.flops_share for s in stats]
        agreement = float(np.mean(np.concatenate(outs).argmax(1) == exact))
        tried.append(Candidate(scale, agreement, float(np.mean(shares)),
                               time.perf_counter() - t))
        if agreement < target:
            break  # larger scales suppress more: agreement only falls from here
        chosen = (scale, ivm)
    if chosen is None:  # scale 0 is exact; only a scales list without it gets here
        raise KryptonError(f"no scale in {list(scales)} reaches top-1 agreement {target:g}")
    scale, ivm = chosen
    return FeatureTuning(target, int(len(exact)), scale, tuple(ivm.thresholds()), tuple(tried))
