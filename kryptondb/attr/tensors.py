"""Tensors in and out: a torch tensor or a NumPy array in, the same kind out.

torch stays optional: a value is a torch tensor only if torch is already imported (whoever
made the tensor imported it), so nothing here imports torch.
"""

from __future__ import annotations

import sys

import numpy as np

from kryptondb.errors import KryptonError


def torch_module():
    """The torch module if it is imported in this process, else None."""
    return sys.modules.get("torch")


def is_tensor(x) -> bool:
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def is_module(f) -> bool:
    torch = torch_module()
    return torch is not None and isinstance(f, torch.nn.Module)


def to_numpy(x, what: str = "inputs") -> np.ndarray:
    """A torch tensor (any device, with or without grad) or an array-like -> a NumPy array."""
    if is_tensor(x):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise KryptonError(f"{what} must be a torch tensor or a NumPy array, got "
                           f"{type(x).__name__} ({exc})") from None


def like(values: np.ndarray, x):
    """``values`` (a NumPy array or a broadcast view) copied into the kind of ``x``: a torch
    tensor on ``x``'s device, or a NumPy array; of ``x``'s dtype when it is a floating type,
    else float32 (an attribution of an integer input is not an integer)."""
    if is_tensor(x):
        torch = torch_module()
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        wide = np.float64 if dtype == torch.float64 else np.float32  # then half types, if any
        return torch.from_numpy(np.array(values, wide)).to(device=x.device, dtype=dtype)
    x = np.asarray(x)
    return np.array(values, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
