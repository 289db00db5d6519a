"""Running tasks on the cluster from the client: submit them, gather their values in order as
they finish, advance the statement's progress bar, and keep per-worker time for EXPLAIN
ANALYZE. A task's KryptonError fails the statement with that error (the other tasks are
cancelled); Ctrl-C cancels every future and the statement reports cancelled. A task whose
worker dies is run again elsewhere (Dask reschedules it; ``RETRIES`` more tries for a task that
raised something else), so a lost worker does not change the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kryptondb.dist.worker import call, lost, rebuilt
from kryptondb.errors import ClusterError, KryptonError
from kryptondb.limits import current

RETRIES = 2


@dataclass(frozen=True)
class Call:
    """One task: ``fn(share, *args)`` on a worker; ``weight``: its share of the progress bar."""

    fn: object
    args: tuple
    weight: int = 1


def run_calls(cluster, calls: list[Call], bar, stats: dict) -> list:
    """The values of ``calls``, in order; ``stats['distribution']`` says where they ran."""
    # distributed is imported lazily (about a second); only a cluster's statements use it
    from distributed import as_completed

    try:
        hosts = cluster.hosts()  # none: a ClusterError, not tasks waiting forever
    except ClusterError:
        bar.close()
        raise
    limits = current()  # the statement's, applied on the workers too
    futures = [cluster.client.submit(call, c.fn, c.args, hosts, limits, pure=False,
                                     retries=RETRIES) for c in calls]
    order = {f.key: i for i, f in enumerate(futures)}
    values, outcomes, t = [None] * len(calls), [], time.perf_counter()
    try:
        for f in as_completed(futures, loop=cluster.client.loop):
            o = _result(cluster, f)
            if o.failure is not None:
                raise rebuilt(o.failure)
            values[order[f.key]] = o.value
            outcomes.append(o)
            bar.update(calls[order[f.key]].weight)
    except BaseException:  # a task's error, Ctrl-C: nothing else runs for this statement
        cluster.client.cancel(futures)
        raise
    finally:
        bar.close()
    stats["distribution"] = distribution(cluster, calls, outcomes, time.perf_counter() - t)
    return values


def _result(cluster, future):
    try:
        return future.result()
    except KryptonError:
        raise
    except Exception as exc:  # KilledWorker after too many deaths, a cancelled future ...
        raise lost(cluster.address, exc) from exc


def distribution(cluster, calls: list[Call], outcomes, wall_s: float) -> dict:
    """Where the tasks ran: per worker address its tasks and seconds; the tasks' total time on
    workers and the wall time the client waited."""
    workers: dict[str, dict] = {}
    for o in outcomes:
        w = workers.setdefault(o.worker, {"tasks": 0, "time_s": 0.0})
        w["tasks"] += 1
        w["time_s"] += o.seconds
    return {"address": cluster.address, "tasks": len(calls),
            "task_size": max((c.weight for c in calls), default=0), "wall_s": wall_s,
            "busy_s": sum(o.seconds for o in outcomes), "workers": workers}
