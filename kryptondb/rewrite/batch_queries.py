"""batch_queries: the many re-inferences of one query run in batches whose size the planner
picks from the memory budget (MEMORY <n> MB), unless the query fixed it (BATCH <n>).

A batch item's working set depends on the plan: a full inference holds the whole input and the
two largest activations; an incremental one holds each layer's read-in context and new region,
plus full copies of the maps where the network turns global.
"""

from __future__ import annotations

import math


from kryptondb.plan.nodes import PlanNode, transform

MAX_BATCH = 256
MAX_INCREMENTAL_BATCH = 64  # larger batches of small contexts gained nothing, cost memory


def item_bytes(graph) -> int:
    """One input in a full inference: the input, its occluded copy, the two largest activations."""
    sizes = sorted((4 * math.prod(n.shape) for n in graph.nodes), reverse=True)
    return 2 * 4 * math.prod(graph.input_shape) + sum(sizes[:2])


def incremental_item_bytes(graph, patch: int) -> int:
    """One position in an incremental scan: the largest read-in context plus new region, and
    the full maps handed to the global part of the network."""
    from kryptondb.ivm.cost import centre_regions, prefix
    from kryptondb.ivm.regions import fix

    regions = centre_regions(graph, patch)
    largest = 0
    for name, r in regions.items():
        f = fix(r, graph[name].shape)
        largest = max(largest, 4 * graph[name].shape[0] * f.h * f.w)
    inc = set(prefix(graph))
    frontier = {i for n in graph.nodes if n.name not in inc for i in n.inputs if i in inc}
    return 3 * largest + sum(4 * math.prod(graph[f].shape) for f in frontier) + \
        sum(sorted((4 * math.prod(n.shape) for n in graph.nodes if n.name not in inc),
                   reverse=True)[:2])


def batch_size(per_item: int, memory_mb: int, positions: int) -> int:
    fit = (memory_mb << 20) // max(1, per_item)
    return int(max(1, min(MAX_BATCH, fit, positions)))


def batch_queries(plan: PlanNode, ctx) -> PlanNode:
    def visit(n: PlanNode) -> PlanNode:
        if n.op == "Inference" and n.arg("batch") is None:
            video = n.children[0].children and n.children[0].children[0].op == "VideoScan"
            return n.with_args(batch=16 if video else 1)
        if n.op != "OcclusionScan" or n.arg("batch") is not None:
            return n
        rows, cols = (int(v) for v in n.arg("positions").split("x"))
        graph = ctx.model(n.arg("model")).graph
        per_item = incremental_item_bytes(graph, n.arg("patch")) \
            if n.arg("mode") == "incremental" else item_bytes(graph)
        chosen = ctx.options.batch or batch_size(per_item, ctx.options.memory_mb, rows * cols)
        if n.arg("mode") == "incremental" and not ctx.options.batch:
            chosen = min(chosen, MAX_INCREMENTAL_BATCH)
        return n.with_args(batch=chosen, memory_mb=ctx.options.memory_mb)

    return transform(plan, visit)
