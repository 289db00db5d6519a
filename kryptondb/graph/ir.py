"""The CNN graph IR: an immutable DAG of single-output operator nodes over per-sample tensors.

Shapes never include the batch dimension: a node's ``shape`` is what one image produces, so the
same graph runs on any batch size. Weights live beside the nodes in ``Graph.weights`` (read-only
arrays) and nodes refer to them by name, so a rewrite that copies a node never copies a tensor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np

from kryptondb.errors import ShapeError


class Op(enum.Enum):
    INPUT = "Input"
    CONV = "Conv"
    BATCHNORM = "BatchNormalization"
    RELU = "Relu"
    CLIP = "Clip"
    LEAKY_RELU = "LeakyRelu"
    SIGMOID = "Sigmoid"
    HARD_SIGMOID = "HardSigmoid"
    HARD_SWISH = "HardSwish"
    MUL = "Mul"
    ADD = "Add"
    MAXPOOL = "MaxPool"
    AVGPOOL = "AveragePool"
    GLOBAL_AVGPOOL = "GlobalAveragePool"
    LRN = "LRN"
    CONCAT = "Concat"
    GEMM = "Gemm"
    FLATTEN = "Flatten"
    RESHAPE = "Reshape"
    SOFTMAX = "Softmax"
    PAD = "Pad"
    CHANNEL_SHUFFLE = "ChannelShuffle"


# Ops whose output at a pixel depends only on the inputs at that pixel (and per-channel weights).
POINTWISE = frozenset(
    {Op.BATCHNORM, Op.RELU, Op.CLIP, Op.LEAKY_RELU, Op.SIGMOID, Op.HARD_SIGMOID, Op.HARD_SWISH}
    | {Op.LRN, Op.CHANNEL_SHUFFLE}
)
# Ops that mix every spatial position: incremental inference stops before the first of them.
GLOBAL = frozenset({Op.GLOBAL_AVGPOOL, Op.GEMM, Op.FLATTEN, Op.RESHAPE, Op.SOFTMAX})
WINDOWED = frozenset({Op.CONV, Op.MAXPOOL, Op.AVGPOOL})


@dataclass(frozen=True, slots=True)
class Node:
    """One operator. ``inputs`` name producer nodes, ``params`` name tensors in Graph.weights.

    Windowed ops carry ``kernel``, ``stride``, ``pads`` (top, left, bottom, right) and
    ``dilation`` attributes, always 2-D and explicit, so region algebra never guesses defaults.
    """

    name: str
    op: Op
    inputs: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    shape: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.name:
            raise ValueError("a node needs a name")
        if self.op is not Op.INPUT and not self.inputs:
            raise ValueError(f"node {self.name!r} ({self.op.value}) has no inputs")

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def with_attrs(self, **changes: Any) -> "Node":
        merged = dict(self.attrs) | changes
        return replace(self, attrs=tuple(sorted(merged.items())))


def make_node(name, op, inputs=(), params=(), **attrs) -> Node:
    """Build a node with attributes in canonical (sorted, hashable) form."""
    return Node(name, op, tuple(inputs), tuple(params), tuple(sorted(attrs.items())))


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
        from kryptondb.graph.shapes import infer_shape

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

    @property
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


def input_node(name: str, shape: tuple[int, ...]) -> Node:
    return Node(name, Op.INPUT, attrs=(("shape", tuple(shape)),))


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
