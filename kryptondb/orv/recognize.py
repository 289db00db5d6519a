"""RECOGNIZE's work on one video, as a plain function: ``recognize_video(model, path,
settings)`` returns that video's frame relation (frame, timestamp, rank, class, label,
probability, and per-frame stats when it ran incrementally). RECOGNIZE ... IN VIDEOS runs it
video after video with one loaded model (kryptondb/exec/sets.py); a distributed worker runs the
same function. Frames stream in chunks: memory does not grow with the video's length, and each
video starts from its own key frame (its own materialized views).

The single-video plan's operators (kryptondb/exec) use the same pieces: ``frame_chunks``,
``incremental_probabilities`` and ``label_table``.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import Iterable, Iterator

import pyarrow as pa

from kryptondb.errors import KryptonError
from kryptondb.media.video import DECODES, frames, probe, scaled_input, to_rgb
from kryptondb.model.predict import top_k_rows
from kryptondb.orv.features import video_ivm
from kryptondb.orv.incremental import FrameStat, Settings, VideoIVM
from kryptondb.orv.pipeline import prefetch, preprocessed
from kryptondb.runtime.backends import get_backend

CHUNK = 16  # frames decoded, preprocessed and run together


@dataclass(frozen=True)
class VideoSettings:
    """What a RECOGNIZE statement asks of each video: frames ``first``..``last`` (inclusive)
    every ``every``-th, their ``k`` most probable classes, on ``backend`` ``batch`` frames at a
    time; ``incremental``: the IVM settings, or None for full inference on every frame (NAIVE)."""

    k: int = 5
    first: int = 0
    last: int | None = None
    every: int = 1
    backend: str = "onnxruntime"
    batch: int = CHUNK
    incremental: Settings | None = None
    decode: str = "exact"

    def __post_init__(self):
        if self.decode not in DECODES:
            raise KryptonError(f"decode must be one of {', '.join(DECODES)}, got {self.decode!r}")


def frame_chunks(path: str, first: int = 0, last: int | None = None, every: int = 1,
                 convert=to_rgb) -> Iterator[list]:
    """Lists of up to CHUNK (index, timestamp, picture) of the video's frames, decoded lazily;
    ``convert(frame)`` makes the picture (kryptondb/media/video.py ``frames``)."""
    batch = []
    for item in frames(path, first, last, every, convert):
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def incremental_probabilities(ivm: VideoIVM, model, x):
    """(probabilities (n, classes), per-frame FrameStat) of a window of preprocessed frames,
    recomputing only what changed since ``ivm``'s base."""
    out, stats = ivm.window(x)
    return model.probabilities(out.reshape(len(x), -1)), stats


def label_table(stream: Iterable, on_chunk=lambda n: None) -> pa.Table:
    """The frame relation of a stream of (frames meta, per-frame top-k rows); a frame's meta is
    (index, timestamp, picture or FrameStat), a FrameStat adding its fields as columns.
    ``on_chunk(n)`` is called after each chunk of n frames (progress)."""
    cols: dict[str, list] = {k: [] for k in ("frame", "timestamp", "rank", "class", "label",
                                             "probability")}
    extra: dict[str, list] = {}
    for meta, per_frame in stream:
        for (index, t, info), rows in zip(meta, per_frame):
            n = len(rows["label"])
            cols["frame"] += [index] * n
            cols["timestamp"] += [t] * n
            for key in ("rank", "class", "probability"):
                cols[key] += rows[key].to_pylist()
            cols["label"] += rows["label"]
            if isinstance(info, FrameStat):
                for key, value in vars(info).items():
                    if value is not None:
                        extra.setdefault(key, []).extend([value] * n)
        on_chunk(len(meta))
    types = {"frame": pa.int32(), "timestamp": pa.float64(), "rank": pa.int32(),
             "class": pa.int32(), "label": pa.string(), "probability": pa.float32()}
    table = pa.table({k: pa.array(cols[k], t) for k, t in types.items()})
    for key, values in extra.items():
        if len(values) == table.num_rows:
            table = table.append_column(key, pa.array(values))
    return table


def recognize_video(model, path: str, settings: VideoSettings) -> pa.Table:
    """The frame relation of the video file at ``path``; its frames are streamed."""
    backend = get_backend(settings.backend)
    with closing(prefetch(model_chunks(model, path, settings))) as inputs:  # on error too
        return label_table((meta, top_k_rows(p, settings.k, model))
                           for meta, p in _probabilities(model, backend, inputs, settings))


def model_chunks(model, path: str, settings: VideoSettings) -> Iterator[tuple[list, object]]:
    """(frames meta, the model's N x C x H x W inputs) per chunk of the video's frames, through
    the decode path ``settings.decode``; a frame's meta is (index, timestamp, None)."""
    convert = to_rgb
    if settings.decode == "scaled":
        if model.preprocess is None:
            raise KryptonError(f"decode 'scaled' needs model {model.name}'s preprocessing; it "
                               "has none")
        info = probe(path)
        convert = scaled_input(model.preprocess, info["width"], info["height"])
    chunks = frame_chunks(path, settings.first, settings.last, settings.every, convert)
    for meta, x in preprocessed(model, chunks):
        yield [(i, t, None) for i, t, _ in meta], x


def _probabilities(model, backend, inputs, settings: VideoSettings) -> Iterator:
    """(frames meta, probabilities) per chunk: in full, or incrementally over a fresh base."""
    if settings.incremental is None:
        for meta, x in inputs:
            yield meta, model.predict(x, backend=backend, batch_size=settings.batch)
        return
    ivm = video_ivm(model, backend, settings.incremental)
    for meta, x in inputs:
        probs, stats = incremental_probabilities(ivm, model, x)
        yield [(i, t, st) for (i, t, _), st in zip(meta, stats)], probs
