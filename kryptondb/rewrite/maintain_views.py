"""maintain_views: the IVM rewrite. The naive OcclusionScan (a full inference per position)
becomes an incremental scan over materialized views: the base image's output of every layer is
computed once (MaterializeViews), and each position recomputes, layer by layer, only the region
its patch reaches, up to the first global layer; the rest of the network runs in full.

The plan records the static cost model's FLOPs per position and the theoretical speedup.
"""

from __future__ import annotations

from kryptondb.plan.nodes import PlanNode, node, transform


def maintain_views(plan: PlanNode, ctx) -> PlanNode:
    if not ctx.options.incremental:
        return plan

    def visit(n: PlanNode) -> PlanNode:
        if n.op != "OcclusionScan" or n.arg("mode") != "naive":
            return n
        from kryptondb.ivm.cost import theoretical

        pre, cls = n.children
        model = n.arg("model")
        cost = theoretical(ctx.model(model).graph, n.arg("patch"), n.arg("stride"))
        views = node("MaterializeViews", pre, model=model, backend=n.arg("backend"))
        return n.with_args(mode="incremental", flops_full=cost.full_flops,
                           flops_incremental=cost.incremental_flops,
                           theoretical_speedup=round(cost.speedup, 2)).with_children(
            pre, cls, views)

    return transform(plan, visit)
