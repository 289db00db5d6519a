"""Captum's arguments, checked as ``captum.attr.Occlusion.attribute`` checks them (captum 0.9),
with its messages, as KryptonErrors: sliding windows and strides, targets, baselines.

Captum asserts, so code written for it catches ``AssertionError``; ``CaptumArgumentError`` is
both a KryptonError and an AssertionError, and such code keeps working.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from kryptondb.errors import KryptonError


class CaptumArgumentError(KryptonError, AssertionError):
    """An argument Captum's ``Occlusion`` rejects, with Captum's message."""


class UnsupportedArgumentError(KryptonError):
    """An argument Captum accepts that the engine cannot run (several inputs, a window over
    some channels, ``additional_forward_args`` ...); ``argument`` names it. With
    ``fallback="captum"`` such a call goes to Captum instead."""

    def __init__(self, argument: str, message: str):
        self.argument = argument
        super().__init__(f"{argument}: {message}")


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise CaptumArgumentError(message)


def strides_of(strides, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Captum's strides for one input of ``shape`` (N, ...) -> one stride per non-batch axis.

    >>> strides_of(None, (1, 3, 8, 8)), strides_of(2, (1, 3, 8, 8))
    ((1, 1, 1), (2, 2, 2))
    >>> strides_of(((1, 2, 3),), (1, 3, 8, 8))
    (1, 2, 3)
    """
    one = given_strides(strides)
    _check(_is_int(one) or (isinstance(one, tuple) and len(one) == len(shape) - 1
                            and all(_is_int(s) for s in one)),
           f"Stride for input index 0 is {one}, which is invalid for input with shape "
           f"{shape}. It must be either an int or a tuple with length equal to "
           f"len(input_shape) - 1.")
    return tuple(int(s) for s in one) if isinstance(one, tuple) else (int(one),) * (len(shape) - 1)


def given_strides(strides):
    """The strides of the one input as the call gave them (Captum takes one per input: a
    1-tuple holding them stands for them)."""
    if strides is None:
        return 1
    return strides[0] if isinstance(strides, tuple) and len(strides) == 1 else strides


