"""Source operators: an image (or several), a tensor given to the statement, a video's frames in
chunks, and the model's preprocessing."""

from __future__ import annotations

import os
from typing import Iterator

from kryptondb.media.images import decoded
from kryptondb.orv.pipeline import prefetch, preprocessed
from kryptondb.orv.recognize import frame_chunks


def media_path(ctx, node, kind: str) -> str:
    """The file a scan reads: a catalog name's path, or the quoted path as written."""
    source = node.arg("source")
    if node.arg("catalog"):
        return ctx.db.lookup(kind, source).path
    return os.path.abspath(os.path.expanduser(source))


def load_image(node, inputs, ctx):
    """One image, or the list of an ImageSet's images (``images``): the decode cache's own
    (``decoded``: shared, not copied; the preprocessing only reads them, and keeps what it makes
    of a kept image for the next statement)."""
    images = node.arg("images")
    if images is None:
        img = decoded(media_path(ctx, node, "image"))
        ctx.stats(node).update(rows=1, bytes=img.size[0] * img.size[1] * 3)
        return img
    out = [decoded(path) for path in images.paths]
    ctx.stats(node).update(rows=len(out), bytes=sum(i.size[0] * i.size[1] * 3 for i in out))
    return out


def tensor_scan(node, inputs, ctx):
    """The N x C x H x W inputs the statement was given (bound and checked by the binder)."""
    x = node.arg("tensor").array
    ctx.stats(node).update(rows=len(x), bytes=x.nbytes)
    return x


def video_scan(node, inputs, ctx) -> Iterator:
    path = media_path(ctx, node, "video")
    return frame_chunks(path, node.arg("first") or 0, node.arg("last"), node.arg("every") or 1)


def preprocess(node, inputs, ctx):
    model = ctx.model(node.arg("model"))
    (src,) = inputs
    if isinstance(src, Iterator):  # a video: decoded and preprocessed on a producer thread
        return prefetch(preprocessed(model, src))
    x = model.inputs(src)
    ctx.stats(node).update(rows=len(x), bytes=x.nbytes)
    return x
