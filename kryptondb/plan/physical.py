"""Lowering: the rewritten logical plan -> the physical operator DAG the executor runs.

Each physical operator carries the rewrite's decisions in its kind, so the executor dispatches
on it and never decides again: an ``OcclusionScan`` the rules left naive runs as
``NaiveOcclusionScan``; an incremental one as ``IncrementalOcclusionScan`` (its frontier and
segments as batch_queries sized them) or, with drill-down, as ``DrillDown`` (stage 1 over the
coarse grid, stage 2 at the requested stride where the drops are largest).
"""

from __future__ import annotations

from dataclasses import replace

from kryptondb.plan.nodes import Dag, PlanNode, transform
from kryptondb.plan.ops import Op

# logical operator -> physical operator (others keep their kind)
PHYSICAL = {Op.IMAGE_SCAN: Op.LOAD_IMAGE, Op.INFERENCE: Op.FULL_INFERENCE,
            Op.CHOOSE_CLASS: Op.PICK_CLASS, Op.STORE: Op.STORE_TABLE,
            Op.VIDEO_IVM: Op.INCREMENTAL_VIDEO_INFERENCE}
DECIDED = ("mode", "drilldown", "coarse_stride")  # what the physical kind of a scan says


def lower(plan: PlanNode) -> Dag:
    return Dag.from_tree(transform(plan, _physical))


def _physical(n: PlanNode) -> PlanNode:
    if n.op is Op.OCCLUSION_SCAN:
        return _scan(n)
    return replace(n, op=PHYSICAL.get(n.op, n.op))


def _scan(n: PlanNode) -> PlanNode:
    args = tuple((k, v) for k, v in n.args if k not in DECIDED)
    if n.arg("mode") == "naive":
        return replace(n, op=Op.NAIVE_OCCLUSION_SCAN, args=args)
    if n.arg("drilldown") is None:
        return replace(n, op=Op.INCREMENTAL_OCCLUSION_SCAN, args=args)
    stage1 = n.arg("grid").with_strides(n.arg("coarse_stride"))
    return replace(n, op=Op.DRILL_DOWN, args=args).with_args(stage1=stage1,
                                                             ratio=n.arg("drilldown"))
