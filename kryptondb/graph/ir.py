"""The CNN graph IR: an immutable DAG of single-output operator nodes over per-sample tensors.

Shapes never include the batch dimension: a node's ``shape`` is what one image produces, so the
same graph runs on any batch size. Weights live beside the nodes in ``Graph.weights`` (read-only
arrays) and nodes refer to them by name, so a rewrite that copies a node never copies a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Iterable, Mapping

import numpy as np

from kryptondb.errors import ShapeError
from kryptondb.graph.ops import GLOBAL, POINTWISE, WINDOWED, Node, Op, input_node, make_node
from kryptondb.graph.shapes import infer_shape

# the node vocabulary is re-exported: `from kryptondb.graph.ir import Graph, Node, Op` keeps working
__all__ = ["GLOBAL", "POINTWISE", "WINDOWED", "Graph", "Node", "Op", "input_node", "make_node"]


@dataclass(frozen=True, eq=False)
class Graph:
    """A topologically ordered DAG with named inputs and outputs; build with ``Graph.build``."""

    name: str
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)
    _index: Mapping[str, int] = field(default_factory=dict, repr=False)

    @staticmethod
    def build(name: str, nodes: Iterable[Node], outputs, weights: Mapping[str, np.ndarray]):
        """Check references, infer every shape and freeze the weights."""
        frozen = {}
        for key, arr in weights.items():
            arr = np.ascontiguousarray(arr, dtype=np.float32)
            arr.setflags(write=False)
            frozen[key] = arr
        done: dict[str, Node] = {}
        for node in nodes:
            _check_refs(node, done, frozen)
            shape = infer_shape(node, [done[i].shape for i in node.inputs], frozen)
            done[node.name] = replace(node, shape=tuple(int(d) for d in shape))
        outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        for out in outputs:
            if out not in done:
                raise ShapeError(f"graph {name!r}: output {out!r} is not a node")
        ordered = tuple(done.values())
        index = MappingProxyType({n.name: i for i, n in enumerate(ordered)})
        return Graph(name, ordered, outputs, MappingProxyType(frozen), index)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[self._index[name]]

    def __contains__(self, name: str) -> bool:
        return name in self._index

    @cached_property  # read dozens of times per query (input_shape): scanned once per graph
    def inputs(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if n.op is Op.INPUT)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self[self.inputs[0]].shape

    @property
    def output(self) -> str:
        return self.outputs[0]

    def consumers(self) -> dict[str, list[str]]:
        users: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                users[i].append(n.name)
        return users

    def param(self, node: Node, i: int) -> np.ndarray:
        return self.weights[node.params[i]]

    def segment(self, names: Iterable[str], outputs: Iterable[str] | None = None) -> "Graph":
        """The subgraph of ``names``; producers outside it become INPUT nodes of their shape."""
        keep = set(names)
        new: list[Node] = []
        made: set[str] = set()
        for node in self.nodes:
            if node.name not in keep:
                continue
            for i in node.inputs:
                if i not in keep and i not in made:
                    new.append(Node(i, Op.INPUT, attrs=(("shape", self[i].shape),)))
                    made.add(i)
            new.append(node)
        outs = tuple(outputs) if outputs is not None else _sinks(new)
        used = {p for n in new for p in n.params}
        return Graph.build(self.name, new, outs, {k: self.weights[k] for k in used})

    def with_weights(self, weights: Mapping[str, np.ndarray]) -> "Graph":
        return Graph.build(self.name, self.nodes, self.outputs, dict(self.weights) | dict(weights))


def _sinks(nodes: list[Node]) -> tuple[str, ...]:
    used = {i for n in nodes for i in n.inputs}
    return tuple(n.name for n in nodes if n.name not in used)


def _check_refs(node: Node, done: Mapping[str, Node], weights: Mapping[str, np.ndarray]) -> None:
    if node.name in done:
        raise ShapeError(f"duplicate node name {node.name!r}")
    for i in node.inputs:
        if i not in done:
            raise ShapeError(f"node {node.name!r} reads {i!r}, which is not computed before it")
    for p in node.params:
        if p not in weights:
            raise ShapeError(f"node {node.name!r} needs weight {p!r}, which the graph lacks")
