"""The CNN graph's vocabulary: operator kinds, their families, and the immutable node.

Windowed ops carry explicit 2-D ``kernel``, ``stride``, ``pads`` and ``dilation`` attributes, so
region algebra never guesses defaults. Graphs of these nodes live in ir.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any


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
    LAYERNORM = "LayerNorm"  # over the channels at each pixel (ConvNeXt's channels-last norm)
    GELU = "Gelu"
    CONV_TRANSPOSE = "ConvTranspose"
    RESIZE = "Resize"


# Ops whose output at a pixel depends only on the inputs at that pixel (and per-channel weights).
POINTWISE = frozenset(
    {Op.BATCHNORM, Op.RELU, Op.CLIP, Op.LEAKY_RELU, Op.SIGMOID, Op.HARD_SIGMOID, Op.HARD_SWISH}
    | {Op.LRN, Op.CHANNEL_SHUFFLE, Op.LAYERNORM, Op.GELU}
)
# Ops that mix every spatial position: incremental inference stops before the first of them.
GLOBAL = frozenset({Op.GLOBAL_AVGPOOL, Op.GEMM, Op.FLATTEN, Op.RESHAPE, Op.SOFTMAX})
WINDOWED = frozenset({Op.CONV, Op.MAXPOOL, Op.AVGPOOL})
# Ops whose output map is larger than their input: a changed input region reaches a larger
# output region (transposed convolution, upsampling).
UPSAMPLING = frozenset({Op.CONV_TRANSPOSE, Op.RESIZE})


@dataclass(frozen=True, slots=True)
class Node:
    """One operator. ``inputs`` name producer nodes, ``params`` name tensors in Graph.weights.

    Windowed ops carry ``kernel``, ``stride``, ``pads`` (top, left, bottom, right) and
    ``dilation`` attributes, always 2-D and explicit, so region algebra never guesses defaults;
    ConvTranspose carries the same plus ``output_padding`` (h, w), Resize its output ``size``
    (h, w), the ``scale`` its coordinates use, ``mode``, ``coord`` and ``nearest``
    (graph/resample.py).
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


def input_node(name: str, shape: tuple[int, ...], channels_last: bool = False) -> Node:
    """A graph input of per-sample ``shape`` (C, H, W); with ``channels_last`` it is fed as
    (H, W, C) and read by the graph as (C, H, W) (backends transpose it; onnxruntime folds
    the transpose into the layout conversion its convolutions make anyway)."""
    if channels_last:
        return Node(name, Op.INPUT, attrs=(("channels_last", True), ("shape", tuple(shape))))
    return Node(name, Op.INPUT, attrs=(("shape", tuple(shape)),))


def fed_shape(node: Node) -> tuple[int, ...]:
    """The per-sample shape an input is fed in: (H, W, C) for a channels-last one."""
    if node.attr("channels_last"):
        c, h, w = node.shape
        return (h, w, c)
    return node.shape
