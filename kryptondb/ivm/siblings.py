"""Sibling steps: maintained layers that read the same context run as one backend call.

An Inception module's 1x1 convolutions all read the concatenation before them at its new
region, and Mixed_6a's 3x3 convolution and max pool read the same 21x21 context of it. As
separate steps each gathers that context (or is fed the same new values) and converts it to
its backend's own layout in a call of its own; as one segment with several outputs the
context is gathered and converted once. Measured with onnxruntime on one core, 19 items
(bench: the three 1x1 convolutions of Mixed_5d, 288 channels at 14x14): 7.5 ms as three
sessions, 4.7 ms as one session with three outputs.

Steps group when their heads read one input through the same window, fed the same way, with
the same pad value where they pad (``frontier.shared_context``, decided by the heads, so the
plans of any query set, EXPLAIN's centre patch included, group alike), and apply a plain chain
to it: no side maps, no fused residual Add, no Winograd head, no box to crop. A group runs where
its first member stood; its later members only need the input, which is ready there. The cost
model prices a later member without a gather or call of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from kryptondb.graph.ir import Graph, Node
from kryptondb.graph.ops import input_node
from kryptondb.ivm.counters import count
from kryptondb.ivm.frontier import shared_context
from kryptondb.ivm.step_ops import padless
from kryptondb.runtime.base import NHWC


@dataclass
class Siblings:
    """Steps that run as one backend call on one gathered context: ``segment`` reads it and
    yields every member's output. A run's counters (EXPLAIN ANALYZE) hold the call under the
    first member's name, as a segment's under its step's."""

    members: tuple  # ivm.incremental.Step, in plan order
    segment: Graph
    contexts: Callable  # IncrementalPlan.contexts: a step's gathered contexts

    @property
    def first(self):
        return self.members[0]


def schedule(steps: list, graph: Graph, cached, contexts) -> list:
    """The order a plan runs its ``steps`` in: each step alone, or where siblings share a
    context (``frontier.shared_context``, the cost model's key), one ``Siblings`` at its first
    member's place; ``cached(key, build)``: the plan's segment cache; ``contexts``: its
    gather (``Siblings.contexts``)."""
    groups: list[list] = []
    by_key: dict[tuple, list] = {}  # the group a later step with this key joins
    for step in steps:
        key = _shareable(step, graph)
        g = by_key.get(key) if key is not None else None
        if g is not None and _same(g[0], step):
            g.append(step)
            continue
        groups.append([step])
        if key is not None:
            by_key[key] = groups[-1]
    return [g[0] if len(g) == 1 else _siblings(g, graph, cached, contexts) for g in groups]


def _shareable(step, graph: Graph) -> tuple | None:
    """A step's sharing key; None for one whose segment is not the chain on its context
    alone (a NumPy merge, a Winograd head, side maps, a box to crop)."""
    if step.segment is None or step.winograd is not None or step.box is not None or \
            step.sides or len(step.contexts) != 1:
        return None
    key = shared_context(graph, [graph[n] for n in step.chain])
    return key and key + (step.channels_last,)


def _same(a, b) -> bool:
    """``a`` and ``b`` gather the same context for every query (so their keys promise; a
    check, not the decision)."""
    (ah, aw, ays, axs, _), (bh, bw, bys, bxs, _) = a.contexts[0], b.contexts[0]
    return (ah, aw) == (bh, bw) and np.array_equal(ays, bys) and np.array_equal(axs, bxs)


def _siblings(members: list, graph: Graph, cached, contexts) -> Siblings:
    first = members[0]  # plans on one model share segments: the context's shape is the key's
    key = ("siblings", tuple(m.chain for m in members), first.contexts[0][:2],
           first.channels_last)
    return Siblings(tuple(members), cached(key, lambda: _segment(members, graph)), contexts)


def _segment(members: list, graph: Graph) -> Graph:
    """One input (the shared context, channels-last where the members' is), each member's
    head with padding 0 on it and its fused chain after, every member's output."""
    first = members[0]
    rh, rw = first.contexts[0][:2]
    name = f"{first.head.name}::in0"
    nodes: list[Node] = [input_node(name, (graph[first.inputs[0]].shape[0], rh, rw),
                                    first.channels_last)]
    for m in members:
        nodes.append(replace(padless(m.head), inputs=(name,)))
        nodes += [graph[n] for n in m.chain[1:]]
    used = {p for n in nodes for p in n.params}
    return Graph.build(f"{graph.name}:{first.head.name}+{len(members) - 1}", nodes,
                       [m.name for m in members], {k: graph.weights[k] for k in used})


def run_siblings(group: Siblings, idx, new, backend, stats, owners=None) -> dict:
    """Every member's new values (as ``IncrementalPlan._run_step`` gives one step's) from one
    gather and one call."""
    t = time.perf_counter()
    bufs, moved = group.contexts(group.first, idx, new, backend, owners)
    t2 = time.perf_counter()
    names = [m.name + (NHWC if m.out_last else "") for m in group.members]
    res = backend.run(group.segment, {group.segment.inputs[0]: bufs[0]}, names)
    count(stats, group.first.name, len(idx), moved, t2 - t, time.perf_counter() - t2)
    # channels-last: (B, h, w, C) read as (B, C, h, w), as a lone step's
    return {m.name: (res[n].transpose(0, 3, 1, 2) if m.out_last else res[n],
                     m.region.y[idx], m.region.x[idx]) for m, n in zip(group.members, names)}
