"""Run a physical DAG: each node's operator on its inputs' values, in topological order.

With ``analyze`` on, each node's stats (wall time, FLOPs, bytes, batches, rows) are recorded in
its ``stats`` dict. Operators that stream (video) return iterators; their time is measured
inside each ``next`` and attributed exclusively (upstream time subtracted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from kryptondb.model.binding import bound
from kryptondb.plan.nodes import Dag


@dataclass
class ExecContext:
    db: object
    text: str = ""
    analyze: bool = False
    progress: Callable | None = None  # (total, label) -> bar with update(n) and close()
    memo: dict = field(default_factory=dict)  # exact occlusion maps by query key (this session)
    sql: object = None  # the connection's SQL sandbox (kryptondb.sql.Sandbox); None: defaults
    deferred: list = field(default_factory=list)  # (what, write): caches stored on success

    # a node's ``model`` argument -> the Model the binder bound it to; never a lookup by name
    model = staticmethod(bound)

    def defer(self, what: str, write: Callable[[], object]) -> None:
        """Store a cache (materialized views) only once the whole statement has succeeded, so
        a statement that fails changes nothing in the catalog."""
        self.deferred.append((what, write))

    def commit_deferred(self) -> None:
        """Run the deferred writes; one that fails is a warning (the result is complete, only
        the cache is missing), not an error."""
        import warnings

        from kryptondb.errors import CacheWarning, KryptonError

        for what, write in self.deferred:
            try:
                write()
            except KryptonError as exc:
                warnings.warn(CacheWarning(f"{what} not stored, the result is complete: {exc}"),
                              stacklevel=2)
        self.deferred.clear()

    def bar(self, total: int, label: str):
        return self.progress(total, label) if self.progress else _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _Timed:
    """An iterator wrapper that adds the time spent in ``next`` to a stats dict."""

    def __init__(self, it: Iterator, stats: dict):
        self.it, self.stats = it, stats

    def __iter__(self):
        return self

    def __next__(self):
        t = time.perf_counter()
        try:
            return next(self.it)
        finally:
            self.stats["inclusive_s"] = self.stats.get("inclusive_s", 0.0) + (
                time.perf_counter() - t)


def run(dag: Dag, ctx: ExecContext):
    """The root node's value."""
    from kryptondb.exec.operators import OPERATORS

    values: list = []
    for n in dag.nodes:
        n.stats.clear()
        inputs = [values[i] for i in n.inputs]
        t = time.perf_counter()
        value = OPERATORS[n.op](n, inputs, ctx)
        n.stats["time_s"] = time.perf_counter() - t
        if isinstance(value, Iterator):
            value = _Timed(value, n.stats)
        values.append(value)
    _exclusive_times(dag)
    return values[-1]


def _exclusive_times(dag: Dag) -> None:
    """Streaming operators: own time = time inside next() minus their streaming inputs'."""
    inclusive = {n.id: n.stats.pop("inclusive_s") for n in dag.nodes if "inclusive_s" in n.stats}
    for n in dag.nodes:
        if n.id in inclusive:
            upstream = sum(inclusive.get(i, 0.0) for i in n.inputs)
            n.stats["time_s"] += max(0.0, inclusive[n.id] - upstream)
    total = sum(n.stats.get("time_s", 0.0) for n in dag.nodes) or 1.0
    for n in dag.nodes:
        n.stats["share"] = n.stats.get("time_s", 0.0) / total
