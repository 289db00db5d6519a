"""Physical operators: ``fn(node, inputs, ctx) -> value``, one per DAG op name."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import pyarrow as pa

from kryptondb.runtime.backends import get_backend, release_freed_memory
from kryptondb.graph.shapes import node_flops
from kryptondb.lang.ast import Fill
from kryptondb.result import Heatmap

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


# -- occlusion -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Scan:
    """An occlusion scan's output: the class probability at every grid position."""

    probability: np.ndarray  # (rows, cols)
    model: object  # the ModelRef the plan was bound to
    patch: int
    stride: int
    x: np.ndarray  # the unoccluded input (1, C, H, W)
    approximate: dict | None = None
    ssim: float | None = None


def occlusion_scan(node, inputs, ctx) -> Scan:
    """The naive plan: every position's occluded image through the full model, in batches."""
    from kryptondb.obe.occlusion import Grid, fill_tensor, occluded_batch

    x, cls = inputs[:2]
    ref = node.arg("model")
    model = ctx.model(ref)
    backend = get_backend(node.arg("backend") or "onnxruntime")
    patch, stride, batch = node.arg("patch"), node.arg("stride"), node.arg("batch")
    grid = Grid(x.shape[2], x.shape[3], patch, stride)
    fill_x = fill_tensor(x[0], Fill.parse(node.arg("fill")), model.preprocess, patch)
    if node.arg("mode") == "incremental":
        out = incremental_scan(node, inputs, ctx, x, cls, model, grid, fill_x, backend)
        node.stats.update(rows=grid.count, batches=math.ceil(grid.count / batch))
        return _remember(node, ctx, Scan(out.reshape(grid.rows, grid.cols), ref, patch, stride,
                                         x), cls)
    corners, g = grid.corners(), model.graph
    out = np.empty(grid.count, np.float32)
    bar = ctx.bar(grid.count, f"occlusion {grid.rows}x{grid.cols}")
    try:
        for s in range(0, grid.count, batch):
            xb = occluded_batch(x[0], fill_x, corners[s:s + batch], patch)
            res = backend.run(g, {g.inputs[0]: xb})[g.output].reshape(len(xb), -1)
            out[s:s + batch] = model.probabilities(res)[:, cls]
            bar.update(len(xb))
    finally:
        bar.close()
    node.stats.update(flops=model_flops(model) * grid.count, rows=grid.count,
                      batches=math.ceil(grid.count / batch), bytes=grid.count * x[0].nbytes)
    return _remember(node, ctx, Scan(out.reshape(grid.rows, grid.cols), ref, patch, stride, x),
                     cls)


APPROXIMATE_ARGS = ("tau", "drilldown", "coarse_stride", "predicted_ssim")


def _remember(node, ctx, scan: Scan, cls: int) -> Scan:
    """Exact maps are kept for the session; an approximate one is scored (SSIM) against the
    exact map of the same query when there is one."""
    from kryptondb.ivm.views import view_name  # keyed like the views: model digest and input

    key = (view_name(scan.model, scan.x), scan.patch, scan.stride, node.arg("fill"), cls)
    settings = {k: node.arg(k) for k in APPROXIMATE_ARGS if node.arg(k) is not None}
    if not settings:
        ctx.memo[key] = scan.probability
        return scan
    exact = ctx.memo.get(key)
    score = None
    if exact is not None:
        from kryptondb.approx.quality import ssim

        score = ssim(exact, scan.probability)
        node.stats.update(ssim=score)
    return replace(scan, approximate=settings, ssim=score)






def materialize_views(node, inputs, ctx) -> dict:
    """The base input's output of every incremental layer a plan reads, stored as an Arrow
    view table in the catalog and reused by later queries on the same model and image. The
    view is stored once the statement has succeeded (``ExecContext.defer``): a statement that
    fails, say at its INTO, leaves the catalog as it was."""
    from kryptondb.ivm import views as V
    from kryptondb.ivm.incremental import base_views, read_views

    (x,) = inputs
    ref = node.arg("model")
    model = ctx.model(ref)
    name = V.view_name(ref, x)
    if name in ctx.db.names("view"):
        node.stats.update(reused=1)
        return V.from_arrow(ctx.db.get_table(name, "view"))
    # One pass with every view as an output, on the segments' variant of the backend: its
    # sessions borrow the model's weights and keep no arena after the pass.
    backend = get_backend(node.arg("backend") or "onnxruntime").for_segments()
    views = base_views(model.graph, x[0], backend, names=read_views(model.graph))
    table = V.to_arrow(views, [n.name for n in model.graph.nodes], consume=True)
    release_freed_memory()  # the pass's outputs, now in the table
    info = {"model": ref.entry, "digest": ref.digest, "layers": table.num_rows}
    ctx.defer(f"materialized views {name}",
              lambda: ctx.db.put_table(name, table, kind="view", info=info))
    node.stats.update(flops=model_flops(model), bytes=table.nbytes, rows=table.num_rows)
    return V.from_arrow(table)


