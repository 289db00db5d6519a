"""Chains of elementary ONNX ops that are one IR op, as exporters write them before the op
existed in ONNX (LayerNormalization: opset 17, Gelu: opset 20):

- LayerNorm over the channels, ``torch.nn.LayerNorm`` before opset 17 and ConvNeXt's
  channels-first LayerNorm2d at any opset: m = ReduceMean(x), d = Sub(x, m), Pow(d, 2),
  ReduceMean, Add eps, Sqrt, Div(d, .), the reductions over the channel axis only;
- GELU, ``x * 0.5 * (1 + erf(x / sqrt 2))``: Div(x, sqrt 2) or Mul(x, 1/sqrt 2), Erf, Add 1,
  Mul by x, Mul by 0.5 (or by a 0.5 * x computed before); and its tanh approximation,
  ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))``, x^3 as Pow or two Muls.

``fuse`` is asked at every node before its converter: at the first node of a chain it adds the
IR node (named as the chain's last output) and marks the rest of the chain done. A chain whose
intermediate values are read elsewhere (or are graph outputs) is not fused.
"""

from __future__ import annotations

import math

import numpy as np

from kryptondb.errors import ModelImportError
from kryptondb.graph.ir import Op, make_node
from kryptondb.model import onnx_checks as check
from kryptondb.model.onnx_files import to_array
from kryptondb.model.onnx_layout import channel_axis, layernorm, normalised_axes

SQRT2 = math.sqrt(2.0)


def fuse(ctx, n) -> bool:
    """Replace the chain starting at ``n`` by its IR op; False where none starts here."""
    chain = None
    if n.op_type == "ReduceMean":
        chain = _layernorm_chain(ctx, n)
        if chain:
            layernorm(ctx, n, chain[-1].output[0], _eps(ctx, chain))
    elif n.op_type in ("Div", "Mul", "Pow"):
        found = _gelu(ctx, n)
        if found:
            chain, kind = found
            x, out = _activation(ctx, n), chain[-1].output[0]
            ctx.add(make_node(out, Op.GELU, [ctx.name(x)], approximate=kind))
            if x in ctx.nhwc:
                ctx.nhwc.add(out)
    if not chain:
        return False
    ctx.done.update(m.output[0] for m in chain)
    return True


# -- reading the graph around a node -------------------------------------------------------------


def _only_user(ctx, t: str, op_type: str):
    users = ctx.users.get(t, [])
    if t in ctx.outputs or len(users) != 1 or users[0].op_type != op_type:
        return None
    return users[0]


def _value(ctx, t: str) -> np.ndarray | None:
    """The value of a constant: folded, an initializer, or a Constant node not reached yet."""
    value = ctx.consts.get(t)
    src = ctx.producer.get(t)
    if value is None and src is not None and src.op_type == "Constant":
        try:
            value = check.constant_value(src, check.attributes(src), to_array)
        except ModelImportError:
            return None
    return None if value is None or isinstance(value, list) else np.asarray(value)


def _scalar(ctx, t: str) -> float | None:
    value = _value(ctx, t)
    if value is None or value.size != 1:
        return None
    return float(value.reshape(-1)[0])


def _other(m, t: str) -> str | None:
    """The input of binary node ``m`` that is not ``t``."""
    ins = list(m.input)
    if len(ins) != 2 or t not in ins:
        return None
    return ins[1] if ins[0] == t else ins[0]


def _activation(ctx, n) -> str | None:
    acts = {t for t in n.input if t and not ctx.is_const(t) and ctx.name(t) in ctx.shapes}
    return acts.pop() if len(acts) == 1 else None


def _close(value: float | None, want: float) -> bool:
    return value is not None and abs(value - want) <= 1e-5 * abs(want)


# -- LayerNorm ---------------------------------------------------------------------------------


def _mean_over_channels(ctx, m, t: str, x: str) -> bool:
    """``m`` is a ReduceMean of ``t`` over the channel axis of activation ``x`` (``t`` is
    ``x`` or computed from it element by element), keeping the axis."""
    a = check.attributes(m)
    if a.get("keepdims", 1) != 1 or m.input[0] != t or channel_axis(ctx, x) is None:
        return False
    axes = a.get("axes")
    if axes is None and len(m.input) > 1 and _value(ctx, m.input[1]) is not None:
        axes = _value(ctx, m.input[1]).reshape(-1).tolist()
    rank = len(ctx.shapes[ctx.name(x)]) + 1
    try:
        return axes is not None and normalised_axes(m, axes, rank) == [channel_axis(ctx, x)]
    except ModelImportError:
        return False


