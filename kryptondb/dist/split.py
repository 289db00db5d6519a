"""Splitting a scan into tasks of sensible size (pure; EXPLAIN and the run use the same split).

A task is one input (an image: the common case, and always for a drill-down, whose second stage
depends on its first over the whole grid), or a chunk of one input's positions when there are
fewer inputs than workers: ``PER_WORKER`` chunks per worker, each at least ``MIN_S`` seconds at
the cost model's nominal rate (kryptondb/ivm/cost.py), never one task per position. The per-task overhead (scheduling, transfer: milliseconds, bench/scale.py) is then
a small share of each task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kryptondb.errors import KryptonError
from kryptondb.ivm.cost import FLOPS_PER_S

MIN_S = 0.3      # a chunk never shorter than this (nominal), so overhead stays small
PER_WORKER = 2   # chunks per worker when one input is split (evens out uneven workers)


@dataclass(frozen=True, slots=True)
class Task:
    """Input ``input``'s positions [start, stop) (``whole``: all of them, as one scan)."""

    input: int
    start: int
    stop: int
    whole: bool

    @property
    def size(self) -> int:
        return self.stop - self.start


def split(inputs: int, positions: int, workers: int, flops_per_position: float = 0.0,
          chunkable: bool = True) -> tuple[Task, ...]:
    """The tasks of a scan of ``inputs`` inputs of ``positions`` positions each on ``workers``
    workers; ``chunkable``: whether an input may be split by positions (not a drill-down).

    >>> [t.size for t in split(6, 196, 2)]
    [196, 196, 196, 196, 196, 196]
    >>> [t.size for t in split(1, 729, 2, 1.66e9)]
    [182, 182, 182, 183]
    """
    if inputs < 1 or positions < 1 or workers < 1:
        raise KryptonError(f"a scan to split needs inputs, positions and workers, got {inputs}, "
                           f"{positions}, {workers}")
    if not chunkable or inputs >= workers:
        return tuple(Task(n, 0, positions, True) for n in range(inputs))
    chunk = chunk_size(inputs, positions, workers, flops_per_position)
    if chunk >= positions:
        return tuple(Task(n, 0, positions, True) for n in range(inputs))
    k = math.ceil(positions / chunk)  # chunks of one input, their sizes within one of another
    bounds = [positions * i // k for i in range(k + 1)]
    return tuple(Task(n, a, b, False) for n in range(inputs) for a, b in zip(bounds, bounds[1:]))


def chunk_size(inputs: int, positions: int, workers: int, flops_per_position: float) -> int:
    """Positions per chunk: ``PER_WORKER`` chunks per worker, each at least ``MIN_S`` seconds
    at the nominal rate (unknown FLOPs: no floor)."""
    even = math.ceil(inputs * positions / (PER_WORKER * workers))
    per_position = flops_per_position / FLOPS_PER_S
    return max(even, math.ceil(MIN_S / per_position)) if per_position > 0 else even
