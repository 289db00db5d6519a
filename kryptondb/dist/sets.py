"""Set statements on the cluster: PREDICT IMAGES and RECOGNIZE ... IN VIDEOS run their
per-input work function (kryptondb/model/predict.py ``predict_image``,
kryptondb/orv/recognize.py ``recognize_video``) as one task per input: one image, or one video
(its own key frame and materialized views, so no task depends on another). The tables come back
as Arrow tables, in the inputs' order; the client keys and stores them.

Workers read the input files at their absolute paths (media are referenced, never copied into
the database): on a remote cluster they must see the same files (a shared filesystem).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

from kryptondb.dist.tasks import Call, run_calls
from kryptondb.dist.worker import model_for


@dataclass(frozen=True)
class SetRun:
    """Where a set statement's inputs run: the cluster, the bound model, the node's stats."""

    cluster: object
    ref: object  # kryptondb.model.binding.ModelRef
    stats: dict


class _Progress:
    def __init__(self, done: Callable[[int], object]):
        self.update = done

    def close(self) -> None:
        pass


def each(run: SetRun, work: Callable, paths, settings, done: Callable[[int], object]) -> Iterator:
    """``work(model, path, settings)`` for each path, on the workers; the values in order,
    ``done(1)`` as each arrives (like kryptondb/exec/sets.py ``each`` in one process)."""
    model = run.cluster.ship(run.ref)
    calls = [Call(run_one, (run.ref.digest, model, work, os.path.abspath(p), settings))
             for p in paths]
    yield from run_calls(run.cluster, calls, _Progress(done), run.stats)


def run_one(share: int, digest: str, parts, work: Callable, path: str, settings):
    """On a worker: ``work`` on one input with the worker's Model of ``digest``."""
    return work(model_for(digest, parts), path, settings)
