"""batch_queries: the many re-inferences of one query run in batches whose size the planner
picks from the memory budget (MEMORY <n> MB), unless the query fixed it (BATCH <n>)."""

from __future__ import annotations

import math

from kryptondb.plan.nodes import PlanNode, transform

MAX_BATCH = 256


def item_bytes(graph) -> int:
    """Working memory of one input in a full inference: the input, the two largest live
    activations (a layer's input and output) and the occluded copy the scan builds."""
    sizes = sorted((4 * math.prod(n.shape) for n in graph.nodes), reverse=True)
    return 2 * 4 * math.prod(graph.input_shape) + sum(sizes[:2])


def batch_size(graph, memory_mb: int, positions: int) -> int:
    fit = (memory_mb << 20) // max(1, item_bytes(graph))
    return int(max(1, min(MAX_BATCH, fit, positions)))


def batch_queries(plan: PlanNode, ctx) -> PlanNode:
    def visit(n: PlanNode) -> PlanNode:
        if n.op != "Inference" or not n.children or n.children[0].op not in ("Occlude",
                                                                              "Preprocess"):
            return n
        if n.arg("batch") is not None:
            return n
        src = n.children[0]
        if src.op == "Preprocess" and src.children[0].op != "VideoScan":
            return n.with_args(batch=1)  # one image: nothing to batch
        rows, cols = (int(v) for v in src.arg("positions", "1x1").split("x"))
        graph = ctx.model(n.arg("model")).graph
        chosen = ctx.options.batch or batch_size(graph, ctx.options.memory_mb, rows * cols)
        return n.with_args(batch=chosen, memory_mb=ctx.options.memory_mb)

    return transform(plan, visit)
