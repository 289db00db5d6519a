"""What an incremental plan measures as it runs, per step (a layer, or a fused run of layers):
calls, positions, bytes gathered, gather and compute seconds. EXPLAIN PLAN ANALYZE reports them
per layer beside the plan's own figures (kryptondb/plan/profile_doc.py)."""

from __future__ import annotations

SUFFIX = "::suffix"  # the per-step counters' key of the global part (frontier maps, suffix run)
TAIL = "::tail"  # the classifier tail's, where a plan runs it over many chunks' positions at once


def count(stats: dict, step: str, positions: int, nbytes: int, gather_s: float,
          compute_s: float) -> None:
    """Add one call of ``step`` to a run's counters: ``stats["layers"][step]`` is [calls,
    positions, bytes gathered, gather seconds, compute seconds]; ``gather_s`` and ``compute_s``
    total them. One dict per worker's chunk (summed by its driver): no locks on the hot path."""
    row = stats.setdefault("layers", {}).setdefault(step, [0, 0, 0, 0.0, 0.0])
    row[0] += 1
    row[1] += positions
    row[2] += nbytes
    row[3] += gather_s
    row[4] += compute_s
    stats["gather_s"] = stats.get("gather_s", 0.0) + gather_s
    stats["compute_s"] = stats.get("compute_s", 0.0) + compute_s


def merge(mine: dict, layers: dict) -> None:
    """Add one chunk's per-step counters (its ``stats["layers"]``) to a scan's."""
    for step, row in layers.items():
        have = mine.setdefault(step, [0, 0, 0, 0.0, 0.0])
        for k, v in enumerate(row):
            have[k] += v
