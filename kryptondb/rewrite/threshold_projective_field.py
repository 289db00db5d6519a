"""threshold_projective_field: with a threshold tau (``APPROXIMATE TAU t``, or chosen by
meet_accuracy_target), every layer of the incremental scan recomputes at most round(tau * side)
rows and columns of its map, centred on the changed region; changes outside are dropped. The
plan's FLOPs and theoretical speedup are recomputed with the capped regions.
"""

from __future__ import annotations

from kryptondb.ivm.cost import theoretical
from kryptondb.plan.ops import Op
from kryptondb.plan.nodes import PlanNode, transform


def threshold_projective_field(plan: PlanNode, ctx) -> PlanNode:
    a = ctx.options.approximate

    def visit(n: PlanNode) -> PlanNode:
        if n.op != Op.OCCLUSION_SCAN or n.arg("mode") != "incremental":
            return n
        tau = n.arg("tau") if n.arg("tau") is not None else (a.tau if a else None)
        if tau is None:
            return n
        cost = theoretical(ctx.model(n.arg("model")).graph, n.arg("grid").window, tau)
        return n.with_args(tau=tau, flops_incremental=cost.incremental_flops,
                           theoretical_speedup=round(cost.speedup, 2))

    return transform(plan, visit)