def incremental_scan(node, inputs, ctx, x, cls, model, grid, fill_x, backend) -> np.ndarray:
    """Every position through incremental inference over the materialized views; with a
    projective field threshold (tau) each layer's recomputed region is capped; with drill-down,
    a coarse stage over the whole map and the requested stride only where drops are largest."""
    from kryptondb.approx import drilldown as D
    from kryptondb.obe.occlusion import Grid

    stats: dict = {}

    def scan(corners, label):
        return _incremental_positions(node, ctx, inputs[2], corners, grid.window[0], cls, model,
                                      fill_x, backend, stats, label)

    ratio, coarse = node.arg("drilldown"), node.arg("coarse_stride")
    if ratio is None:
        out = scan(grid.corners(), f"occlusion {grid.rows}x{grid.cols}")
        computed = grid.count
    else:
        first = Grid(grid.height, grid.width, grid.window[0], coarse)
        rough = scan(first.corners(), f"drill-down stage 1: {first.rows}x{first.cols}")
        fine = grid.corners()
        out, pick = D.combine(rough.reshape(first.rows, first.cols), coarse, fine, ratio,
                              lambda p: scan(fine[p], f"drill-down stage 2: {len(p)} of "
                                                      f"{grid.count}"))
        computed = first.count + len(pick)
        node.stats.update(stage1=first.count, stage2=len(pick))
    node.stats.update(gather_s=stats.get("gather_s", 0.0), compute_s=stats.get("compute_s", 0.0),
                      workers=stats.get("workers", 1), blocks=stats.get("blocks", 0),
                      in_flight=stats.get("in_flight", 0),
                      flops=int(node.arg("flops_incremental") or 0) * computed)
    return out


def _incremental_positions(node, ctx, views, corners, patch, cls, model, fill_x, backend,
                           stats, label) -> np.ndarray:
    """The heatmap values at ``corners``. The planner's batch bounds the queries in flight
    (its memory footprint is the budget's); with a backend that prefers it (onnxruntime: one
    batch per core), they are split into one chunk per worker, run side by side. Plans are
    built for a block of positions at a time (the planner's), all with the same region sizes
    (so with the same per-layer segments). Stats times are summed over workers."""
    from kryptondb.runtime.workers import InFlight, Pool
    from kryptondb.ivm.gather import PaddedView, gather
    from kryptondb.ivm.incremental import IncrementalPlan, region_sizes

    batch = node.arg("batch")
    workers, runner = backend.concurrent()
    workers = min(workers, batch)
    chunk = max(1, batch // workers)  # chunk * workers <= batch: the planner's bound holds
    block = max(chunk * workers, node.arg("block") or len(corners))
    tau = node.arg("tau")
    sizes = region_sizes(model.graph, corners, patch, tau, block)
    out = np.empty(len(corners), np.float32)
    fills = PaddedView(fill_x, (0, 0, 0, 0), 0.0)

    flight = InFlight()

    def run(plan, here, start, stop):
        idx = np.arange(start, stop)
        with flight(len(idx)):
            pv = gather(fills, here[idx, 0], here[idx, 1], patch, patch)
            own: dict = {}
            res = plan.run(idx, pv, runner, own)
            return idx, model.probabilities(res.reshape(len(idx), -1))[:, cls], own

    bar = ctx.bar(len(corners), label + (" (incremental)" if tau is None else f" (tau {tau:g})"))
    with Pool(workers) as pool:
        try:
            for b in range(0, len(corners), block):
                here, plan = corners[b:b + block], None  # one block's plan at a time
                plan = IncrementalPlan(model.graph, here, patch, views, tau, sizes)
                stats["blocks"] = stats.get("blocks", 0) + 1
                for idx, probs, own in pool.map(lambda s, e: run(plan, here, s, e), len(here),
                                                chunk):
                    out[b + idx] = probs
                    for k, v in own.items():
                        stats[k] = stats.get(k, 0.0) + v
                    bar.update(len(idx))
        finally:
            bar.close()
    stats["workers"] = workers
    stats["in_flight"] = max(stats.get("in_flight", 0), flight.most)
    return out


def heatmap(node, inputs, ctx) -> Heatmap:
    scan, base, cls = inputs
    model = ctx.model(scan.model)
    node.stats.update(rows=scan.probability.size)
    return Heatmap(scan.probability, float(base[0, cls]), cls, model.label(cls), scan.patch,
                   scan.stride, display_image(scan.x[0], model.preprocess), model.name,
                   scan.approximate, scan.ssim)


def display_image(x: np.ndarray, pre) -> np.ndarray:
    """A model input (C, H, W) back to an (H, W, 3) picture in [0, 1]."""
    img = x
    if pre is not None and x.shape[0] == len(pre.mean):
        img = x * np.asarray(pre.std, np.float32)[:, None, None] + \
            np.asarray(pre.mean, np.float32)[:, None, None]
    img = img[:3] if img.shape[0] >= 3 else np.repeat(img[:1], 3, axis=0)
    return np.clip(img.transpose(1, 2, 0), 0.0, 1.0)


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
