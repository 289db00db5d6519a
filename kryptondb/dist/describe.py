"""What EXPLAIN PLAN says about a statement's distribution: the cluster, its workers, and per
occlusion scan the tasks the planner's split gives (kryptondb/dist/split.py) and their size;
after ANALYZE, each worker's tasks and time. One document (the profile document's optional
``distribution`` key, docs/explain.md) and the text drawn from it."""

from __future__ import annotations

from kryptondb.dist.split import split
from kryptondb.format import fmt_time

SCANS = {"NaiveOcclusionScan": "flops_full", "IncrementalOcclusionScan": "flops_incremental",
         "DrillDown": "flops_incremental"}  # the scan kinds, and the FLOPs that size a task


def distribution(cluster, dag, profile=None) -> dict:
    """The distribution of ``dag``'s scans on ``cluster`` (with ``profile``: as measured)."""
    workers = cluster.workers()
    scans = []
    for n in dag.nodes:
        if str(n.op) not in SCANS:
            continue
        grid = n.arg("grid")
        tasks = split(n.arg("inputs") or 1, grid.count, max(1, len(workers)),
                      float(n.arg(SCANS[str(n.op)]) or 0), chunkable=str(n.op) != "DrillDown")
        measured = profile.stats.get(n.id, {}).get("distribution") if profile else None
        scans.append({"node": n.id, "op": str(n.op), "tasks": len(tasks),
                      "task_positions": [min(t.size for t in tasks), max(t.size for t in tasks)],
                      "whole_inputs": all(t.whole for t in tasks), "measured": measured})
    return {"address": cluster.address, "workers": workers, "scans": scans}


def lines(doc: dict) -> list[str]:
    """The ``== distribution ==`` section of EXPLAIN PLAN's text."""
    out = ["== distribution ==", f"cluster {doc['address']}: {len(doc['workers'])} worker"
           + "s" * (len(doc["workers"]) != 1)]
    for s in doc["scans"]:
        lo, hi = s["task_positions"]
        size = f"{hi} positions" if lo == hi else f"{lo}-{hi} positions"
        unit = "one input each" if s["whole_inputs"] else "chunks of one input's positions"
        out.append(f"%{s['node']} {s['op']}: {s['tasks']} tasks ({unit}, {size})")
        m = s["measured"]
        if m:
            out.append(f"    ran {m['tasks']} tasks in {fmt_time(m['wall_s'])}, "
                       f"{fmt_time(m['busy_s'])} busy on workers")
            out += [f"    worker {w}: {v['tasks']} task{'s' * (v['tasks'] != 1)}, "
                    f"{fmt_time(v['time_s'])}"
                    for w, v in sorted(m["workers"].items())]
    return out
