"""fuse_occlusion_scan: Occlude -> Inference -> ClassProbability becomes one OcclusionScan that
streams batches of occluded inputs through the model without materialising all of them; it
takes the three nodes' arguments (grid, fill or baseline, inputs; model; score).

This is the naive plan (one full inference per position). maintain_views, next, turns it into
incremental inference over materialized views.
"""

from __future__ import annotations

from kryptondb.plan.ops import Op
from kryptondb.plan.nodes import PlanNode, node, transform


def fuse_occlusion_scan(plan: PlanNode, ctx) -> PlanNode:
    def visit(n: PlanNode) -> PlanNode:
        if n.op != Op.CLASS_PROBABILITY:
            return n
        inf, cls = n.children
        if inf.op != Op.INFERENCE or inf.children[0].op != Op.OCCLUDE:
            return n
        occ = inf.children[0]
        args = dict(occ.args) | {k: v for k, v in inf.args if k != "batch"} | dict(n.args) | \
            {"mode": "naive"}  # the window's, the model's and the score's arguments
        return node(Op.OCCLUSION_SCAN, occ.children[0], cls, **args)

    return transform(plan, visit)
