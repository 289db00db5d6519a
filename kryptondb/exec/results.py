"""Operators that make result tables: the top-k classes (of one image or per frame), the
per-frame labels of a video, and storing a result as a catalog table (INTO)."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa

from kryptondb.errors import CatalogError
from kryptondb.exec.sources import media_path
from kryptondb.orv.incremental import FrameStat
from kryptondb.orv.sheet import VIDEO_KEY
from kryptondb.result import Heatmap, Heatmaps


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
    # the video, for a contact sheet of the frames
    table = table.replace_schema_metadata({VIDEO_KEY: media_path(ctx, node, "video")})
    ctx.stats(node).update(rows=table.num_rows)
    return table


def store(node, inputs, ctx):
    """INTO: the result stored as a table; one of that name (made since the statement was
    bound, by another connection) is replaced only with OR REPLACE."""
    (value,) = inputs
    table = value.to_arrow() if isinstance(value, (Heatmap, Heatmaps)) else value
    name = node.arg("table")
    if not node.arg("or_replace") and name in ctx.db.names("table"):
        raise CatalogError(f"table {name!r} exists; use INTO OR REPLACE {name}")
    ctx.db.put_table(name, table)
    ctx.stats(node).update(rows=table.num_rows, bytes=table.nbytes)
    return value
