"""A whole batch through a backend with its samples split over the cores.

onnxruntime splits one call's work over its intra-op threads, which pays poorly on networks of
many small layers (depthwise convolutions, 7x7 maps): two calls side by side on one thread each
keep both cores busier. Measured on 2 cores, batches of 16 at 224 x 224, per frame: MobileNetV2
8.8 ms against 11.8 ms for one 2-thread call (1.34x), ResNet18 34.5 against 36.6 ms (1.06x).
Each sample's result does not depend on the others in its batch, so the outputs are those of
one call (to float rounding: the same kernels, other batch sizes). A backend that gains nothing
from side-by-side calls (``concurrent()`` says one worker) gets the batch in one call.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from kryptondb.runtime.workers import Pool

LEAST = 2  # samples per call below which a batch is not split


def run_spread(backend, graph, feeds: Mapping[str, np.ndarray], outputs=None) -> dict:
    """``backend.run(graph, feeds, outputs)``, the batch split over ``backend.concurrent()``'s
    workers (each part on its single-threaded variant); results in the batch's order."""
    workers, single = backend.concurrent()
    n = len(next(iter(feeds.values()))) if feeds else 0
    if workers < 2 or n < 2 * LEAST:
        return backend.run(graph, feeds, outputs)
    chunk = math.ceil(n / workers)
    with Pool(workers) as pool:
        parts = list(pool.map(lambda a, b: single.run(graph, {k: v[a:b] for k, v in feeds.items()},
                                                      outputs), n, chunk))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
