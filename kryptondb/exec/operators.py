"""Physical operators: ``fn(node, inputs, ctx) -> value``, one per DAG op name."""

from __future__ import annotations

import math
import os
from typing import Iterator

import numpy as np
import pyarrow as pa

from kryptondb.graph.shapes import node_flops
from kryptondb.ivm import views as V
from kryptondb.lang.ast import Fill
from kryptondb.obe.grid import Grid
from kryptondb.obe.incremental import views_of
from kryptondb.obe.memo import remember
from kryptondb.obe.occlusion import fill_tensor
from kryptondb.obe.render import display_image
from kryptondb.obe.scan import scan
from kryptondb.obe.spec import Scores, ScanSpec
from kryptondb.obe.strategy import DrillDown, Incremental, Naive, Runtime
from kryptondb.result import Heatmap
from kryptondb.runtime.backends import get_backend, release_freed_memory

VIDEO_CHUNK = 16


def _media_path(ctx, node, kind: str) -> str:
    source = node.arg("source")
    if node.arg("catalog"):
        return ctx.db.lookup(kind, source).path
    return os.path.abspath(os.path.expanduser(source))


def model_flops(model) -> int:
    g = model.graph
    return sum(node_flops(n, [g[i].shape for i in n.inputs], g.weights) for n in g.nodes)


# -- sources ------------------------------------------------------------------------------------


def load_image(node, inputs, ctx):
    from kryptondb.media.images import load_image as load

    img = load(_media_path(ctx, node, "image"))
    node.stats.update(rows=1, bytes=img.size[0] * img.size[1] * 3)
    return img


def video_scan(node, inputs, ctx) -> Iterator:
    from kryptondb.media.video import frames

    path = _media_path(ctx, node, "video")
    it = frames(path, node.arg("first") or 0, node.arg("last"), node.arg("every") or 1)

    def chunks():
        batch = []
        for item in it:
            batch.append(item)
            if len(batch) == VIDEO_CHUNK:
                yield batch
                batch = []
        if batch:
            yield batch

    return chunks()


# -- preprocessing and inference -------------------------------------------------------------------


def preprocess(node, inputs, ctx):
    model = ctx.model(node.arg("model"))
    (src,) = inputs
    if isinstance(src, Iterator):
        return ((b, model.inputs([img for _, _, img in b])) for b in src)
    x = model.inputs(src)
    node.stats.update(rows=1, bytes=x.nbytes)
    return x


def full_inference(node, inputs, ctx):
    model = ctx.model(node.arg("model"))
    backend = get_backend(node.arg("backend") or "onnxruntime")
    (src,) = inputs
    per_item = model_flops(model)
    if isinstance(src, Iterator):
        return _stream_inference(node, model, backend, src, per_item)
    probs = model.predict(src, backend=backend, batch_size=node.arg("batch") or 16)
    node.stats.update(flops=per_item * len(src), batches=math.ceil(len(src) / 16),
                      rows=len(src), bytes=src.nbytes)
    return probs


def _stream_inference(node, model, backend, src, per_item):
    for frames_meta, x in src:
        probs = model.predict(x, backend=backend, batch_size=node.arg("batch") or len(x))
        node.stats["flops"] = node.stats.get("flops", 0) + per_item * len(x)
        node.stats["batches"] = node.stats.get("batches", 0) + 1
        node.stats["rows"] = node.stats.get("rows", 0) + len(x)
        yield frames_meta, probs


def incremental_video_inference(node, inputs, ctx):
    """Per frame, recompute only what changed since the base frame (kryptondb/orv): yields
    (frames meta with each frame's FrameStat in place of its picture, probabilities)."""
    from kryptondb.orv.incremental import Settings, VideoIVM

    model = ctx.model(node.arg("model"))
    backend = get_backend(node.arg("backend") or "onnxruntime")
    settings = Settings(threshold=node.arg("threshold") or 0.0, tau=node.arg("tau"),
                        keyframe_every=node.arg("keyframe_every"),
                        keyframe_area=node.arg("keyframe_area") or Settings.keyframe_area,
                        max_boxes=node.arg("max_boxes") or Settings.max_boxes,
                        agreement=bool(node.arg("agreement")))
    ivm = VideoIVM(model, backend, settings, stats=node.stats)
    (src,) = inputs
    per_item = model_flops(model)
    for frames_meta, x in src:
        out, stats = ivm.window(x)  # a window: the decoder's chunk of frames
        probs = model.probabilities(out.reshape(len(x), -1))
        share = sum(st.flops_share for st in stats)
        node.stats["flops"] = node.stats.get("flops", 0) + int(per_item * share)
        node.stats["rows"] = node.stats.get("rows", 0) + len(x)
        node.stats["batches"] = node.stats.get("batches", 0) + 1
        for st in stats:
            node.stats[st.mode] = node.stats.get(st.mode, 0) + 1
        yield [(i, t, st) for (i, t, _), st in zip(frames_meta, stats)], probs


