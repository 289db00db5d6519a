"""Running an incremental scan's chunks side by side: a pool whose main thread takes part, and a
count of the positions in flight (EXPLAIN ANALYZE reports the most, which the planner's batch
bounds)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, TimeoutError
from contextlib import contextmanager


class InFlight:
    """Counts the positions being computed at once (by all workers), and the most seen."""

    def __init__(self):
        self.now = self.most = 0
        self.lock = threading.Lock()

    @contextmanager
    def __call__(self, n: int):
        with self.lock:
            self.now += n
            self.most = max(self.most, self.now)
        try:
            yield
        finally:
            with self.lock:
                self.now -= n


class Pool:
    """Chunks of a range run ``workers`` at a time. Each worker takes the next chunk when it
    finishes one, so a slow chunk holds up no other worker (lock-step rounds waited for the
    slower of each pair), and the chunks are of even sizes, a multiple of ``workers`` of them,
    so that none runs alone at the end: 729 positions in chunks of 32 left one worker idle for
    the last chunk of 25, 3% of the scan's wall time on two cores. Each worker's first chunk is
    its own (chunk k to worker k): taken from the queue, chunks of a millisecond all went to the
    main thread before a helper thread woke up, which ran a batch split in two (a small model's
    naive scan) on one core, 1.7x slower. The main thread takes chunks too: it is never parked
    for long in a wait, so Ctrl-C (KeyboardInterrupt, raised only in the main thread) stops
    the scan within one chunk (a pool's result() wait sometimes lost it in the REPL)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.helpers = ThreadPoolExecutor(workers - 1, thread_name_prefix="kryptondb-ivm") \
            if workers > 1 else None

    def map(self, fn, count: int, chunk: int):
        """fn(start, stop) over chunks of range(count) of at most ``chunk`` each, results in
        order."""
        bounds = spans(count, chunk, self.workers)
        if self.helpers is None:
            yield from (fn(a, b) for a, b in bounds)
            return
        first = min(self.workers, len(bounds))  # one each, then from the queue
        queue, done = _Queue(len(bounds), first), {}
        helpers = [self.helpers.submit(_drain, fn, bounds, queue, done, k)
                   for k in range(1, first)]
        ready, k = 0, 0 if bounds else None
        try:
            while k is not None:
                done[k] = fn(*bounds[k])
                while ready in done:
                    yield done.pop(ready)
                    ready += 1
                k = queue.take()  # after the yields: what the caller does there takes time
            _join(helpers)
            while ready < len(bounds):
                yield done.pop(ready)
                ready += 1
        finally:
            queue.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.helpers is not None:
            self.helpers.shutdown(cancel_futures=True)


def spans(count: int, chunk: int, workers: int) -> list[tuple[int, int]]:
    """(start, stop) of chunks covering range(count): at most ``chunk`` each, sizes within one
    of each other, and a multiple of ``workers`` of them where there are that many items."""
    rounds = -(-count // max(1, chunk * workers))
    n = min(count, rounds * workers)
    return [(count * k // n, count * (k + 1) // n) for k in range(n)]


class _Queue:
    """The next chunk's index, taken under a lock; None once all are taken or it is stopped."""

    def __init__(self, n: int, start: int = 0):
        self.next, self.n, self.lock = start, n, threading.Lock()

    def take(self) -> int | None:
        with self.lock:
            if self.next >= self.n:
                return None
            self.next += 1
            return self.next - 1

    def stop(self) -> None:
        with self.lock:
            self.next = self.n


def _drain(fn, bounds, queue: _Queue, done: dict, k: int) -> None:
    """A helper's loop: chunk ``k``, then chunks from the queue until none are left; the first
    error stops every worker."""
    try:
        while k is not None:
            done[k] = fn(*bounds[k])
            k = queue.take()
    except BaseException:
        queue.stop()
        raise


def _join(futures) -> None:
    """Wait for the helpers in short slices (Ctrl-C stays deliverable); their errors raise."""
    for f in futures:
        while True:
            try:
                f.result(timeout=0.1)
                break
            except TimeoutError:
                continue
