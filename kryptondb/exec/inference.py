"""Inference operators: full inference (one input or a stream of frame chunks), incremental
video inference (a thin adapter over kryptondb/orv), and picking the class to explain."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from kryptondb.graph.shapes import node_flops
from kryptondb.orv.incremental import Settings, VideoIVM
from kryptondb.runtime.backends import get_backend


def model_flops(model) -> int:
    g = model.graph
    return sum(node_flops(n, [g[i].shape for i in n.inputs], g.weights) for n in g.nodes)


def _add(stats: dict, **counts) -> None:
    for key, n in counts.items():
        stats[key] = stats.get(key, 0) + n


def full_inference(node, inputs, ctx):
    model = ctx.model(node.arg("model"))
    backend = get_backend(node.arg("backend") or "onnxruntime")
    (src,) = inputs
    per_item = model_flops(model)
    if isinstance(src, Iterator):
        return _stream_inference(node, ctx.stats(node), model, backend, src, per_item)
    probs = model.predict(src, backend=backend, batch_size=node.arg("batch") or 16)
    ctx.stats(node).update(flops=per_item * len(src), batches=math.ceil(len(src) / 16),
                           rows=len(src), bytes=src.nbytes)
    return probs


def _stream_inference(node, stats, model, backend, src, per_item):
    for frames_meta, x in src:
        probs = model.predict(x, backend=backend, batch_size=node.arg("batch") or len(x))
        _add(stats, flops=per_item * len(x), batches=1, rows=len(x))
        yield frames_meta, probs


def incremental_video_inference(node, inputs, ctx):
    """Per frame, recompute only what changed since the base frame (kryptondb/orv): yields
    (frames meta with each frame's FrameStat in place of its picture, probabilities)."""
    model = ctx.model(node.arg("model"))
    backend = get_backend(node.arg("backend") or "onnxruntime")
    settings = Settings(threshold=node.arg("threshold") or 0.0, tau=node.arg("tau"),
                        keyframe_every=node.arg("keyframe_every"),
                        keyframe_area=node.arg("keyframe_area") or Settings.keyframe_area,
                        max_boxes=node.arg("max_boxes") or Settings.max_boxes,
                        agreement=bool(node.arg("agreement")))
    stats = ctx.stats(node)
    ivm = VideoIVM(model, backend, settings, stats=stats)
    (src,) = inputs
    per_item = model_flops(model)
    for frames_meta, x in src:
        out, frame_stats = ivm.window(x)  # a window: the decoder's chunk of frames
        probs = model.probabilities(out.reshape(len(x), -1))
        share = sum(st.flops_share for st in frame_stats)
        _add(stats, flops=int(per_item * share), rows=len(x), batches=1)
        for st in frame_stats:
            _add(stats, **{st.mode: 1})
        yield [(i, t, st) for (i, t, _), st in zip(frames_meta, frame_stats)], probs


def pick_class(node, inputs, ctx) -> int:
    (probs,) = inputs
    target = node.arg("target")
    return int(np.argmax(probs[0])) if target == "top1" else int(target)
