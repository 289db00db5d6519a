"""Operators that make result tables: the top-k classes (of one image or per frame), the
per-frame labels of a video, and storing a result as a catalog table (INTO)."""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa

from kryptondb.errors import CatalogError
from kryptondb.exec.sources import media_path
from kryptondb.model.predict import top_k_rows
from kryptondb.orv.recognize import label_table
from kryptondb.orv.sheet import VIDEO_KEY
from kryptondb.result import Heatmap, Heatmaps


def top_k(node, inputs, ctx):
    (probs,) = inputs
    k = node.arg("k")
    model = ctx.model(node.arg("model"))
    if isinstance(probs, Iterator):
        return ((meta, top_k_rows(p, k, model)) for meta, p in probs)
    table = pa.table(top_k_rows(probs, k, model)[0])
    ctx.stats(node).update(rows=table.num_rows)
    return table


def frame_labels(node, inputs, ctx) -> pa.Table:
    """The relation (frame, timestamp, rank, class, label, probability), plus per-frame stats
    columns when the frames ran incrementally (changed, boxes, flops_share, mode; agree and
    max_abs_diff WITH AGREEMENT)."""
    (stream,) = inputs
    bar = ctx.bar(0, "frames")
    table = label_table(stream, bar.update)
    bar.close()
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
