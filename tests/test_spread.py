"""A batch split over the cores (kryptondb/runtime/spread.py) gives the one call's outputs, in
the batch's order; a backend with one worker, or a batch too small to split, gets one call."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import kryptondb
from kryptondb.runtime.backends import OnnxRuntimeBackend
from kryptondb.runtime.spread import LEAST, run_spread


class Recording:
    """A backend that doubles its input and records the batch size of every call."""

    def __init__(self, workers: int):
        self.workers, self.calls = workers, []

    def concurrent(self):
        return self.workers, self

    def run(self, graph, feeds, outputs=None):
        [(name, x)] = feeds.items()
        self.calls.append(len(x))
        return {"y": 2 * x, "n": np.full(len(x), len(self.calls))}


@pytest.mark.parametrize("workers,n", [(2, 16), (2, 5), (3, 17), (2, 2 * LEAST - 1), (1, 16)])
def test_the_batch_is_split_in_order_or_run_in_one_call(workers, n):
    be = Recording(workers)
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    out = run_spread(be, None, {"x": x})
    np.testing.assert_array_equal(out["y"], 2 * x)
    if workers < 2 or n < 2 * LEAST:
        assert be.calls == [n]
    else:
        assert len(be.calls) == workers and sum(be.calls) == n
        assert max(be.calls) - min(be.calls) <= n // workers  # parts of about equal size


@pytest.mark.parametrize("n", [1, 4, 9])
def test_a_real_network_split_over_cores_equals_one_call(n):
    model = kryptondb.load_model("mobilenet_v2")
    g = model.graph
    x = np.random.default_rng(n).standard_normal((n, *g.input_shape)).astype(np.float32)
    whole = OnnxRuntimeBackend(threads=2).run(g, {g.inputs[0]: x})[g.output]
    spread = run_spread(OnnxRuntimeBackend(threads=2), g, {g.inputs[0]: x})[g.output]
    np.testing.assert_allclose(spread, whole, rtol=1e-5, atol=1e-5)
    assert (spread.reshape(n, -1).argmax(1) == whole.reshape(n, -1).argmax(1)).all()


def test_predict_in_split_batches_equals_one_image_at_a_time():
    model = kryptondb.load_model("mobilenet_v2")
    cat = Image.open(kryptondb.bundled_image()).convert("RGB")
    images = [cat.rotate(15 * i) if i % 2 else cat.crop((4 * i, 0, 200, 180)) for i in range(6)]
    together = model.predict(images, batch_size=6)  # one batch, split over the cores
    alone = np.concatenate([model.predict([im], batch_size=1) for im in images])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    gaps = np.abs(together[:, None] - together[None]).max(-1)  # distinct images: order matters
    assert (gaps + np.eye(6) > 1e-3).all()
