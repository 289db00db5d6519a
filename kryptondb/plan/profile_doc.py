"""The plan's profile as one JSON-ready document (EXPLAIN PLAN ... FORMAT JSON): the physical
operators with what a run measured, and per occlusion scan its per-layer plan (the
IncrementalPlan the executor builds, kryptondb/ivm/layer_plan.py) with the planner's choice and,
after ANALYZE, each layer's counters. Numbers are raw (seconds, FLOPs, bytes); the text, SVG and
HTML renderers format them (kryptondb/format.py). The schema is in docs/explain.md; a change
that breaks a reader bumps SCHEMA.

``document`` is pure: the same plans and profile give the same document.
"""

from __future__ import annotations

import math
from enum import Enum
from numbers import Integral, Real

from kryptondb.graph.ir import Op as GraphOp
from kryptondb.graph.shapes import node_flops
from kryptondb.ivm.counters import SUFFIX, TAIL
from kryptondb.ivm.tail import tail_batch
from kryptondb.ivm.layer_plan import LayerPlan, layer_plan
from kryptondb.lang.ast import Fill
from kryptondb.obe.grid import Grid
from kryptondb.runtime.backends import runs_winograd
from kryptondb.plan.ops import OCCLUSION_SCANS, Op

SCHEMA = "kryptondb.plan/1"
PLANS = {Op.NAIVE_OCCLUSION_SCAN: "naive", Op.INCREMENTAL_OCCLUSION_SCAN: "incremental",
         Op.DRILL_DOWN: "drilldown"}
NODE_STATS = ("time_s", "share", "flops", "bytes", "batches", "rows", "gather_s", "compute_s",
              "workers", "in_flight", "blocks", "setup_s", "reused", "stage1", "stage2", "ssim")


def document(explained, profile=None, statement: str = "", distribution=None) -> dict:
    """The profile document of ``explained`` (kryptondb.plan.explain.Explained) and, after
    EXPLAIN PLAN ANALYZE, the ``profile`` (kryptondb.exec.profile.Profile) its run measured;
    with a Dask cluster, the optional ``distribution`` (kryptondb/dist/describe.py)."""
    dag = explained.dag
    stats = (lambda n: profile.stats.get(n.id, {})) if profile is not None else None
    doc = {
        "schema": SCHEMA,
        "statement": statement.strip(),
        "analyzed": profile is not None,
        "total_s": profile.total_s() if profile is not None else None,
        "setup_s": dict(profile.setup) if profile is not None else None,
        "nodes": [_node(n, stats) for n in dag.nodes],
        "scans": [scan(n, stats(n) if stats else None) for n in dag.nodes
                  if n.op in OCCLUSION_SCANS],
        "video": video(dag, stats) if stats else None,
    }
    if distribution is not None:
        doc["distribution"] = distribution
    return doc


def json_value(v):
    """A plan argument as JSON: numbers, flags, text and lists as they are; a grid as its
    parts; anything else (a model, a fill) as the text plans print."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, Integral):
        return int(v)
    if isinstance(v, Real):
        return float(v) if math.isfinite(v) else str(v)
    if isinstance(v, Grid):
        return {"rows": v.rows, "cols": v.cols, "patch": list(v.window),
                "stride": list(v.strides), "border": v.border}
    if isinstance(v, (tuple, list)):
        return [json_value(x) for x in v]
    if isinstance(v, Fill):
        return v.text
    if isinstance(v, Enum):
        return str(v)
    return str(v)


def _node(n, stats) -> dict:
    measured = None
    if stats is not None:
        s = stats(n)
        measured = {k: json_value(s[k]) for k in NODE_STATS if k in s}
    return {"id": n.id, "op": str(n.op), "inputs": list(n.inputs),
            "args": {k: json_value(v) for k, v in n.args if v is not None}, "stats": measured}


def scan(n, stats: dict | None = None) -> dict:
    """One occlusion scan: its grid, the planner's choice, its per-layer plan (none for the
    naive plan), the drill-down's stages; with ``stats`` (its node's), the measured rows."""
    grid, model = n.arg("grid"), n.arg("model")
    graph = model.graph
    inputs = n.arg("inputs") or 1
    picked = PLANS[n.op]
    out = {"node": n.id, "plan": picked, "choice": _choice(n),
           "input": list(graph.input_shape), "patch": list(grid.window),
           "stride": list(grid.strides), "positions": grid.count * inputs,
           "tau": n.arg("tau"), "stages": _stages(n, stats)}
    if stats is not None:
        out["measured"] = _scan_measured(stats)
    if picked == "naive":
        return out | _naive(graph)
    plan = layer_plan(graph, grid.window, n.arg("tau"), grid.inside(grid.corners()),
                      runs_winograd(n.arg("backend"), n.arg("winograd")))
    out |= {"frontier": list(plan.frontier), "frontier_reason": plan.frontier_reason,
            "suffix": {"layers": plan.suffix_layers, "flops": plan.suffix_flops,
                       "measured": _measured(stats, SUFFIX, plan.suffix_flops - plan.tail_flops)}
            | _tail(plan, n.arg("batch"), stats),
            "full_flops": plan.full_flops, "incremental_flops": plan.incremental_flops,
            "layers": _layers(plan, stats)}
    return out


def _tail(plan: LayerPlan, batch: int | None, stats: dict | None) -> dict:
    """The suffix's classifier tail, where the plan has one (kryptondb/ivm/tail.py)."""
    if not plan.tail_layers:
        return {}
    return {"tail": {"layers": plan.tail_layers, "flops": plan.tail_flops,
                     "batch": tail_batch(batch or 1),
                     "measured": _measured(stats, TAIL, plan.tail_flops)}}


