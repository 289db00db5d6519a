"""The classifier tail: the last layers of a network whose weights are too large to stay in the
caches between two backend calls (VGG16's fully connected layers hold 470 MB).

An incremental scan runs its global suffix once per chunk of positions (32 per worker), and every
call then reads all of those weights from memory again. Measured on VGG16, one thread, the
classifier costs 3.69 ms per position at 32 per call, 2.87 at 64, 2.56 at 128 and 2.51 at 256
(its FLOPs alone take 2.2 ms at the full-image throughput). So the plan splits such a suffix in
two at a single tensor before its first large node: the head still runs per chunk and yields
one small vector per position (VGG16: 25,088 floats), which the scan's driver collects; the tail
runs over up to ``tail_batch`` positions per call (``IncrementalPlan.run_to_tail`` and
``run_tail``). Every other plan (and a network without such layers) runs its suffix whole.
"""

from __future__ import annotations

from kryptondb.graph.ir import Graph

# a node's weights beyond this are read from memory at every call (2 MB of L2 per core, 32 MB
# of L3 shared): ResNet18's classifier (2 MB), Inception3's (8 MB) and MobileNetV2's (5 MB)
# stay below it
TAIL_WEIGHTS = 16 << 20
# positions per tail call: twice the planner's batch (its memory estimate counts them per
# position in flight), at most 128: 256 was within 2% of 128 above (32: 44% slower)
TAIL_PER_BATCH, TAIL_BATCH = 2, 128


def tail_batch(batch: int) -> int:
    """Positions per tail call for a scan of ``batch`` positions in flight."""
    return max(1, min(TAIL_BATCH, TAIL_PER_BATCH * batch))


def tail_cut(graph: Graph, rest: tuple[str, ...], views) -> tuple[str, tuple[str, ...]] | None:
    """(the tail's one input, the tail's nodes in graph order) for the suffix ``rest``, or None
    where it has no node with weights over TAIL_WEIGHTS. The tail starts as late as it can
    while holding every such node and every graph output, reads one tensor made before it, and
    holds no materialized view (``views``; a video plan keeps the suffix's views)."""
    large = [k for k, name in enumerate(rest) if _weight_bytes(graph, name) > TAIL_WEIGHTS]
    if not large:
        return None
    for start in range(large[0], 0, -1):  # the head keeps at least one node
        tail = rest[start:]
        inside = set(tail)
        reads = {i for name in tail for i in graph[name].inputs if i not in inside}
        if len(reads) == 1 and set(graph.outputs) <= inside and not inside & set(views):
            return reads.pop(), tail
    return None


def _weight_bytes(graph: Graph, name: str) -> int:
    return sum(graph.weights[p].nbytes for p in graph[name].params)
