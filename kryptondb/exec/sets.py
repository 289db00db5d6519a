"""Set statements: PREDICT IMAGES and RECOGNIZE ... IN VIDEOS run their per-input function
(kryptondb/model/predict.py ``predict_image``, kryptondb/orv/recognize.py ``recognize_video``)
on one input after another, in this process, with the model (and its backend sessions) loaded
once; the tables come back as one, with the input's name first (``image`` / ``video``: the path
as written or matched, or the catalog name). ``each`` is the loop, the one place a distributed
run changes."""

from __future__ import annotations

from typing import Callable, Iterator

import pyarrow as pa

from kryptondb.dist import sets as distributed
from kryptondb.exec.inference import ivm_settings, model_flops
from kryptondb.model.predict import PredictSettings, predict_image
from kryptondb.obe.strategy import add
from kryptondb.orv.recognize import VideoSettings, recognize_video


def each(work: Callable, model, paths, settings, done: Callable[[int], object]) -> Iterator:
    """``work(model, path, settings)`` for each path, in order; ``done(1)`` after each."""
    for path in paths:
        yield work(model, path, settings)
        done(1)


def _on(where: distributed.SetRun) -> Callable:
    """``each`` with the inputs run on the cluster (one task per input), in the same order."""
    return lambda work, model, paths, settings, done: distributed.each(where, work, paths,
                                                                        settings, done)


def keyed(tables: Iterator[pa.Table], key: str, names) -> pa.Table:
    """The tables as one, each input's name in a first column ``key``."""
    parts = [t.add_column(0, key, pa.array([name] * t.num_rows, pa.string()))
             for name, t in zip(names, tables)]
    return pa.concat_tables(parts, promote_options="default")


def predict_images(node, inputs, ctx) -> pa.Table:
    """PREDICT IMAGES: each image's top-k, keyed by image."""
    settings = PredictSettings(node.arg("k"), node.arg("backend") or "onnxruntime",
                               node.arg("batch") or 1)
    table = _run(ctx, node, predict_image, settings, "image")
    add(ctx.stats(node), flops=model_flops(ctx.model(node.arg("model"))) * len(node.arg("images")))
    return table


def recognize_videos(node, inputs, ctx) -> pa.Table:
    """RECOGNIZE ... IN VIDEOS: each video's frame relation, keyed by video; incremental runs
    start each video from its own key frame."""
    settings = VideoSettings(
        node.arg("k"), node.arg("first") or 0, node.arg("last"), node.arg("every") or 1,
        node.arg("backend") or "onnxruntime", node.arg("batch") or 16,
        ivm_settings(node) if node.arg("mode") == "incremental" else None)
    return _run(ctx, node, recognize_video, settings, "video")


def _run(ctx, node, work, settings, key: str) -> pa.Table:
    """``work`` on each input of the node's set (``images`` / ``videos``), keyed by ``key``."""
    model, inputs = ctx.model(node.arg("model")), node.arg(f"{key}s")
    bar = ctx.bar(len(inputs), f"{key}s")
    run = each if ctx.cluster is None else \
        _on(distributed.SetRun(ctx.cluster, node.arg("model"), ctx.stats(node)))
    try:
        table = keyed(run(work, model, inputs.paths, settings, bar.update), key, inputs.names)
    finally:
        bar.close()
    add(ctx.stats(node), rows=table.num_rows, inputs=len(inputs))
    return table
