"""Which steps' new values come back channels-last.

A windowed layer's context is gathered channels-last, (B, rh, rw, C), on backends that prefer
it (ivm/gather.py), and its readers' new values are written into it. Written from the
(B, C, h, w) a backend call returns, that copy transposes every value, and it costs 1.2-5x
the copy of the context itself (288 channels, 16x16 new values in 18x18 contexts: 1.8 ms
against 0.34 for 19 of them). A step whose every reader gathers channels-last therefore asks
its segment for its output channels-last (runtime/base.py's NHWC; onnxruntime folds the
transpose into the layout conversion its convolutions make anyway) and hands it on as a
(B, C, h, w) view of that memory, which the gathers copy row by row. Steps whose values are
read otherwise stay channels-first: a merge or a 1x1 convolution fed the new values as they
are, a frontier map written into a full view, a Winograd step (its own output layout). So do
chains with more than a windowed layer and activations (a residual Add, side maps, a
LayerNorm): with the output transposed, onnxruntime's graph optimizations failed on
ConvNeXt's LayerNorm and scale (a Mul broadcast along the wrong axis; the same graph runs
with them off).
"""

from __future__ import annotations

from kryptondb.graph.ir import WINDOWED, Op

# what may follow the windowed head of a step that hands its values on channels-last
ACTIVATIONS = frozenset({Op.RELU, Op.CLIP, Op.LEAKY_RELU, Op.SIGMOID,
                         Op.HARD_SIGMOID, Op.HARD_SWISH})


def channels_last_outputs(steps, frontier) -> None:
    """Set ``out_last`` on each step of ``steps`` whose output only channels-last contexts
    read (and that no frontier map needs)."""
    readers: dict[str, list[bool]] = {}
    for s in steps:
        for src, context in zip(s.inputs, s.contexts):
            readers.setdefault(src, []).append(context[4].channels_last)
    ends = set(frontier)
    for s in steps:
        r = readers.get(s.name)
        s.out_last = bool(r) and all(r) and s.name not in ends and _plain(s)


def _plain(step) -> bool:
    """A backend segment of a windowed head and activations only, on its contexts alone."""
    return (step.segment is not None and step.winograd is None and step.box is None
            and step.head.op in WINDOWED and not step.sides
            and len(step.inputs) == len(step.head.inputs)
            and all(step.segment[n].op in ACTIVATIONS for n in step.chain[1:]))
