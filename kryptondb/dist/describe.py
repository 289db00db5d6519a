"""What EXPLAIN PLAN says about a statement's distribution: the cluster, its workers, and per
distributed node the tasks the planner's split gives and their size (an occlusion scan:
kryptondb/dist/split.py; a set statement: one task per image or video); after ANALYZE, each
worker's tasks and time. One document (the profile document's optional ``distribution`` key,
docs/explain.md) and the text drawn from it."""

from __future__ import annotations

from kryptondb.dist.split import split
from kryptondb.format import fmt_time

SCANS = {"NaiveOcclusionScan": "flops_full", "IncrementalOcclusionScan": "flops_incremental",
         "DrillDown": "flops_incremental"}  # the scan kinds, and the FLOPs that size a task
SETS = {"PredictImages": "images", "RecognizeVideos": "videos"}  # one task per input


def distribution(cluster, dag, profile=None) -> dict:
    """The distribution of ``dag``'s work on ``cluster`` (with ``profile``: as measured)."""
    workers = cluster.workers()
    nodes = []
    for n in dag.nodes:
        op = str(n.op)
        if op in SCANS:
            entry = _scan(n, op, max(1, len(workers)))
        elif op in SETS:
            count = len(n.arg(SETS[op]))
            entry = {"tasks": count, "task_size": [1, 1], "unit": SETS[op][:-1],
                     "whole_inputs": True}
        else:
            continue
        measured = profile.stats.get(n.id, {}).get("distribution") if profile else None
        nodes.append({"node": n.id, "op": op, **entry, "measured": measured})
    return {"address": cluster.address, "workers": workers, "nodes": nodes}


def _scan(n, op: str, workers: int) -> dict:
    grid = n.arg("grid")
    tasks = split(n.arg("inputs") or 1, grid.count, workers, float(n.arg(SCANS[op]) or 0),
                  chunkable=op != "DrillDown")
    return {"tasks": len(tasks), "task_size": [min(t.size for t in tasks),
                                               max(t.size for t in tasks)],
            "unit": "position", "whole_inputs": all(t.whole for t in tasks)}


def lines(doc: dict) -> list[str]:
    """The ``== distribution ==`` section of EXPLAIN PLAN's text."""
    count = len(doc["workers"])
    out = ["== distribution ==", f"cluster {doc['address']}: {count} worker{'s' * (count != 1)}"]
    for s in doc["nodes"]:
        lo, hi = s["task_size"]
        if s["unit"] == "position":
            size = f"{hi} positions" if lo == hi else f"{lo}-{hi} positions"
            unit = "one input each" if s["whole_inputs"] else "chunks of one input's positions"
            out.append(f"%{s['node']} {s['op']}: {s['tasks']} tasks ({unit}, {size})")
        else:
            out.append(f"%{s['node']} {s['op']}: {s['tasks']} tasks (one {s['unit']} each)")
        out += _measured(s["measured"])
    return out


def _measured(m: dict | None) -> list[str]:
    if not m:
        return []
    out = [f"    ran {m['tasks']} tasks in {fmt_time(m['wall_s'])}, {fmt_time(m['busy_s'])} "
           f"busy on workers"]
    return out + [f"    worker {w}: {v['tasks']} task{'s' * (v['tasks'] != 1)}, "
                  f"{fmt_time(v['time_s'])}" for w, v in sorted(m["workers"].items())]
