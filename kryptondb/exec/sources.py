"""Source operators: an image, a video's frames in chunks, and the model's preprocessing."""

from __future__ import annotations

import os
from typing import Iterator

from kryptondb.media.images import load_image as load
from kryptondb.media.video import frames

VIDEO_CHUNK = 16  # frames per chunk the video operators pass along


def media_path(ctx, node, kind: str) -> str:
    """The file a scan reads: a catalog name's path, or the quoted path as written."""
    source = node.arg("source")
    if node.arg("catalog"):
        return ctx.db.lookup(kind, source).path
    return os.path.abspath(os.path.expanduser(source))


def load_image(node, inputs, ctx):
    img = load(media_path(ctx, node, "image"))
    ctx.stats(node).update(rows=1, bytes=img.size[0] * img.size[1] * 3)
    return img


def video_scan(node, inputs, ctx) -> Iterator:
    path = media_path(ctx, node, "video")
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


def preprocess(node, inputs, ctx):
    model = ctx.model(node.arg("model"))
    (src,) = inputs
    if isinstance(src, Iterator):
        return ((b, model.inputs([img for _, _, img in b])) for b in src)
    x = model.inputs(src)
    ctx.stats(node).update(rows=1, bytes=x.nbytes)
    return x