def _choice(n) -> dict:
    naive, incremental = n.arg("cost_naive"), n.arg("cost_incremental")
    flops = {"naive": naive, "incremental": incremental}
    seconds = {k: n.arg(f"seconds_{k}") for k in flops}  # the calibrated cost model's
    return {"picked": "naive" if n.op is Op.NAIVE_OCCLUSION_SCAN else "incremental",
            "reason": n.arg("why"), "theoretical_speedup": n.arg("theoretical_speedup"),
            "predicted_flops": flops, "predicted_s": seconds}


def _naive(graph) -> dict:
    """The naive plan has no per-layer plan: every layer runs in full at every position."""
    layers = [n for n in graph.nodes if n.op is not GraphOp.INPUT]
    full = sum(node_flops(n, [graph[i].shape for i in n.inputs], graph.weights) for n in layers)
    return {"frontier": [], "frontier_reason": "the naive plan runs the whole network at every "
            "position", "suffix": {"layers": len(layers), "flops": int(full), "measured": None},
            "full_flops": int(full), "incremental_flops": None, "layers": []}


def _layers(plan: LayerPlan, stats: dict | None) -> list[dict]:
    """The plan's rows; the measured counters of a segment (one backend call per batch) sit on
    its first layer, with the segment's FLOPs."""
    flops: dict[int, int] = {}
    for r in plan.rows:
        flops[r.segment] = flops.get(r.segment, 0) + r.incremental_flops
    out, seen = [], set()
    for r in plan.rows:
        head = r.segment not in seen
        seen.add(r.segment)
        step = r.step if head else None
        out.append({"name": r.name, "op": r.op, "kernel": json_value(r.kernel),
                    "stride": json_value(r.stride), "map": list(r.map),
                    "region": list(r.region), "share": r.share,
                    "context": json_value(r.context), "full_flops": r.full_flops,
                    "incremental_flops": r.incremental_flops, "segment": r.segment,
                    "capped": r.capped, "winograd": r.winograd,
                    "measured": _measured(stats, step, flops[r.segment]) if step else None})
    return out


def _measured(stats: dict | None, step: str | None, flops: int) -> dict | None:
    """A step's counters: calls, positions, bytes gathered, gather and compute seconds summed
    over the workers; its share of the scan's wall time; achieved GFLOP/s of its compute."""
    row = (stats or {}).get("layers", {}).get(step)
    if row is None:
        return None
    calls, positions, nbytes, gather_s, compute_s = row
    wall = stats.get("time_s") or 0.0
    workers = stats.get("workers") or 1
    busy = gather_s + compute_s
    return {"calls": calls, "positions": positions, "time_s": busy, "gather_s": gather_s,
            "compute_s": compute_s, "gather_bytes": nbytes,
            "wall_share": busy / workers / wall if wall else None,
            "gflops": flops * positions / compute_s / 1e9 if compute_s else None}


def _scan_measured(stats: dict) -> dict:
    wall = stats.get("time_s") or 0.0
    positions = stats.get("rows") or 0
    return {"time_s": wall, "positions_per_s": positions / wall if wall else None,
            "workers": stats.get("workers"), "chunk": stats.get("chunk"),
            "gather_s": stats.get("gather_s"), "compute_s": stats.get("compute_s")}


def _stages(n, stats: dict | None) -> list[dict] | None:
    """A drill-down's two stages: the coarse grid, then the requested one at ``ratio`` of its
    positions (measured: the positions stage 2 ran)."""
    if n.op is not Op.DRILL_DOWN:
        return None
    coarse, grid = n.arg("stage1"), n.arg("grid")
    fine = {"name": "fine", "stride": list(grid.strides),
            "positions": math.ceil(n.arg("ratio") * grid.count), "ratio": n.arg("ratio")}
    if stats and "stage2" in stats:
        fine["measured_positions"] = stats["stage2"]
    return [{"name": "coarse", "stride": list(coarse.strides), "positions": coarse.count}, fine]


VIDEO_STAGES = ("change_detection_s", "incremental_s", "full_s")


def video(dag, stats) -> dict | None:
    """Per-stage time of a video statement: decoding (VideoScan), preprocessing, and inside
    incremental inference change detection, incremental and full inference; None for a
    statement without a video. ``stats(node)``: the node's measured statistics."""
    by_op = {}
    for n in dag.nodes:
        by_op.setdefault(n.op, stats(n))
    if Op.VIDEO_SCAN not in by_op:
        return None
    ivm = by_op.get(Op.INCREMENTAL_VIDEO_INFERENCE)
    full = by_op.get(Op.FULL_INFERENCE)
    stages = {"decode_s": by_op[Op.VIDEO_SCAN].get("time_s", 0.0),
              "preprocess_s": by_op.get(Op.PREPROCESS, {}).get("time_s", 0.0)}
    if ivm is not None:
        stages |= {k: ivm.get(k, 0.0) for k in VIDEO_STAGES}
    else:
        stages |= {"change_detection_s": 0.0, "incremental_s": 0.0,
                   "full_s": (full or {}).get("time_s", 0.0)}
    return {"stages": stages}