def pick_class(node, inputs, ctx) -> int:
    (probs,) = inputs
    target = node.arg("target")
    return int(np.argmax(probs[0])) if target == "top1" else int(target)


# -- occlusion: thin adapters over kryptondb/obe ---------------------------------------------------


APPROXIMATE_ARGS = ("tau", "drilldown", "coarse_stride", "predicted_ssim")


def occlusion_scan(node, inputs, ctx) -> Scores:
    """The scan's spec and the plan's decisions, run by the occlusion driver (kryptondb/obe);
    exact scores are kept for the session, an approximate scan is scored (SSIM) against them."""
    x, cls = inputs[:2]
    model = ctx.model(node.arg("model"))
    spec = _scan_spec(node, model, x, cls)
    rt = Runtime(model, get_backend(node.arg("backend") or "onnxruntime"), ctx.bar, node.stats,
                 tuple(inputs[2:3]))  # the materialized views of an incremental plan
    scores = Scores(spec, scan(spec, _decisions(node, spec.grid), rt), node.arg("model"))
    scores = remember(ctx.memo, scores, {k: node.arg(k) for k in APPROXIMATE_ARGS
                                         if node.arg(k) is not None})
    if scores.ssim is not None:
        node.stats.update(ssim=scores.ssim)
    return scores


def _scan_spec(node, model, x: np.ndarray, cls: int) -> ScanSpec:
    """KQL's scan: a square patch at one stride, windows that fit, a FILL, one class."""
    patch = node.arg("patch")
    grid = Grid(x.shape[2], x.shape[3], patch, node.arg("stride"))
    fill = fill_tensor(x[0], Fill.parse(node.arg("fill")), model.preprocess, patch)
    return ScanSpec(x, grid, (cls,), fill)


def _decisions(node, grid: Grid) -> Naive | Incremental | DrillDown:
    """What the rewrite decided: the mode, the batch and blocks, tau, the drill-down."""
    batch = node.arg("batch")
    if node.arg("mode") != "incremental":
        return Naive(batch)
    stage = Incremental(batch, node.arg("block"), node.arg("tau"))
    if node.arg("drilldown") is None:
        return stage
    return DrillDown(grid.with_strides(node.arg("coarse_stride")), node.arg("drilldown"), stage)


def materialize_views(node, inputs, ctx) -> dict:
    """The base input's output of every incremental layer a plan reads, stored as an Arrow
    view table in the catalog and reused by later queries on the same model and image. The
    view is stored once the statement has succeeded (``ExecContext.defer``): a statement that
    fails, say at its INTO, leaves the catalog as it was."""
    (x,) = inputs
    ref = node.arg("model")
    model = ctx.model(ref)
    name = V.view_name(ref, x)
    if name in ctx.db.names("view"):
        node.stats.update(reused=1)
        return V.from_arrow(ctx.db.get_table(name, "view"))
    views = views_of(model.graph, x[0], get_backend(node.arg("backend") or "onnxruntime"))
    table = V.to_arrow(views, [n.name for n in model.graph.nodes], consume=True)
    release_freed_memory()  # the pass's outputs, now in the table
    info = {"model": ref.entry, "digest": ref.digest, "layers": table.num_rows}
    ctx.defer(f"materialized views {name}",
              lambda: ctx.db.put_table(name, table, kind="view", info=info))
    node.stats.update(flops=model_flops(model), bytes=table.nbytes, rows=table.num_rows)
    return V.from_arrow(table)