def _layernorm_chain(ctx, n) -> list | None:
    """[Sub, Pow, ReduceMean, Add, Sqrt, Div] after ReduceMean ``n``, or None."""
    x = _activation(ctx, n)
    if x is None or not _mean_over_channels(ctx, n, x, x):
        return None
    sub = _only_user(ctx, n.output[0], "Sub")
    if sub is None or list(sub.input) != [x, n.output[0]]:
        return None
    d = sub.output[0]
    users = ctx.users.get(d, [])
    square = next((u for u in users if u.op_type == "Pow" and u.input[0] == d), None)
    div = next((u for u in users if u.op_type == "Div" and u.input[0] == d), None)
    if d in ctx.outputs or len(users) != 2 or square is None or div is None \
            or not _close(_scalar(ctx, square.input[1]), 2.0):
        return None
    var = _only_user(ctx, square.output[0], "ReduceMean")
    if var is None or not _mean_over_channels(ctx, var, square.output[0], x):
        return None
    add = _only_user(ctx, var.output[0], "Add")
    sqrt = add and _only_user(ctx, add.output[0], "Sqrt")
    if sqrt is None or _scalar(ctx, _other(add, var.output[0]) or "") is None \
            or _only_user(ctx, sqrt.output[0], "Div") is not div or div.input[1] != sqrt.output[0]:
        return None
    return [sub, square, var, add, sqrt, div]


def _eps(ctx, chain) -> float:
    add, var = chain[3], chain[2]
    return _scalar(ctx, _other(add, var.output[0]))


# -- GELU ----------------------------------------------------------------------------------------


def _gelu(ctx, n) -> tuple[list, str] | None:
    """(the chain after ``n``, 'none' or 'tanh') of a GELU whose first node is ``n``."""
    x = _activation(ctx, n)
    if x is None or n.input[0] != x:
        return None
    gate = _erf_gate(ctx, n, x)
    kind = "none"
    if gate is None:
        gate, kind = _tanh_gate(ctx, n, x), "tanh"
    tail = gate and _tail(ctx, gate[-1], x)
    return (gate + tail, kind) if tail else None


def _erf_gate(ctx, n, x: str) -> list | None:
    """[Erf, Add 1] after x / sqrt 2 (``n``: a Div by sqrt 2 or Mul by 1/sqrt 2)."""
    k = _scalar(ctx, _other(n, x) or "")
    if not (n.op_type == "Div" and _close(k, SQRT2) or n.op_type == "Mul" and _close(k, 1 / SQRT2)):
        return None
    erf = _only_user(ctx, n.output[0], "Erf")
    add = erf and _only_user(ctx, erf.output[0], "Add")
    if add is None or not _close(_scalar(ctx, _other(add, erf.output[0]) or ""), 1.0):
        return None
    return [erf, add]


def _tanh_gate(ctx, n, x: str) -> list | None:
    """[..., Tanh, Add 1] of 1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)), x^3 being Pow(x, 3)
    (``n``) or Mul(x, Mul(x, x)) (``n`` the inner Mul)."""
    chain = []
    if n.op_type == "Mul" and list(n.input) == [x, x]:
        chain = [_only_user(ctx, n.output[0], "Mul")]
        if chain[0] is None or _other(chain[0], n.output[0]) != x:
            return None
    elif not (n.op_type == "Pow" and _close(_scalar(ctx, n.input[1]), 3.0)):
        return None
    for op, want in (("Mul", 0.044715), ("Add", None), ("Mul", math.sqrt(2 / math.pi)),
                     ("Tanh", None), ("Add", 1.0)):
        t = (chain[-1] if chain else n).output[0]
        m = _only_user(ctx, t, op)
        if m is None or op != "Tanh" and not (
                _other(m, t) == x if want is None else _close(_scalar(ctx, _other(m, t) or ""),
                                                             want)):
            return None
        chain.append(m)
    return chain


def _tail(ctx, gate, x: str) -> list | None:
    """[Mul(, Mul)]: x times the gate times 0.5, in either order."""
    times = _only_user(ctx, gate.output[0], "Mul")
    z = times and _other(times, gate.output[0])
    if z is None:
        return None
    if z == x:  # (x * gate) * 0.5
        half = _only_user(ctx, times.output[0], "Mul")
        if half is None or not _close(_scalar(ctx, _other(half, times.output[0]) or ""), 0.5):
            return None
        return [times, half]
    src = ctx.producer.get(z)  # (0.5 * x) * gate
    if src is not None and src.op_type == "Mul" and _other(src, x) is not None \
            and _close(_scalar(ctx, _other(src, x)), 0.5):
        return [times]
    return None
