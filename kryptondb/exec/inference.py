"""Inference operators: full inference (one input or a stream of frame chunks), incremental
video inference (a thin adapter over kryptondb/orv), and picking the class to explain."""

from __future__ import annotations

import hashlib
import math
from typing import Iterator

import numpy as np

from kryptondb.graph.shapes import node_flops
from kryptondb.obe.strategy import add
from kryptondb.orv.features import video_ivm
from kryptondb.orv.incremental import Settings
from kryptondb.orv.recognize import incremental_probabilities
from kryptondb.plan.values import Classes
from kryptondb.runtime.backends import get_backend


def model_flops(model) -> int:
    """One input's FLOPs through the whole model (counted once per loaded model)."""
    kept = model.memo
    if "flops" not in kept:
        g = model.graph
        kept["flops"] = sum(node_flops(n, [g[i].shape for i in n.inputs], g.weights)
                            for n in g.nodes)
    return kept["flops"]


def full_inference(node, inputs, ctx):
    model = ctx.model(node.arg("model"))
    backend = get_backend(node.arg("backend") or "onnxruntime")
    (src,) = inputs
    per_item = model_flops(model)
    if isinstance(src, Iterator):
        return _stream_inference(node, ctx.stats(node), model, backend, src, per_item)
    batch = node.arg("batch") or 16
    kept, key = _kept(model, backend, node.arg("score"), batch, src)
    if key in kept:
        ctx.stats(node).update(reused=1, rows=len(src), bytes=src.nbytes)
        return kept[key].copy()
    if node.arg("score") == "logit":  # the model's output itself
        out = _outputs(model, backend, src, batch)
    else:
        out = model.predict(src, backend=backend, batch_size=batch)
    kept[key] = out.copy()
    while len(kept) > OUTPUTS_KEPT:  # the oldest first
        kept.pop(next(iter(kept)), None)
    ctx.stats(node).update(flops=per_item * len(src), batches=math.ceil(len(src) / batch),
                           rows=len(src), bytes=src.nbytes)
    return out


OUTPUTS_KEPT = 8  # per loaded model: the inputs a session explains again


def _kept(model, backend, score, batch: int, x: np.ndarray) -> tuple[dict, tuple]:
    """The outputs kept with ``model`` and the key of ``x``'s: what a statement that runs the
    same weights on the same inputs (an occlusion query's unoccluded pass, asked again) finds
    there instead of running them (0.25 ms of a small model's query; a VGG16 inference). The
    key holds the inputs' bytes' digest, the backend, the score and the batch the run used."""
    digest = hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest()
    return model.memo.setdefault("outputs", {}), (backend.name, score, batch, x.shape, digest)


def _outputs(model, backend, x: np.ndarray, batch: int) -> np.ndarray:
    """(N, classes): the graph's raw outputs, ``batch`` inputs per run."""
    g = model.graph
    out = [backend.run(g, {g.inputs[0]: x[i:i + batch]})[g.output] for i in range(0, len(x),
                                                                                    batch)]
    return np.concatenate(out).reshape(len(x), -1)


def _stream_inference(node, stats, model, backend, src, per_item):
    for frames_meta, x in src:
        probs = model.predict(x, backend=backend, batch_size=node.arg("batch") or len(x))
        add(stats, flops=per_item * len(x), batches=1, rows=len(x))
        yield frames_meta, probs


def incremental_video_inference(node, inputs, ctx):
    """Per frame, recompute only what changed since the base frame (kryptondb/orv): yields
    (frames meta with each frame's FrameStat in place of its picture, probabilities)."""
    model = ctx.model(node.arg("model"))
    backend = get_backend(node.arg("backend") or "onnxruntime")
    stats = ctx.stats(node)
    ivm = video_ivm(model, backend, ivm_settings(node), stats)
    (src,) = inputs
    per_item = model_flops(model)
    for frames_meta, x in src:
        probs, frame_stats = incremental_probabilities(ivm, model, x)  # a decoder's chunk
        share = sum(st.flops_share for st in frame_stats)
        add(stats, flops=int(per_item * share), rows=len(x), batches=1)
        for st in frame_stats:
            add(stats, **{st.mode: 1})
        yield [(i, t, st) for (i, t, _), st in zip(frames_meta, frame_stats)], probs


def ivm_settings(node) -> Settings:
    """The incremental video settings of a node's arguments (the binder's, checked)."""
    return Settings(threshold=node.arg("threshold") or 0.0, tau=node.arg("tau"),
                    keyframe_every=node.arg("keyframe_every"),
                    keyframe_area=node.arg("keyframe_area") or Settings.keyframe_area,
                    max_boxes=node.arg("max_boxes") or Settings.max_boxes,
                    agreement=bool(node.arg("agreement")),
                    feature_scale=node.arg("feature_scale"))


def pick_class(node, inputs, ctx) -> tuple[tuple[int, ...], ...]:
    """Per input, the classes to explain: its own top one, or the ones the statement named."""
    (scores,) = inputs
    target = node.arg("target")
    if target == "top1":
        return tuple((int(c),) for c in np.argmax(scores, axis=1))
    if target == "all":
        ids = tuple(range(scores.shape[1]))
    else:
        ids = tuple(target.ids) if isinstance(target, Classes) else (int(target),)
    return (ids,) * len(scores)
