"""The incremental scan's worker pool (kryptondb/runtime/workers.py): chunks of even sizes, a
multiple of the workers of them; every chunk run once, results in order; a slow chunk holds up
no other worker; at most ``workers`` chunks at once; the first error stops the scan."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from kryptondb.runtime.workers import Pool, spans


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 5000), st.integers(1, 300), st.integers(1, 8))
def test_chunks_cover_the_range_evenly(count, chunk, workers):
    got = spans(count, chunk, workers)
    assert [a for a, _ in got[1:]] == [b for _, b in got[:-1]]  # consecutive, no gaps
    assert (got[0][0], got[-1][1]) == (0, count) if count else got == []
    sizes = [b - a for a, b in got]
    assert all(0 < s <= chunk for s in sizes)
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert len(got) % workers == 0 or len(got) == count  # none runs alone, or one item each
    assert len(got) <= workers * -(-count // (chunk * workers))  # no more rounds than needed


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_chunk_runs_once_and_results_come_in_order(workers):
    seen, lock = [], threading.Lock()

    def fn(a, b):
        with lock:
            seen.append((a, b))
        return a, b

    with Pool(workers) as pool:
        out = list(pool.map(fn, 1000, 37))
    assert out == spans(1000, 37, workers)
    assert sorted(seen) == out


def test_a_slow_chunk_holds_up_no_other_worker():
    """The main thread's first chunk waits until every other chunk has run: the helper takes
    them one after the other (lock-step rounds would wait for this chunk first)."""
    bounds = spans(300, 10, 2)
    others_done = threading.Event()
    ran = []

    def fn(a, b):
        if a == 0:
            assert others_done.wait(timeout=30), "the other chunks waited for the slow one"
        else:
            ran.append(a)
            if len(ran) == len(bounds) - 1:
                others_done.set()
        return a

    with Pool(2) as pool:
        assert list(pool.map(fn, 300, 10)) == [a for a, _ in bounds]


def test_every_worker_runs_its_own_first_chunk():
    """A batch split in two runs on two threads however short its halves: taken from a queue,
    both went to the main thread before the helper woke up (1.7x slower on a small model)."""
    with Pool(2) as pool:
        for _ in range(50):
            names = list(pool.map(lambda a, b: threading.current_thread().name, 2, 1))
            assert len(set(names)) == 2


def test_a_consumer_that_stops_stops_the_chunks():
    """An error in the loop over the results (the scan's scoring) stops the queue: the helper
    finishes the chunk it has and takes no other."""
    ran = []

    def fn(a, b):
        ran.append(a)
        time.sleep(0.005)
        return a

    with Pool(2) as pool, pytest.raises(KeyError):
        for _ in pool.map(fn, 300, 7):
            raise KeyError("scoring failed")
    assert len(ran) < len(spans(300, 7, 2))


@pytest.mark.parametrize("k", [0, 1, 20])  # the main thread's chunk, a helper's, a late one
def test_the_first_error_stops_the_scan(k):
    ran, bad = [], spans(300, 7, 2)[k][0]

    def fn(a, b):
        ran.append(a)
        if a == bad:
            raise ValueError(f"chunk {a}")
        time.sleep(0.005)  # the others take a while: the error stops the queue long before
        return a

    with Pool(2) as pool, pytest.raises(ValueError, match=f"chunk {bad}"):
        list(pool.map(fn, 300, 7))
    assert len(ran) < len(spans(300, 7, 2))  # the rest were never started
