"""Run a physical DAG: each node's operator on its inputs' values, in topological order.

The executor dispatches on the node's kind (``OPERATORS``); the decisions are in the plan. Each
node's statistics (wall time, FLOPs, bytes, batches, rows; the backend sessions built while it
ran, set apart as setup) go into the run's ``Profile``, keyed by node id, beside the plan.
Operators that stream (video) return iterators; their time is measured inside each ``next``
and attributed exclusively (upstream time subtracted, also from the node that drains them). An error an
operator raises names the node it came from (``%5 IncrementalOcclusionScan: ...``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator

from kryptondb.errors import CacheWarning, KryptonError
from kryptondb.exec.operators import OPERATORS
from kryptondb.exec.pipeline import plan
from kryptondb.exec.profile import Profile
from kryptondb.lang import parse
from kryptondb.model.binding import bound
from kryptondb.plan.nodes import Dag
from kryptondb.progress import silent
from kryptondb.runtime.backends import SESSIONS


@dataclass
class ExecContext:
    db: object
    text: str = ""  # the statement, for carets in errors of the SQL it holds
    progress: Callable | None = None  # (total, label) -> bar with update(n) and close()
    memo: dict = field(default_factory=dict)  # exact occlusion maps by query key (this session)
    sql: object = None  # the connection's SQL sandbox (kryptondb.sql.Sandbox); None: defaults
    deferred: list = field(default_factory=list)  # (what, write): caches stored on success
    profile: Profile = field(default_factory=Profile)
    cluster: object = None  # the connection's Dask cluster (kryptondb.dist.Cluster); None: here

    # a node's ``model`` argument -> the Model the binder bound it to; never a lookup by name
    model = staticmethod(bound)

    def stats(self, node) -> dict:
        """Where ``node``'s operator records what it measured."""
        return self.profile.of(node)

    def defer(self, what: str, write: Callable[[], object]) -> None:
        """Store a cache (materialized views) only once the whole statement has succeeded, so
        a statement that fails changes nothing in the catalog."""
        self.deferred.append((what, write))

    def commit_deferred(self) -> None:
        """Run the deferred writes; one that fails is a warning (the result is complete, only
        the cache is missing), not an error."""
        for what, write in self.deferred:
            try:
                write()
            except KryptonError as exc:
                warnings.warn(CacheWarning(f"{what} not stored, the result is complete: {exc}"),
                              stacklevel=2)
        self.deferred.clear()

    def bar(self, total: int, label: str):
        return (self.progress or silent)(total, label)

    def subquery(self, db, text: str, memo: dict):
        """Run the statement ``text`` on ``db`` with this context's progress bars (TUNE's
        queries in its scratch database); the caches it defers are stored when it succeeds."""
        ctx = ExecContext(db, text, self.progress, memo, self.sql, cluster=self.cluster)
        value = run(plan(db, parse(text), text).dag, ctx)
        ctx.commit_deferred()
        return value


def named(exc: KryptonError, node) -> KryptonError:
    """``exc`` with the plan node it came from in front of its message (once: an error passes
    through every streaming node downstream of where it was raised)."""
    if getattr(exc, "plan_node", None) is None:
        exc.plan_node = node.label
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (f"{node.label}: {exc.args[0]}", *exc.args[1:])
    return exc


class _Timed:
    """An iterator wrapper that adds the time spent in ``next`` to a stats dict and names its
    node in the errors raised there."""

    def __init__(self, it: Iterator, stats: dict, node):
        self.it, self.stats, self.node = it, stats, node

    def __iter__(self):
        return self

    def __next__(self):
        t, built = time.perf_counter(), SESSIONS.seconds
        try:
            return next(self.it)
        except KryptonError as exc:
            raise named(exc, self.node)
        finally:
            s = self.stats
            s["inclusive_s"] = s.get("inclusive_s", 0.0) + (time.perf_counter() - t)
            s["inclusive_setup_s"] = s.get("inclusive_setup_s", 0.0) + SESSIONS.seconds - built


def run(dag: Dag, ctx: ExecContext):
    """The root node's value; ``ctx.profile`` holds what each node measured."""
    values: list = []
    for n in dag.nodes:
        stats = ctx.stats(n)
        stats.clear()
        inputs = [values[i] for i in n.inputs]
        t, built = time.perf_counter(), SESSIONS.seconds
        try:
            value = OPERATORS[n.op](n, inputs, ctx)
        except KryptonError as exc:
            raise named(exc, n)
        stats["time_s"] = time.perf_counter() - t
        stats["setup_s"] = SESSIONS.seconds - built  # sessions built: setup, not its work
        if isinstance(value, Iterator):
            value = _Timed(value, stats, n)
        values.append(value)
    ctx.profile.exclusive_times(dag)
    return values[-1]
