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
from kryptondb.approx import drilldown as D
from kryptondb.obe.occlusion import fill_tensor, occluded_batch
from kryptondb.plan.ops import Op
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
    ctx.stats(node).update(rows=1, bytes=img.size[0] * img.size[1] * 3)
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
    ctx.stats(node).update(rows=1, bytes=x.nbytes)
    return x


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
        stats["flops"] = stats.get("flops", 0) + per_item * len(x)
        stats["batches"] = stats.get("batches", 0) + 1
        stats["rows"] = stats.get("rows", 0) + len(x)
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
    stats = ctx.stats(node)
    ivm = VideoIVM(model, backend, settings, stats=stats)
    (src,) = inputs
    per_item = model_flops(model)
    for frames_meta, x in src:
        out, frame_stats = ivm.window(x)  # a window: the decoder's chunk of frames
        probs = model.probabilities(out.reshape(len(x), -1))
        share = sum(st.flops_share for st in frame_stats)
        stats["flops"] = stats.get("flops", 0) + int(per_item * share)
        stats["rows"] = stats.get("rows", 0) + len(x)
        stats["batches"] = stats.get("batches", 0) + 1
        for st in frame_stats:
            stats[st.mode] = stats.get(st.mode, 0) + 1
        yield [(i, t, st) for (i, t, _), st in zip(frames_meta, frame_stats)], probs


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


def incremental_occlusion_scan(node, inputs, ctx) -> Scan:
    """IncrementalOcclusionScan and DrillDown: positions through incremental inference."""
    x, cls = inputs[:2]
    ref, grid, batch = node.arg("model"), node.arg("grid"), node.arg("batch")
    patch, stride = grid.patch, grid.stride
    model = ctx.model(ref)
    backend = get_backend(node.arg("backend") or "onnxruntime")
    fill_x = fill_tensor(x[0], node.arg("fill"), model.preprocess, patch)
    out = incremental_scan(node, inputs, ctx, x, cls, model, grid, fill_x, backend)
    ctx.stats(node).update(rows=grid.count, batches=math.ceil(grid.count / batch))
    return _remember(node, ctx, Scan(out.reshape(grid.rows, grid.cols), ref, patch, stride, x),
                     cls)


def naive_occlusion_scan(node, inputs, ctx) -> Scan:
    """The naive plan: every position's occluded image through the full model, in batches."""
    x, cls = inputs[:2]
    ref, grid, batch = node.arg("model"), node.arg("grid"), node.arg("batch")
    patch, stride = grid.patch, grid.stride
    model = ctx.model(ref)
    backend = get_backend(node.arg("backend") or "onnxruntime")
    fill_x = fill_tensor(x[0], node.arg("fill"), model.preprocess, patch)
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
    ctx.stats(node).update(flops=model_flops(model) * grid.count, rows=grid.count,
                           batches=math.ceil(grid.count / batch), bytes=grid.count * x[0].nbytes)
    return _remember(node, ctx, Scan(out.reshape(grid.rows, grid.cols), ref, patch, stride, x),
                     cls)


def _approximate(node) -> dict:
    """The approximate settings a scan ran with (empty: exact), as its result reports them."""
    stage1 = node.arg("stage1")
    settings = {"tau": node.arg("tau"), "drilldown": node.arg("ratio"),
                "coarse_stride": stage1.stride if stage1 is not None else None,
                "predicted_ssim": node.arg("predicted_ssim")}
    return {k: v for k, v in settings.items() if v is not None}


def _remember(node, ctx, scan: Scan, cls: int) -> Scan:
    """Exact maps are kept for the session; an approximate one is scored (SSIM) against the
    exact map of the same query when there is one."""
    from kryptondb.ivm.views import view_name  # keyed like the views: model digest and input

    key = (view_name(scan.model, scan.x), scan.patch, scan.stride, node.arg("fill"), cls)
    settings = _approximate(node)
    if not settings:
        ctx.memo[key] = scan.probability
        return scan
    exact = ctx.memo.get(key)
    score = None
    if exact is not None:
        from kryptondb.approx.quality import ssim

        score = ssim(exact, scan.probability)
        ctx.stats(node).update(ssim=score)
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
        ctx.stats(node).update(reused=1)
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
    ctx.stats(node).update(flops=model_flops(model), bytes=table.nbytes, rows=table.num_rows)
    return V.from_arrow(table)


def incremental_scan(node, inputs, ctx, x, cls, model, grid, fill_x, backend) -> np.ndarray:
    """Every position through incremental inference over the materialized views; with a
    projective field threshold (tau) each layer's recomputed region is capped; with drill-down,
    a coarse stage over the whole map and the requested stride only where drops are largest."""
    stats: dict = {}

    def scan(corners, label):
        return _incremental_positions(node, ctx, inputs[2], corners, grid.patch, cls, model,
                                      fill_x, backend, stats, label)

    ratio = node.arg("ratio")
    if node.op is not Op.DRILL_DOWN:
        out = scan(grid.corners(), f"occlusion {grid.rows}x{grid.cols}")
        computed = grid.count
    else:
        first = node.arg("stage1")
        coarse = first.stride
        rough = scan(first.corners(), f"drill-down stage 1: {first.rows}x{first.cols}")
        fine = grid.corners()
        out, pick = D.combine(rough.reshape(first.rows, first.cols), coarse, fine, ratio,
                              lambda p: scan(fine[p], f"drill-down stage 2: {len(p)} of "
                                                      f"{grid.count}"))
        computed = first.count + len(pick)
        ctx.stats(node).update(stage1=first.count, stage2=len(pick))
    ctx.stats(node).update(gather_s=stats.get("gather_s", 0.0),
                           compute_s=stats.get("compute_s", 0.0),
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
    ctx.stats(node).update(rows=scan.probability.size)
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
    ctx.stats(node).update(rows=table.num_rows)
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
    ctx.stats(node).update(rows=table.num_rows)
    return table


def store(node, inputs, ctx):
    (value,) = inputs
    table = value.to_arrow() if isinstance(value, Heatmap) else value
    ctx.db.put_table(node.arg("table"), table)
    ctx.stats(node).update(rows=table.num_rows, bytes=table.nbytes)
    return value


def _operators() -> dict:
    from kryptondb.exec import catalog_ops as c

    return {
        Op.LOAD_IMAGE: load_image, Op.VIDEO_SCAN: video_scan, Op.PREPROCESS: preprocess,
        Op.FULL_INFERENCE: full_inference, Op.PICK_CLASS: pick_class,
        Op.INCREMENTAL_VIDEO_INFERENCE: incremental_video_inference,
        Op.NAIVE_OCCLUSION_SCAN: naive_occlusion_scan,
        Op.INCREMENTAL_OCCLUSION_SCAN: incremental_occlusion_scan,
        Op.DRILL_DOWN: incremental_occlusion_scan, Op.MATERIALIZE_VIEWS: materialize_views,
        Op.HEATMAP: heatmap, Op.TOP_K: top_k, Op.FRAME_LABELS: frame_labels,
        Op.STORE_TABLE: store, Op.CREATE_MODEL: c.create_model, Op.LOAD_MEDIA: c.load_media,
        Op.SHOW_CATALOG: c.show_catalog, Op.TUNE: c.tune, Op.DESCRIBE_MODEL: c.describe_model,
        Op.DROP: c.drop, Op.SQL: c.sql,
    }


OPERATORS = _operators()
