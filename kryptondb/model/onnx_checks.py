"""Checks of one ONNX node before it is converted: the inputs, attributes and constants a
converter reads are there, of the right kind and in range. A malformed node is a
ModelImportError naming it (never a KeyError, IndexError or ZeroDivisionError), and what the
importer accepts onnxruntime runs too (positive strides, kernels and dilations, pool padding
smaller than the window, an odd LRN size, ...).

>>> from onnx import helper
>>> n = helper.make_node("MaxPool", ["x"], ["y"], name="pool")
>>> try:
...     ints(n, {"strides": [2, 0]}, "strides", 2, 1)
... except ModelImportError as exc:
...     print(exc)
MaxPool node 'pool': attribute strides must be 2 integers of at least 1, got [2, 0]
"""

from __future__ import annotations

import numpy as np

from kryptondb.errors import ModelImportError, UnsupportedOpError

DOMAINS = ("", "ai.onnx")
AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
CONSTANT_VALUES = ("value", "value_float", "value_floats", "value_int", "value_ints")


def label(n) -> str:
    """A node's name for messages; unnamed ONNX nodes go by their first output."""
    return n.name or (n.output[0] if n.output else "(unnamed, no outputs)")


def malformed(n, what: str) -> ModelImportError:
    return ModelImportError(f"{n.op_type} node {label(n)!r}: {what}")


def check_node(n) -> None:
    """What every node needs: an op of the standard ONNX domain and an output."""
    if n.domain not in DOMAINS:
        raise UnsupportedOpError(f"op {n.op_type!r} of domain {n.domain!r} at node {label(n)!r} "
                                 "is not supported: only the standard ONNX ops are")
    if not n.output or not n.output[0]:
        raise malformed(n, "has no output")


def constant(ctx, n, i: int, what: str) -> np.ndarray:
    """Input ``i`` of ``n``, which must be a constant (an initializer or a folded expression)."""
    if i >= len(n.input) or not n.input[i]:
        raise malformed(n, f"input {i} ({what}) is missing")
    if n.input[i] not in ctx.consts:
        raise UnsupportedOpError(f"{n.op_type} node {label(n)!r}: input {i} ({what}) must be a "
                                 "constant (an initializer), not computed from the image")
    return ctx.consts[n.input[i]]


def kernel(ctx, n, a: dict) -> np.ndarray:
    """A convolution's weight (input 1): a 4-D constant agreeing with ``kernel_shape``."""
    w = np.asarray(constant(ctx, n, 1, "weight"))
    if w.ndim != 4:
        raise UnsupportedOpError(f"{n.op_type} {label(n)!r}: only 2-D windows are supported (a "
                                 f"4-D weight), got a weight of shape {list(w.shape)}")
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != w.shape[2:]:
        raise malformed(n, f"kernel_shape {list(a['kernel_shape'])} is not the weight's "
                        f"{list(w.shape[2:])}")
    return w


def optional(ctx, n, i: int, what: str) -> np.ndarray | None:
    """Input ``i`` if the node has it (a constant), else None."""
    return constant(ctx, n, i, what) if i < len(n.input) and n.input[i] else None


def ints(n, a: dict, key: str, count: int, minimum: int, default=None) -> tuple[int, ...]:
    """Attribute ``key``: ``count`` integers, each at least ``minimum``."""
    value = a.get(key, default)
    if value is None:
        raise malformed(n, f"attribute {key} is missing")
    value = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(value) != count or not all(isinstance(v, int) and v >= minimum for v in value):
        want = f"{count} integers" if count > 1 else "an integer"
        raise malformed(n, f"attribute {key} must be {want} of at least {minimum}, got "
                        f"{value if count > 1 else value[0] if len(value) == 1 else value}")
    return tuple(value)


def auto_pad(n, a: dict) -> str:
    value = a.get("auto_pad", b"NOTSET")
    value = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if value not in AUTO_PADS:
        raise malformed(n, f"auto_pad {value!r} is none of {', '.join(AUTO_PADS)}")
    return value


def scalar(n, value, what: str) -> float:
    """A constant that must hold one number."""
    arr = np.asarray(value)
    if arr.size != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise malformed(n, f"{what} must be one number, got {arr.dtype} of shape "
                        f"{list(arr.shape)}")
    return float(arr.reshape(-1)[0])


def int_vector(n, value, what: str) -> list[int]:
    """A constant that must be a 1-D tensor of integers (a shape, pads)."""
    arr = np.asarray(value)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise malformed(n, f"{what} must be a 1-D tensor of integers, got {arr.dtype} of shape "
                        f"{list(arr.shape)}")
    return [int(v) for v in arr]


def axis(n, value, rank: int, what: str = "axis") -> int:
    """An axis of a tensor of ``rank`` (batch axis included), normalized to [0, rank)."""
    if not isinstance(value, int) or not -rank <= value < rank:
        raise malformed(n, f"{what} {value!r} is outside [{-rank}, {rank - 1}]")
    return value % rank


def sized(n, value, size: int, what: str) -> np.ndarray:
    """A constant flattened to ``size`` values (one per channel)."""
    arr = np.asarray(value).reshape(-1)
    if arr.size != size:
        raise malformed(n, f"{what} has {arr.size} values for {size} channels")
    return arr


def constant_value(n, a: dict, to_array) -> np.ndarray:
    """The value of a Constant node: exactly one of its numeric value attributes."""
    given = [k for k in a if k in CONSTANT_VALUES]
    other = sorted(set(a) - set(CONSTANT_VALUES))
    if other:
        raise UnsupportedOpError(f"Constant node {label(n)!r}: attribute {other[0]} is not "
                                 f"supported (only {', '.join(CONSTANT_VALUES)})")
    if len(given) != 1:
        raise malformed(n, f"needs exactly one value attribute, got {given or 'none'}")
    if given[0] == "value":
        return to_array(a["value"], f"node {label(n)!r}")
    return np.asarray(a[given[0]], np.float32 if "float" in given[0] else np.int64)


def attributes(n) -> dict:
    """A node's attributes by name, as Python values."""
    from onnx import helper  # slow to import (~55 ms): ONNX files only

    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def fill_value(n, a: dict, to_array) -> np.ndarray:
    """ConstantOfShape's ``value``: one number (default float32 0)."""
    if "value" not in a:
        return np.zeros(1, np.float32)
    value = np.asarray(to_array(a["value"], f"node {label(n)!r}"))
    if value.size != 1 or not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
        raise malformed(n, f"value must be one number, got {value.dtype} of shape "
                        f"{list(value.shape)}")
    return value


def cast_dtype(n, a: dict) -> np.dtype:
    """The NumPy type a Cast node casts to."""
    from onnx import helper  # slow to import (~55 ms): ONNX files only

    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(a["to"]))
    except (KeyError, TypeError, ValueError):
        raise malformed(n, f"cannot cast to type {a.get('to')!r}") from None
    if not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise UnsupportedOpError(f"Cast node {label(n)!r}: only casts to numbers are supported")
    return dtype
