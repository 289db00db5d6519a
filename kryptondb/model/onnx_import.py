"""ONNX -> Graph. Constant sub-expressions are folded, placeholders (ConstantOfShape weights, as
in the ``light_*`` graphs) get seeded values, BatchNorm is folded into the conv before it.

The file is read and size-checked by onnx_files.py; each node is checked (onnx_checks.py), then
converted by its op's converter (onnx_converters.py) into the context here."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from kryptondb.errors import KryptonError, ModelImportError, ShapeError, UnsupportedOpError
from kryptondb.limits import ModelSize, check_size, tensor_bytes
from kryptondb.model import onnx_checks as check
from kryptondb.graph.fold import drop_dead, fold_batchnorm
from kryptondb.graph.ir import Graph, Node, input_node
from kryptondb.model.onnx_checks import label as _label
from kryptondb.model.onnx_converters import CONVERTERS
from kryptondb.model.onnx_files import load_onnx_proto, to_array
from kryptondb.graph.shapes import infer_shape

# ops evaluated at import time when all their inputs are constants
_CONST_OPS = {"Constant", "ConstantOfShape", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Cast",
              "Transpose", "Shape", "Gather"}


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
    ctx = _Ctx(proto)
    ctx.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    for init in proto.graph.initializer:
        ctx.consts[init.name] = to_array(init, path)
    for n in proto.graph.node:
        for t in n.input:
            ctx.users.setdefault(t, []).append(n)
    data = _data_input(ctx, seed)
    ctx.nodes.append(input_node(data, ctx.shapes[data]))
    rng = np.random.default_rng(seed)
    for n in proto.graph.node:
        _convert_node(ctx, n, rng)
    outputs = [ctx.name(o.name) for o in proto.graph.output]
    for o in outputs:
        if o not in ctx.shapes:
            raise ModelImportError(f"graph output {o!r} is a constant, not computed from the input")
    nodes = drop_dead(fold_batchnorm(ctx.nodes, ctx.weights, keep=outputs), outputs)
    graph = Graph.build(label, nodes, outputs, ctx.weights)
    seeded = {k: ctx.consts[k] for k in ctx.placeholders}
    return Imported(graph, tuple(ctx.placeholders), seeded)


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
        ctx.consts[name] = _seeded(ctx, name, shape, rng)
    return images[0][0]


# ---------------------------------------------------------------------------------------------
# Constants and placeholders


def _role(ctx: _Ctx, tensor: str, depth: int = 0):
    """(consumer op, input index, consumer node), looking through constant reshaping ops."""
    for user in ctx.users.get(tensor, []):
        idx = list(user.input).index(tensor)
        if user.op_type in ("Unsqueeze", "Squeeze", "Reshape", "Identity", "Cast") and depth < 4 \
                and idx == 0 and all(i in ctx.consts or i == tensor for i in user.input):
            return _role(ctx, user.output[0], depth + 1)
        return user.op_type, idx, user
    return None, None, None


def _seeded(ctx: _Ctx, name: str, shape, rng) -> np.ndarray:
    """A stand-in weight whose scale keeps a deep random network's activations O(1)."""
    op, idx, user = _role(ctx, name)
    shape = tuple(int(s) for s in shape)
    what = f"placeholder {name!r} (shape {list(shape)}, seeded as float32)"
    if any(s < 0 for s in shape):
        raise ModelImportError(f"{what} has a negative dimension")
    ctx.seeded.add(tensor_bytes(shape, 4), what)
    ctx.seeded.check_total("the seeded placeholders together")
    size = max(1, math.prod(shape))
    if op == "Conv" and idx == 1:
        std = math.sqrt(2.0 / max(1, math.prod(shape[1:])))
    elif op in ("Gemm", "MatMul") and idx == 1:
        trans = op == "Gemm" and _attrs(user).get("transB", 0)
        std = math.sqrt(1.0 / max(1, shape[1] if trans else shape[0]))
    elif op == "BatchNormalization" and idx in (1, 4):
        return rng.uniform(0.5, 1.0 if idx == 1 else 1.5, shape).astype(np.float32)
    elif op == "Mul":
        return rng.uniform(0.5, 1.0, shape).astype(np.float32)
    else:
        std = 0.01 if op in ("Conv", "Gemm") else 0.1
    return (rng.standard_normal(size) * std).reshape(shape).astype(np.float32)


def _fold_const(ctx: _Ctx, n, rng) -> bool:
    ins = [t for t in n.input if t]
    if n.op_type not in _CONST_OPS or not all(ctx.is_const(t) for t in ins):
        return False
    a, val = _attrs(n), [ctx.consts[t] for t in ins]
    out = n.output[0]
    if n.op_type == "Constant":
        res = check.constant_value(n, a, to_array)
    elif n.op_type == "ConstantOfShape":
        ctx.placeholders[out] = tuple(check.int_vector(n, val[0], "the shape (input 0)"))
        res = _seeded(ctx, out, ctx.placeholders[out], rng)
    elif n.op_type == "Unsqueeze":
        res = np.expand_dims(val[0], tuple(a["axes"] if "axes" in a else val[1].tolist()))
    elif n.op_type == "Squeeze":
        axes = a.get("axes", val[1].tolist() if len(val) > 1 else None)
        res = np.squeeze(val[0], tuple(axes) if axes is not None else None)
    elif n.op_type == "Reshape":
        res = val[0].reshape([d if d else val[0].shape[i] for i, d in enumerate(val[1].tolist())])
    elif n.op_type == "Transpose":
        res = np.transpose(val[0], a.get("perm"))
    elif n.op_type == "Shape":
        res = np.asarray(val[0].shape, np.int64)
    elif n.op_type == "Gather":
        res = np.take(val[0], val[1], axis=a.get("axis", 0))
    else:  # Identity, Cast
        res = val[0]
    ctx.consts[out] = np.asarray(res)
    return True


def _attrs(n) -> dict:
    from onnx import helper  # slow to import (~55 ms): ONNX files only

    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


# ---------------------------------------------------------------------------------------------
# Nodes: folded when constant, else converted by their op's converter (onnx_converters.py)


def _convert_node(ctx: _Ctx, n, rng) -> None:
    check.check_node(n)
    try:
        if _fold_const(ctx, n, rng):
            return
        conv = CONVERTERS.get(n.op_type)
        if conv is None:
            raise UnsupportedOpError(
                f"unsupported op {n.op_type!r} at node {_label(n)!r}; supported: "
                f"{', '.join(sorted(set(CONVERTERS) | _CONST_OPS))}")
        conv(ctx, n, _attrs(n))
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
