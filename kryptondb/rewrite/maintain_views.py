"""maintain_views: the IVM rewrite. The naive OcclusionScan (a full inference per position)
becomes an incremental scan over materialized views: the base image's output of every layer is
computed once (MaterializeViews), and each position recomputes, layer by layer, only the region
its patch reaches, up to the first global layer; the rest of the network runs in full.

The plan records the static cost model's FLOPs per position and the theoretical speedup.
Unless the query forces a plan (INCREMENTAL / NAIVE; APPROXIMATE implies INCREMENTAL), the rewrite is made only when the
theoretical speedup reaches MIN_SPEEDUP: measured on 2 CPU cores, gathers and per-layer calls
cost incremental plans 10-25% of their theoretical gain (64 positions: ResNet18 1.84 of 2.19,
MobileNetV2 1.64 of 1.90, EfficientNet-Lite0 1.48 of 1.58), so a small theoretical gain would
be eaten by them.
"""

from __future__ import annotations

from kryptondb.plan.nodes import PlanNode, node, transform

MIN_SPEEDUP = 1.25


def maintain_views(plan: PlanNode, ctx) -> PlanNode:
    if ctx.options.incremental is False:
        return plan

    def visit(n: PlanNode) -> PlanNode:
        if n.op != "OcclusionScan" or n.arg("mode") != "naive":
            return n
        from kryptondb.ivm.cost import theoretical

        pre, cls = n.children
        model = n.arg("model")
        cost = theoretical(ctx.model(model).graph, n.arg("patch"))
        forced = ctx.options.incremental or ctx.options.approximate is not None
        if not forced and cost.speedup < MIN_SPEEDUP:
            return n.with_args(theoretical_speedup=round(cost.speedup, 2),
                               why=f"theoretical speedup below {MIN_SPEEDUP:g}")
        views = node("MaterializeViews", pre, model=model, backend=n.arg("backend"))
        return n.with_args(mode="incremental", flops_full=cost.full_flops,
                           flops_incremental=cost.incremental_flops,
                           theoretical_speedup=round(cost.speedup, 2)).with_children(
            pre, cls, views)

    return transform(plan, visit)
