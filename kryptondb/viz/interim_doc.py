"""STAND-IN for the profile document (kryptondb.plan/1) until the engine's own builder
(``kryptondb.plan.profile_doc.document``) is merged: the same signature and keys, filled from
what a plan holds today. Per-layer rows come from the static cost model (the patch at the centre
of the input, as ``ivm.cost.theoretical`` prices it); what only the engine measures (per-layer
time, gather bytes, setup, the planner's predicted seconds) stays null. The lead replaces the one
import of this module in connection.py by the engine's and deletes this file.
"""

from __future__ import annotations

from kryptondb.graph.ir import WINDOWED, Op as GraphOp
from kryptondb.graph.shapes import node_flops
from kryptondb.ivm.cost import SATURATED, centre_regions, unsaturated
from kryptondb.ivm.incremental import _NO_SEGMENT, _is_pointwise
from kryptondb.ivm.regions import fix, read_in
from kryptondb.plan.explain import plain
from kryptondb.plan.ops import OCCLUSION_SCANS, Op

SCHEMA = "kryptondb.plan/1"
PLANS = {Op.NAIVE_OCCLUSION_SCAN: "naive", Op.INCREMENTAL_OCCLUSION_SCAN: "incremental",
         Op.DRILL_DOWN: "drilldown"}


def document(explained, profile=None, statement: str = "") -> dict:
    """The profile document of a statement's physical plan and, after ANALYZE, its run."""
    dag = explained.dag
    stats = profile.stats if profile is not None else {}
    nodes = [{"id": n.id, "op": str(n.op), "inputs": list(n.inputs),
              "args": {k: _json(plain(v)) for k, v in n.args if v is not None},
              "stats": dict(stats[n.id]) if n.id in stats else None} for n in dag.nodes]
    return {"schema": SCHEMA, "statement": statement, "analyzed": profile is not None,
            "total_s": profile.total_s() if profile is not None else None, "setup_s": None,
            "nodes": nodes, "scans": [_scan(n) for n in dag.nodes if n.op in OCCLUSION_SCANS],
            "video": None}


def _json(v):
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)


def _scan(node) -> dict:
    grid, graph = node.arg("grid"), node.arg("model").model.graph
    plan = PLANS[node.op]
    layers = [] if plan == "naive" else layer_rows(graph, grid.window, node.arg("tau"))
    full = sum(_flops(graph, n) for n in graph.nodes)
    done = {row["name"] for row in layers}
    rest = [n for n in graph.nodes if n.name not in done and n.op is not GraphOp.INPUT]
    speedup = node.arg("theoretical_speedup")
    why = node.arg("why") or (f"theoretical speedup {speedup:g} (FLOPs)" if speedup else "")
    stage1 = node.arg("stage1")
    return {"node": node.id, "plan": plan,
            "choice": {"picked": "naive" if plan == "naive" else "incremental", "reason": why,
                       "predicted_s": None},
            "input": list(graph.input_shape), "patch": list(grid.window),
            "stride": list(grid.strides), "positions": grid.count, "tau": node.arg("tau"),
            "frontier": list(node.arg("frontier") or ()),
            "frontier_reason": f"the next layer is global or recomputes over "
                               f"{SATURATED:.0%} of its map" if layers else "",
            "suffix": {"layers": len(rest), "flops": sum(_flops(graph, n) for n in rest)}
            if layers else {"layers": len(graph.nodes) - 1, "flops": full},
            "layers": layers,
            "stages": None if stage1 is None else [
                {"name": "coarse", "stride": list(stage1.strides), "positions": stage1.count},
                {"name": "fine", "stride": list(grid.strides), "positions": grid.count}]}


def layer_rows(graph, patch, tau=None) -> list[dict]:
    """One row per layer an incremental plan maintains, the patch at the centre of the input."""
    tight = {k: fix(r, graph[k].shape) for k, r in centre_regions(graph, patch).items()}
    fixed = {k: fix(r, graph[k].shape) for k, r in centre_regions(graph, patch, tau).items()}
    keep, users = unsaturated(graph, fixed), graph.consumers()
    rows, segment, fused = [], -1, set()
    for n in graph.nodes:
        if n.name not in keep or n.op is GraphOp.INPUT:
            continue
        if n.name not in fused:
            segment += 1
        nxt = users[n.name]
        if (len(nxt) == 1 and nxt[0] in keep and _is_pointwise(graph[nxt[0]], graph)
                and nxt[0] not in graph.outputs and n.op not in _NO_SEGMENT):
            fused.add(nxt[0])
        rows.append(_row(graph, n, fixed[n.name], tight[n.name], segment))
    return rows


def _row(graph, n, r, tight, segment: int) -> dict:
    _, h, w = n.shape
    src = graph[n.inputs[0]].shape[1:]
    ctx = read_in(n, r, src) if n.op in WINDOWED else r
    context = [ctx.rh, ctx.rw] if n.op in WINDOWED else [r.h, r.w]
    full = _flops(graph, n)
    return {"name": n.name, "op": n.op.value,
            "kernel": list(n.attr("kernel", (1, 1))), "stride": list(n.attr("stride", (1, 1))),
            "map": list(n.shape), "region": [r.h, r.w], "share": r.h * r.w / (h * w),
            "context": context, "full_flops": full,
            "incremental_flops": round(full * r.h * r.w / (h * w)), "segment": segment,
            "capped": (r.h, r.w) != (tight.h, tight.w), "measured": None}


def _flops(graph, n) -> int:
    return node_flops(n, [graph[i].shape for i in n.inputs], graph.weights)
