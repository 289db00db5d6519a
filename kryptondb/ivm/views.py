"""Materialized views as Arrow tables: one row per layer (layer, shape, dtype, tensor), the
tensor's bytes in a large_binary cell that NumPy reads without copying."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa


def to_arrow(views: dict[str, np.ndarray], order: list[str], consume: bool = False) -> pa.Table:
    """One copy: every tensor's bytes go straight into the column's single data buffer; with
    ``consume``, each tensor leaves ``views`` once copied (so the two copies never coexist)."""
    names = [n for n in order if n in views]
    shapes = [list(views[n].shape) for n in names]
    dtypes = [str(views[n].dtype) for n in names]
    sizes = [views[n].nbytes for n in names]
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
    data = np.empty(int(offsets[-1]), np.uint8)
    for n, start, size in zip(names, offsets, sizes):
        data[start:start + size] = np.ascontiguousarray(views[n]).reshape(-1).view(np.uint8)
        if consume:
            del views[n]
    tensors = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(names),
                                               [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return pa.table({
        "layer": pa.array(names, pa.string()),
        "shape": pa.array(shapes, pa.list_(pa.int32())),
        "dtype": pa.array(dtypes, pa.string()),
        "tensor": tensors,
    })


def from_arrow(table: pa.Table) -> dict[str, np.ndarray]:
    """Zero-copy: each array is a read-only view of the Arrow buffer."""
    out = {}
    shapes, dtypes, tensors = table.column("shape"), table.column("dtype"), table.column("tensor")
    for i, name in enumerate(table.column("layer").to_pylist()):
        buf = tensors[i].as_buffer()
        arr = np.frombuffer(buf, dtype=dtypes[i].as_py()).reshape(shapes[i].as_py())
        out[name] = arr
    return out


def view_name(model, x: np.ndarray) -> str:
    """Views are keyed by the model's weights (a bound ModelRef's entry name and digest) and the
    input's content: any query on the same image and weights reuses them, and views of a model's
    old weights are never read for new ones."""
    digest = hashlib.sha1(np.ascontiguousarray(x, np.float32).tobytes()).hexdigest()[:12]
    return f"views_{model.entry}_{model.short_digest}_{digest}"
