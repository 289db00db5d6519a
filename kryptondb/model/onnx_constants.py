"""Constant sub-expressions of an ONNX graph, evaluated at import, and placeholders.

An op whose inputs are all constants (initializers, Constant nodes, what was folded before) is
folded: the shape and pad arithmetic PyTorch exports (``nn.ZeroPad2d``'s
ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast chain, ``F.interpolate``'s sizes from
``Shape``) becomes the constant the converter reads. ``Shape`` of an activation folds too: its
per-sample dimensions are known, its batch dimension is the traced batch of 1 (converters read
batch entries of shapes only as the batch).

Placeholders are weights a graph leaves unset: a ConstantOfShape of a float feeding a weight
input (Conv, Gemm, BatchNormalization ... or a Mul/Add operand, as in the ``light_*`` graphs),
or a bare graph input. They get seeded values scaled by their role; any other ConstantOfShape
is what it says, its ``value`` repeated.
"""

from __future__ import annotations

import math

import numpy as np

from kryptondb.errors import ModelImportError
from kryptondb.limits import check_size, tensor_bytes
from kryptondb.model import onnx_checks as check
from kryptondb.model.onnx_files import to_array

# ops evaluated at import time when all their inputs are constants
CONST_OPS = {"Constant", "ConstantOfShape", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Cast",
             "Transpose", "Shape", "Gather", "Concat", "Slice", "SequenceConstruct",
             "ConcatFromSequence"}
_LOOK_THROUGH = ("Unsqueeze", "Squeeze", "Reshape", "Identity", "Cast")
# (op, first input index) of the weight inputs a placeholder stands for
_WEIGHT_INPUTS = {"Conv": 1, "ConvTranspose": 1, "BatchNormalization": 1, "Gemm": 1, "MatMul": 1,
                  "LayerNormalization": 1, "PRelu": 1, "Mul": 0, "Add": 0, "Sub": 0, "Div": 0}


def role(ctx, tensor: str, depth: int = 0):
    """(consumer op, input index, consumer node), looking through constant reshaping ops."""
    for user in ctx.users.get(tensor, []):
        idx = list(user.input).index(tensor)
        if user.op_type in _LOOK_THROUGH and depth < 4 and idx == 0 \
                and all(i in ctx.consts or i == tensor for i in user.input):
            return role(ctx, user.output[0], depth + 1)
        return user.op_type, idx, user
    return None, None, None


def seeded(ctx, name: str, shape, rng) -> np.ndarray:
    """A stand-in weight whose scale keeps a deep random network's activations O(1)."""
    op, idx, user = role(ctx, name)
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
        trans = op == "Gemm" and check.attributes(user).get("transB", 0)
        std = math.sqrt(1.0 / max(1, shape[1] if trans else shape[0]))
    elif op == "BatchNormalization" and idx in (1, 4):
        return rng.uniform(0.5, 1.0 if idx == 1 else 1.5, shape).astype(np.float32)
    elif op == "Mul":
        return rng.uniform(0.5, 1.0, shape).astype(np.float32)
    else:
        std = 0.01 if op in ("Conv", "Gemm") else 0.1
    return (rng.standard_normal(size) * std).reshape(shape).astype(np.float32)


def _is_placeholder(ctx, n, fill: np.ndarray) -> bool:
    """A ConstantOfShape that stands for a weight: a float fill of a constant shape (not one
    read off an activation) feeding a weight input."""
    if not np.issubdtype(fill.dtype, np.floating) or n.input[0] in ctx.traced:
        return False
    op, idx, _ = role(ctx, n.output[0])
    return op in _WEIGHT_INPUTS and idx >= _WEIGHT_INPUTS[op]


