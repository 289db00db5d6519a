"""ONNX -> Graph. Constant sub-expressions are folded and placeholders (ConstantOfShape weights,
as in the ``light_*`` graphs) get seeded values (onnx_constants.py), BatchNorm is folded into the
conv before it.

The file is read and size-checked by onnx_files.py; each node is checked (onnx_checks.py), then
either starts a recognised chain (onnx_patterns.py: GELU and LayerNorm written out in
elementary ops) or is converted by its op's converter (onnx_converters.py; channels-last
tensors and the ops on them: onnx_layout.py; transposed convolution and Resize:
onnx_upsample.py) into the context here."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from kryptondb.errors import KryptonError, ModelImportError, ShapeError, UnsupportedOpError
from kryptondb.limits import ModelSize, check_size, tensor_bytes
from kryptondb.model import onnx_checks as check
from kryptondb.model import onnx_constants, onnx_layout, onnx_patterns, onnx_upsample
from kryptondb.graph.fold import drop_dead, fold_batchnorm
from kryptondb.graph.ir import Graph, Node, input_node
from kryptondb.model.onnx_checks import label as _label
from kryptondb.model.onnx_converters import CONVERTERS as _BASIC
from kryptondb.model.onnx_files import load_onnx_proto, to_array
from kryptondb.model.onnx_names import rename_reserved
from kryptondb.graph.shapes import infer_shape

CONVERTERS = _BASIC | onnx_layout.CONVERTERS | onnx_upsample.CONVERTERS


@dataclass
class _Ctx:
    proto: object
    consts: dict = field(default_factory=dict)     # tensor name -> ndarray (folded constants)
    shapes: dict = field(default_factory=dict)     # activation name -> per-sample shape
    alias: dict = field(default_factory=dict)      # onnx name -> IR node name (Dropout etc.)
    nodes: list = field(default_factory=list)
    weights: dict = field(default_factory=dict)
    placeholders: dict = field(default_factory=dict)  # name -> shape of seeded stand-ins
    seeded: ModelSize = field(default_factory=lambda: ModelSize(ModelImportError))  # stand-ins
    users: dict = field(default_factory=dict)      # onnx name -> [onnx nodes reading it]
    producer: dict = field(default_factory=dict)   # onnx name -> the onnx node writing it
    outputs: set = field(default_factory=set)      # the graph's output names
    nhwc: set = field(default_factory=set)         # onnx names of channels-last activations
    traced: set = field(default_factory=set)       # constants read off an activation's shape
    done: set = field(default_factory=set)         # outputs of nodes a recognised chain replaced
    opset: int = 13

    def name(self, t: str) -> str:
        return self.alias.get(t, t)

    def is_const(self, t: str) -> bool:
        return t in self.consts

    def add(self, node: Node) -> None:
        shape = infer_shape(node, [self.shapes[i] for i in node.inputs], self.weights)
        check_size(tensor_bytes(shape, 4), "tensor_bytes",
                   f"the output of node {node.name!r} (shape {list(shape)})", ModelImportError)
        self.shapes[node.name] = tuple(int(d) for d in shape)
        self.nodes.append(node)

    def weight(self, key: str, value) -> str:
        self.weights[key] = np.ascontiguousarray(value, dtype=np.float32)
        return key


@dataclass(frozen=True)
class Imported:
    graph: Graph
    placeholders: tuple[str, ...]  # weights that the file left as placeholders and we seeded
    seeded: dict                   # name -> the seeded array, to feed other engines


def import_onnx(path, seed: int = 0, name: str | None = None) -> Imported:
    """Read an ONNX CNN from ``path``; placeholders get values from ``seed``."""
    proto = load_onnx_proto(path)
    label = name or os.path.splitext(os.path.basename(os.fspath(path)))[0]
    try:
        return _convert(proto, seed, label, os.fspath(path))
    except (ModelImportError, ShapeError) as exc:
        if os.fspath(path) in str(exc):
            raise
        raise type(exc)(f"{os.fspath(path)}: {exc}") from None


def _convert(proto, seed, label, path) -> Imported:
    renamed = rename_reserved(proto.graph)  # names KryptonDB derives its own from (::)
    ctx = _Ctx(proto)
    ctx.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    for init in proto.graph.initializer:
        ctx.consts[init.name] = to_array(init, path)
    for n in proto.graph.node:
        for t in n.input:
            ctx.users.setdefault(t, []).append(n)
        ctx.producer.update((o, n) for o in n.output)
    ctx.outputs = {o.name for o in proto.graph.output}
    data = _data_input(ctx, seed)
    ctx.nodes.append(input_node(data, ctx.shapes[data]))
    rng = np.random.default_rng(seed)
    for n in proto.graph.node:
        _convert_node(ctx, n, rng)
    outputs = [ctx.name(o.name) for o in proto.graph.output]
    for o in outputs:
        if o not in ctx.shapes:
            raise ModelImportError(f"graph output {o!r} is a constant, not computed from the input")
    onnx_layout.check_outputs(ctx)
    nodes = drop_dead(fold_batchnorm(ctx.nodes, ctx.weights, keep=outputs), outputs)
    graph = Graph.build(label, nodes, outputs, ctx.weights)
    # placeholders by their names in the file, which with_seeded_weights fills
    seeded = {renamed.get(k, k): ctx.consts[k] for k in ctx.placeholders}
    return Imported(graph, tuple(seeded), seeded)


def _data_input(ctx: _Ctx, seed: int) -> str:
    """The one image input; other non-initializer inputs are weight placeholders."""
    produced = {o for n in ctx.proto.graph.node for o in n.output}
    images = []
    for vi in ctx.proto.graph.input:
        if vi.name in ctx.consts or vi.name in produced:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1
                for d in vi.type.tensor_type.shape.dim]
        if len(dims) == 4 and all(d > 0 for d in dims[1:]):
            images.append((vi.name, tuple(dims[1:])))
        else:
            ctx.placeholders[vi.name] = tuple(max(d, 1) for d in dims)
    if len(images) != 1:
        raise ModelImportError(f"expected one N x C x H x W image input with fixed C, H, W; "
                               f"found {[i[0] for i in images] or 'none'}")
    ctx.shapes[images[0][0]] = images[0][1]
    rng = np.random.default_rng(seed + 7919)
    for name, shape in ctx.placeholders.items():
        ctx.consts[name] = onnx_constants.seeded(ctx, name, shape, rng)
    return images[0][0]


# ---------------------------------------------------------------------------------------------
# Nodes: folded when constant, else converted by their op's converter (onnx_converters.py)


def _convert_node(ctx: _Ctx, n, rng) -> None:
    check.check_node(n)
    if n.output[0] in ctx.done:
        return
    try:
        if onnx_constants.fold(ctx, n, rng) or onnx_patterns.fuse(ctx, n):
            return
        conv = CONVERTERS.get(n.op_type)
        if conv is None:
            raise UnsupportedOpError(
                f"unsupported op {n.op_type!r} at node {_label(n)!r}; supported: "
                f"{', '.join(sorted(set(CONVERTERS) | onnx_constants.CONST_OPS))}")
        conv(ctx, n, check.attributes(n))
    except ShapeError as exc:
        raise ShapeError(f"node {_label(n)!r} ({n.op_type}): {exc}") from None
    except KryptonError:
        raise
    except (ArithmeticError, IndexError, KeyError, TypeError, ValueError) as exc:
        # a malformed node the checks did not foresee: still an error naming it
        raise check.malformed(n, f"cannot be converted ({type(exc).__name__}: {exc})") from None


def with_seeded_weights(proto, seeded: dict):
    """A copy of ``proto`` whose placeholders are initializers holding ``seeded``: the same
    weights KryptonDB runs, for feeding onnxruntime the original graph."""
    import onnx  # slow to import (~55 ms): ONNX files only
    from onnx import numpy_helper  # slow to import (~55 ms): ONNX files only

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    keep = [n for n in g.node if not (n.op_type == "ConstantOfShape" and n.output[0] in seeded)]
    del g.node[:]
    g.node.extend(keep)
    inputs = [i for i in g.input if i.name not in seeded]
    del g.input[:]
    g.input.extend(inputs)
    g.initializer.extend(numpy_helper.from_array(np.asarray(v, np.float32), k)
                         for k, v in seeded.items())
    model.ir_version = min(model.ir_version, 8)
    return model
