"""Running an incremental scan's chunks side by side: a pool whose main thread takes part, and a
count of the positions in flight (EXPLAIN ANALYZE reports the most, which the planner's batch
bounds)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
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
    """Chunks of a range run ``workers`` at a time. The main thread runs one chunk of every
    round itself, helpers the others: it is never parked for long in a wait, so Ctrl-C
    (KeyboardInterrupt, raised only in the main thread) stops the scan within one chunk (a
    pool's result() wait sometimes lost it in the REPL)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.helpers = ThreadPoolExecutor(workers - 1, thread_name_prefix="kryptondb-ivm") \
            if workers > 1 else None

    def map(self, fn, count: int, chunk: int):
        """fn(start, stop) over chunks of range(count), results in order."""
        starts = list(range(0, count, chunk))
        for r in range(0, len(starts), self.workers):
            mine, *theirs = starts[r:r + self.workers]
            pending = [self.helpers.submit(fn, s, min(s + chunk, count)) for s in theirs]
            yield fn(mine, min(mine + chunk, count))
            for f in pending:
                yield f.result()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.helpers is not None:
            self.helpers.shutdown(cancel_futures=True)