def _constant_of_shape(ctx, n, a, shape_value, rng) -> np.ndarray:
    shape = tuple(check.int_vector(n, shape_value, "the shape (input 0)"))
    fill = check.fill_value(n, a, to_array)
    if _is_placeholder(ctx, n, fill):
        ctx.placeholders[n.output[0]] = shape
        return seeded(ctx, n.output[0], shape, rng)
    if any(s < 0 for s in shape):
        raise check.malformed(n, f"the shape {list(shape)} has a negative dimension")
    check_size(tensor_bytes(shape, fill.dtype.itemsize), "tensor_bytes",
               f"the constant {n.output[0]!r} (shape {list(shape)})", ModelImportError)
    return np.full(shape, fill.reshape(-1)[0], fill.dtype)


def fold(ctx, n, rng) -> bool:
    """Evaluate ``n`` if it is a constant op whose inputs are all known; True if it was."""
    ins = [t for t in n.input if t]
    if n.op_type == "Shape" and ins and ctx.name(ins[0]) in ctx.shapes:
        ctx.consts[n.output[0]] = _shape_of(ctx, n, ins[0])
        ctx.traced.add(n.output[0])
        return True
    if n.op_type not in CONST_OPS or not all(ctx.is_const(t) for t in ins):
        return False
    a, val = check.attributes(n), [ctx.consts[t] for t in ins]
    if n.op_type == "ConstantOfShape":
        res = _constant_of_shape(ctx, n, a, val[0], rng)
    elif n.op_type == "SequenceConstruct":
        res = list(val)
    else:
        res = _evaluate(n, a, val)
    if any(t in ctx.traced for t in ins):
        ctx.traced.add(n.output[0])
    ctx.consts[n.output[0]] = res if isinstance(res, list) else np.asarray(res)
    return True


def _shape_of(ctx, n, t: str) -> np.ndarray:
    """An activation's shape: the traced batch of 1, then its per-sample shape (a
    channels-last view reports its dimensions in that order)."""
    c, *hw = ctx.shapes[ctx.name(t)]
    dims = [1, *hw, c] if t in ctx.nhwc else [1, c, *hw]
    a = check.attributes(n)
    return np.asarray(dims[a.get("start", 0):a.get("end", len(dims))], np.int64)


def _evaluate(n, a: dict, val: list):
    op = n.op_type
    if op == "Constant":
        return check.constant_value(n, a, to_array)
    if op == "Unsqueeze":
        return np.expand_dims(val[0], tuple(a["axes"] if "axes" in a else val[1].tolist()))
    if op == "Squeeze":
        axes = a.get("axes", val[1].tolist() if len(val) > 1 else None)
        return np.squeeze(val[0], tuple(axes) if axes is not None else None)
    if op == "Reshape":
        return val[0].reshape([d if d else val[0].shape[i] for i, d in enumerate(val[1].tolist())])
    if op == "Transpose":
        return np.transpose(val[0], a.get("perm"))
    if op == "Shape":
        return np.asarray(val[0].shape, np.int64)[a.get("start", 0):a.get("end", val[0].ndim)]
    if op == "Gather":
        return np.take(val[0], val[1], axis=a.get("axis", 0))
    if op == "Concat":
        return np.concatenate([np.atleast_1d(v) for v in val], axis=a.get("axis", 0))
    if op == "ConcatFromSequence":
        if not isinstance(val[0], list):
            raise check.malformed(n, "input 0 is not a sequence")
        join = np.stack if a.get("new_axis", 0) else np.concatenate
        return join(val[0], axis=a.get("axis", 0))
    if op == "Slice":
        return _slice(n, a, val)
    if op == "Cast":
        return val[0].astype(check.cast_dtype(n, a))
    return val[0]  # Identity


def _slice(n, a: dict, val: list) -> np.ndarray:
    data = val[0]
    if len(val) > 1:
        starts, ends = val[1].tolist(), val[2].tolist()
        axes = val[3].tolist() if len(val) > 3 else list(range(len(starts)))
        steps = val[4].tolist() if len(val) > 4 else [1] * len(starts)
    else:  # opset < 10: attributes
        starts, ends = a["starts"], a["ends"]
        axes, steps = a.get("axes", list(range(len(starts)))), [1] * len(starts)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise check.malformed(n, "a step of 0")
        index[ax] = slice(s, e, st)
    return data[tuple(index)]
