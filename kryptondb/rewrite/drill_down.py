"""drill_down: ``DRILLDOWN r [TARGET t]`` splits the incremental scan in two stages: the whole
map at a coarse stride S1 = sqrt(t / (1 - r t)) * S, then the requested stride S only at the
fraction r of positions whose upsampled first-stage drops are largest. Predicted speedup over
one stage: S1^2 / (S^2 + r S1^2).
"""

from __future__ import annotations

from kryptondb.approx import drilldown as D
from kryptondb.plan.ops import Op
from kryptondb.plan.nodes import PlanNode, transform


def drill_down(plan: PlanNode, ctx) -> PlanNode:
    a = ctx.options.approximate

    def visit(n: PlanNode) -> PlanNode:
        if n.op != Op.OCCLUSION_SCAN or n.arg("mode") != "incremental":
            return n
        ratio = n.arg("drilldown") or (a.drilldown if a else None)
        if ratio is None:
            return n
        target = n.arg("target") or (a.target if a and a.target else D.default_target(ratio))
        stride = n.arg("grid").strides[0]  # KQL: one stride for both axes
        coarse = D.coarse_stride(stride, ratio, target)
        return n.with_args(drilldown=ratio, target=target, coarse_stride=coarse,
                           drilldown_speedup=round(D.speedup(coarse, stride, ratio), 2))

    return transform(plan, visit)
