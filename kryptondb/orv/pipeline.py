"""The decode pipeline: a producer thread runs an iterator (decoding and preprocessing a
video's chunks) ahead of the consumer (inference), through a bounded queue.

- Backpressure: at most ``depth`` items wait in the queue, so memory stays bounded however
  fast the decoder is.
- Errors: an exception the producer raises (a damaged file) is raised in the consumer, at the
  item where it happened, after the items made before it.
- Stopping: when the consumer stops early (it closes the generator, breaks out of a loop, or a
  Ctrl-C or an error interrupts it), the producer stops at its next item, closes its iterator
  (so the video file is closed) and the thread is joined before ``prefetch`` returns: no thread
  outlives it.

Decoding (FFmpeg), PIL's resize and onnxruntime all release the GIL, so the two threads overlap.
``preprocessed`` makes each chunk's inputs on two threads (the producer and one helper): on 2
cores the producer alone (4.7 ms of a core per vtest.avi frame, most of it PIL's resize) could
not keep up with inference split over both cores; measured, paired, NAIVE on vtest.avi with
MobileNetV2 went from 1.29x to 1.53x of the plain user loop.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Callable, Iterator

import numpy as np

from kryptondb.runtime.backends import usable_cores

DEPTH = 2  # items queued; with the one in use and one waiting to be put: DEPTH + 2 held
WAIT = 0.05  # seconds between checks of the other side while blocked


class _End:
    """The producer's last item: the iterator ended (``error`` None) or raised ``error``."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def prefetch(items: Iterator, depth: int = DEPTH) -> Iterator:
    """``items``, produced on a thread ``depth`` items ahead of the caller."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(items, q, stop), daemon=True,
                              name="kryptondb-decode")
    thread.start()
    try:
        while True:
            item = _get(q, thread)
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def _produce(items: Iterator, q: queue.Queue, stop: threading.Event) -> None:
    """Put each item (then an _End) into ``q`` until the iterator ends or ``stop`` is set."""
    end = _End()
    try:
        for item in items:
            if not _put(q, item, stop):
                return
    except BaseException as exc:  # handed to the consumer, which raises it
        end = _End(exc)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # a generator's finally (closing the file) runs on this thread
    _put(q, end, stop)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; True when it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=WAIT)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, thread: threading.Thread):
    """The next item; an _End if the producer died without saying so."""
    while True:
        try:
            return q.get(timeout=WAIT)
        except queue.Empty:
            if not thread.is_alive() and q.empty():
                return _End(RuntimeError("the decode thread ended without a result"))


def preprocessed(model, chunks: Iterator[list], picture: Callable = lambda item: item[2]
                 ) -> Iterator[tuple[list, np.ndarray]]:
    """(chunk, the model's N x C x H x W input of its pictures) per chunk; ``picture(item)``:
    an item's picture. Half of each chunk is preprocessed on a helper thread (where there is a
    second core), the other half on the calling one; the helper ends with the generator."""
    helper = ThreadPoolExecutor(1, thread_name_prefix="kryptondb-preprocess") \
        if usable_cores() > 1 else None
    try:
        with helper or nullcontext():
            for chunk in chunks:
                yield chunk, _inputs(model, [picture(item) for item in chunk], helper)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # a decoder's generator: its file closed with this one


def _inputs(model, pictures: list, helper) -> np.ndarray:
    half = len(pictures) // 2
    if helper is None or half == 0:
        return model.inputs(pictures)
    first = helper.submit(model.inputs, pictures[:half])
    try:
        rest = model.inputs(pictures[half:])
    except BaseException:
        first.result()  # an error in the earlier frames is the one to report
        raise
    return np.concatenate([first.result(), rest])
