"""A session's memo of exact scores: an approximate scan is scored (SSIM) against the exact
scores of the same scan when the session computed them."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from kryptondb.approx.quality import ssim
from kryptondb.ivm.views import view_name
from kryptondb.obe.spec import Scores


def memo_key(scores: Scores) -> tuple:
    """Keyed like the views (the model's digest and each input's content), and by everything
    else the scores depend on: the grid, the baselines, the targets and the score."""
    spec = scores.spec
    baselines = hashlib.sha1(np.ascontiguousarray(spec.baselines)).hexdigest()[:12]
    return (tuple(view_name(scores.model, x) for x in spec.inputs), spec.grid,
            spec.baselines.shape, baselines, spec.targets, spec.score)


def remember(memo: dict, scores: Scores, approximate: dict | None) -> Scores:
    """Exact scores (``approximate`` empty) are kept in ``memo``; approximate ones come back
    with their settings and, when the exact scores are at hand, their SSIM against them (the
    mean over inputs and targets)."""
    key = memo_key(scores)
    if not approximate:
        memo[key] = scores.values
        return scores
    exact = memo.get(key)
    score = None
    if exact is not None:
        maps = exact.shape[2:]
        score = float(np.mean([ssim(e, a) for e, a in zip(exact.reshape(-1, *maps),
                                                          scores.values.reshape(-1, *maps))]))
    return replace(scores, approximate=approximate, ssim=score)