def heatmap(node, inputs, ctx) -> Heatmap:
    """The scan's scores of its one input and class, with the base probability and picture."""
    scores, base, cls = inputs
    model = ctx.model(scores.model)
    probability, grid = scores.values[0, 0], scores.spec.grid
    node.stats.update(rows=probability.size)
    return Heatmap(probability, float(base[0, cls]), cls, model.label(cls), grid.window[0],
                   grid.strides[0], display_image(scores.spec.inputs[0], model.preprocess),
                   model.name, scores.approximate, scores.ssim)


# -- tables ----------------------------------------------------------------------------------------


def top_k(node, inputs, ctx):
    (probs,) = inputs
    k = node.arg("k")
    model = ctx.model(node.arg("model"))
    if isinstance(probs, Iterator):
        return ((meta, _topk_rows(p, k, model)) for meta, p in probs)
    table = pa.table(_topk_rows(probs, k, model)[0])
    node.stats.update(rows=table.num_rows)
    return table


def _topk_rows(probs: np.ndarray, k: int, model) -> list[dict]:
    out = []
    for p in probs:
        order = np.argsort(-p)[:k]
        out.append({"rank": pa.array(np.arange(1, len(order) + 1), pa.int32()),
                    "class": pa.array(order.astype(np.int32)),
                    "label": [model.label(int(c)) for c in order],
                    "probability": pa.array(p[order].astype(np.float32))})
    return out


def frame_labels(node, inputs, ctx) -> pa.Table:
    """The relation (frame, timestamp, rank, class, label, probability), plus per-frame stats
    columns when the frames ran incrementally (changed, boxes, flops_share, mode; agree and
    max_abs_diff WITH AGREEMENT)."""
    from kryptondb.orv.incremental import FrameStat

    (stream,) = inputs
    cols: dict[str, list] = {"frame": [], "timestamp": [], "rank": [], "class": [], "label": [],
                             "probability": []}
    extra: dict[str, list] = {}
    bar = ctx.bar(0, "frames")
    for meta, per_frame in stream:
        for (index, t, info), rows in zip(meta, per_frame):
            n = len(rows["label"])
            cols["frame"] += [index] * n
            cols["timestamp"] += [t] * n
            cols["rank"] += rows["rank"].to_pylist()
            cols["class"] += rows["class"].to_pylist()
            cols["label"] += rows["label"]
            cols["probability"] += rows["probability"].to_pylist()
            if isinstance(info, FrameStat):
                for key, value in vars(info).items():
                    if value is not None:
                        extra.setdefault(key, []).extend([value] * n)
        bar.update(len(meta))
    bar.close()
    table = pa.table({"frame": pa.array(cols["frame"], pa.int32()),
                      "timestamp": pa.array(cols["timestamp"], pa.float64()),
                      "rank": pa.array(cols["rank"], pa.int32()),
                      "class": pa.array(cols["class"], pa.int32()),
                      "label": pa.array(cols["label"], pa.string()),
                      "probability": pa.array(cols["probability"], pa.float32())})
    for key, values in extra.items():
        if len(values) == table.num_rows:
            table = table.append_column(key, pa.array(values))
    from kryptondb.orv.sheet import VIDEO_KEY  # the video, for a contact sheet of the frames

    table = table.replace_schema_metadata({VIDEO_KEY: _media_path(ctx, node, "video")})
    node.stats.update(rows=table.num_rows)
    return table


def store(node, inputs, ctx):
    (value,) = inputs
    table = value.to_arrow() if isinstance(value, Heatmap) else value
    ctx.db.put_table(node.arg("table"), table)
    node.stats.update(rows=table.num_rows, bytes=table.nbytes)
    return value


def _operators() -> dict:
    from kryptondb.exec import catalog_ops as c

    return {
        "LoadImage": load_image, "VideoScan": video_scan, "Preprocess": preprocess,
        "FullInference": full_inference, "PickClass": pick_class,
        "IncrementalVideoInference": incremental_video_inference,
        "OcclusionScan": occlusion_scan, "MaterializeViews": materialize_views,
        "Heatmap": heatmap, "TopK": top_k,
        "FrameLabels": frame_labels, "StoreTable": store,
        "CreateModel": c.create_model, "LoadMedia": c.load_media, "ShowCatalog": c.show_catalog,
        "Tune": c.tune,
        "DescribeModel": c.describe_model, "Drop": c.drop, "Sql": c.sql,
    }


OPERATORS = _operators()
