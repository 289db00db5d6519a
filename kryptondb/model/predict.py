"""PREDICT's work on one image, as a plain function: ``predict_image(model, path, settings)``
returns that image's top-k table. PREDICT IMAGES runs it image after image with one loaded model
(kryptondb/exec/sets.py); a distributed worker runs the same function.

>>> import kryptondb
>>> m = kryptondb.load_model("mobilenet_v2")
>>> predict_image(m, kryptondb.bundled_image(), PredictSettings(k=2)).column("label").to_pylist()
['Egyptian cat', 'tiger cat']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kryptondb.media.images import load_image


@dataclass(frozen=True)
class PredictSettings:
    """What a PREDICT statement asks of each image: its ``k`` most probable classes, run on
    ``backend`` ``batch`` inputs at a time."""

    k: int = 5
    backend: str = "onnxruntime"
    batch: int = 1


def top_k_rows(probs: np.ndarray, k: int, model) -> list[dict]:
    """Per row of ``probs`` (N, classes), the columns rank, class, label, probability of its
    ``k`` most probable classes."""
    out = []
    for p in probs:
        order = np.argsort(-p)[:k]
        out.append({"rank": pa.array(np.arange(1, len(order) + 1), pa.int32()),
                    "class": pa.array(order.astype(np.int32)),
                    "label": [model.label(int(c)) for c in order],
                    "probability": pa.array(p[order].astype(np.float32))})
    return out


def predict_image(model, path: str, settings: PredictSettings) -> pa.Table:
    """The top-k table (rank, class, label, probability) of the image file at ``path``."""
    x = model.inputs([load_image(path)])
    probs = model.predict(x, backend=settings.backend, batch_size=settings.batch)
    return pa.table(top_k_rows(probs, settings.k, model)[0])
