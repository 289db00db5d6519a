"""``fallback="captum"``: a call the engine refuses goes to ``captum.attr.Occlusion`` as it was
made (NumPy arrays in it become tensors, and the attribution comes back as arrays)."""

from __future__ import annotations

import os

import numpy as np

from kryptondb.attr.tensors import is_tensor
from kryptondb.errors import KryptonError
from kryptondb.model.model import Model

FALLBACKS = (None, "captum")


def check_fallback(fallback) -> None:
    if fallback not in FALLBACKS:
        raise KryptonError(f"fallback must be None or 'captum', got {fallback!r}")


def captum_attribute(forward_func, call: dict, why: Exception):
    """Captum's Occlusion on the call ``call`` (attribute's keyword arguments); ``why`` is the
    engine's refusal, reported if Captum cannot take the call either."""
    try:
        from captum.attr import Occlusion  # optional: only a call handed to Captum needs it
    except ImportError:
        raise KryptonError(f"{why} (fallback='captum' needs Captum: pip install "
                           f"'kryptondb[captum]')") from None
    if isinstance(forward_func, (Model, str, os.PathLike)):
        raise KryptonError(f"{why} (and Captum runs only Python callables, not a "
                           f"{type(forward_func).__name__})") from None
    numpy_in = _has_arrays(call["inputs"])
    call = {k: _tensors(v) for k, v in call.items()}
    out = Occlusion(forward_func).attribute(**call)
    if not numpy_in:
        return out
    return tuple(t.numpy() for t in out) if isinstance(out, tuple) else out.numpy()


def _has_arrays(value) -> bool:
    items = value if isinstance(value, tuple) else (value,)
    return any(isinstance(v, np.ndarray) for v in items) and not any(map(is_tensor, items))


def _tensors(value):
    """NumPy arrays (alone, or in a tuple or list) as torch tensors; anything else as is."""
    if isinstance(value, (tuple, list)):
        return type(value)(_tensors(v) for v in value)
    if isinstance(value, np.ndarray):
        import torch  # optional: here only when arrays go to Captum, which imported it

        return torch.from_numpy(value)
    return value