def window_of(windows, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Captum's sliding window for one input of ``shape``: a tuple of len(shape) - 1 ints, or
    a tuple holding one such tuple."""
    if isinstance(windows, tuple) and windows and _is_int(windows[0]):
        windows = (windows,)
    _check(isinstance(windows, tuple) and len(windows) == 1,
           "Must provide sliding window dimensions for each input tensor.")
    one = windows[0]
    _check(isinstance(one, tuple) and len(one) == len(shape) - 1 and all(_is_int(v) for v in one),
           f"Occlusion shape for input index 0 is {one} but should be a tuple with "
           f"{len(shape) - 1} dimensions.")
    return tuple(int(v) for v in one)


def check_window(window: tuple[int, ...], strides: tuple[int, ...], shape: tuple[int, ...],
                 given=None) -> None:
    """Captum's two assertions: the window fits the input, and a stride exceeds the window only
    along an axis the window covers whole (the message shows the strides as ``given``)."""
    room = np.subtract(shape[1:], window)
    _check(bool((room >= 0).all()), f"Sliding window dimensions {window} cannot exceed input "
                                    f"dimensions {tuple(shape[1:])}.")
    _check(bool(np.logical_or(room == 0, np.array(strides) <= window).all()),
           f"Stride dimension {strides if given is None else given} cannot be larger than "
           f"sliding window shape dimension "
           f"{window}.")
    _check(all(v >= 1 for v in window) and all(s >= 1 for s in strides),
           f"sliding window {window} and strides {strides} must be positive")


def check_perturbations(perturbations_per_eval) -> None:
    _check(_is_int(perturbations_per_eval) and perturbations_per_eval >= 1,
           "Perturbations per evaluation must be an integer and at least 1.")


def select_targets(target, n: int, outputs: tuple[int, ...]) -> np.ndarray:
    """Captum's ``_select_targets`` on the flat indices of the model's per-example
    ``outputs`` shape: (n, ...) indices of the outputs each attribution row explains (rows are
    their flattening, as Captum's ``n_outputs``). ``target`` is None (every output), an int or
    a tuple (for every example), a list with one int or tuple per example, or a tensor / array
    (one int for all, or one per example).

    >>> select_targets(3, 2, (10,)).tolist(), select_targets([1, 2], 2, (10,)).tolist()
    ([3, 3], [1, 2])
    >>> select_targets(None, 1, (3,)).tolist()
    [[0, 1, 2]]
    """
    ids = np.broadcast_to(np.arange(math.prod(outputs)).reshape(outputs), (n, *outputs))
    try:
        return _select(ids, target, n)
    except IndexError as exc:
        raise KryptonError(f"target {target!r} is out of range for the model's output of shape "
                           f"{outputs} per example ({exc})") from None


def _select(ids: np.ndarray, target, n: int) -> np.ndarray:
    if target is None:
        return ids
    if hasattr(target, "tolist") and not isinstance(target, (list, tuple)):  # tensor, ndarray
        return _select_tensor(ids, np.asarray(target.tolist()), n)
    if _is_int(target) or isinstance(target, tuple):
        return _column(ids, target)
    _check(isinstance(target, list), f"Target type {type(target)} is not valid.")
    _check(len(target) == n, "Target list length does not match output!")
    if _is_int(target[0]):
        _check(ids.ndim == 2, "Output must be 2D to select tensor of targets.")
        _check(all(_is_int(t) for t in target), f"Target list {target} mixes types.")
        return np.take_along_axis(ids, np.asarray(target).reshape(n, 1), axis=1)[:, 0]
    _check(isinstance(target[0], tuple),
           f"Target element type {type(target[0])} in list is not valid.")
    return np.stack([ids[(i, *t)] for i, t in enumerate(target)])


def _select_tensor(ids: np.ndarray, t: np.ndarray, n: int) -> np.ndarray:
    if t.size == 1 and np.issubdtype(t.dtype, np.integer):
        return _column(ids, int(t.reshape(-1)[0]))
    _check(t.ndim == 1 and t.size == n and np.issubdtype(t.dtype, np.integer),
           f"Tensor target dimension {t.shape} is not valid. {(n, *ids.shape[1:])}")
    _check(ids.ndim == 2, "Output must be 2D to select tensor of targets.")
    return np.take_along_axis(ids, t.reshape(n, 1), axis=1)[:, 0]


def _column(ids: np.ndarray, target) -> np.ndarray:
    target = (target,) if _is_int(target) else target
    _check(len(target) <= ids.ndim - 1,
           f"Cannot choose target column with output shape {(len(ids), *ids.shape[1:])}.")
    return ids[(slice(None), *target)]


def baselines_of(baselines, shape: tuple[int, ...]) -> np.ndarray:
    """Captum's baselines as a float32 array broadcast to the inputs' ``shape``: None (0), a
    number, or a tensor / array broadcastable to the inputs (a fill per input, or one for
    all); a tuple holding one of these stands for it."""
    if isinstance(baselines, tuple):
        _check(len(baselines) == 1, f"{len(baselines)} baselines for 1 input")
        baselines = baselines[0]
    if baselines is None:
        return np.zeros((), np.float32)
    _check(isinstance(baselines, numbers.Real) or hasattr(baselines, "shape"),
           f"baseline input argument must be either a torch.Tensor or a number however "
           f"{type(baselines)} detected")
    b = np.asarray(baselines.detach().cpu().numpy() if hasattr(baselines, "detach")
                   else baselines, np.float32)
    try:
        fits = np.broadcast_shapes(b.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise KryptonError(f"baselines of shape {b.shape} do not broadcast to the inputs' "
                           f"{tuple(shape)}: give a number, a tensor of the inputs' shape, or "
                           f"one that broadcasts (C x H x W, 1 x C x H x W ...)")
    return b
