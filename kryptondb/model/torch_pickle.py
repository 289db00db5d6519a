"""A PyTorch state dict's pickle, read without running code from it.

A stock unpickler calls whatever the file names, so loading an untrusted checkpoint is running
untrusted code. ``RestrictedUnpickler`` instead hands out only local stand-ins for the handful of
globals a state dict needs (``ALLOWED_GLOBALS``) and raises ``UnsafeCheckpointError`` for
anything else at the moment the name is read, before any call. Tensors come back as lazy views
(``TensorRef``) over storages that the container format (checkpoint.py) reads afterwards; they
are bounds-checked and copied out by ``to_arrays``.
"""

from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kryptondb.errors import UnsafeCheckpointError
from kryptondb.limits import ModelSize

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
_MAX_NESTING = 4

# torch storage class name -> element dtype of its raw bytes (byte order added when decoding).
# bfloat16 has no numpy dtype: its bits are read as uint16 and widened exactly to float32.
_STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "ComplexDoubleStorage": "c16",
    "ComplexFloatStorage": "c8",
}


class CorruptError(Exception):
    """A problem this reader found itself; its message is already user-facing."""


@dataclass(frozen=True, slots=True)
class StorageType:
    """Stand-in for a ``torch.*Storage`` class: it only says how the raw bytes decode."""

    name: str
    dtype: str

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize


@dataclass(frozen=True, slots=True)
class StorageRef:
    """An element window ``[offset, offset + numel)`` of the root storage ``key``."""

    key: str
    stype: StorageType
    offset: int
    numel: int


@dataclass(frozen=True, slots=True)
class TensorRef:
    """A tensor as a strided view of a storage, kept lazy until the storage bytes are read."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Global:
    """Immutable wrapper for an allowed callable, so a pickle BUILD cannot patch its attributes."""

    fn: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def _ints(value: Any, what: str) -> tuple[int, ...]:
    """Sizes and strides must be plain non-negative ints: they steer as_strided over memory."""
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise CorruptError(f"tensor {what} is {value!r}, not a tuple of ints")
    if any(v < 0 for v in value):
        raise CorruptError(f"tensor {what} {tuple(value)} has a negative entry")
    return tuple(value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> Any:
    """Stand-in for ``torch._utils._rebuild_tensor[_v2]``; grad flags, hooks, metadata dropped."""
    if not isinstance(storage, StorageRef):
        raise CorruptError(f"tensor storage is a {type(storage).__name__}, not a storage id")
    if type(offset) is not int or offset < 0:
        raise CorruptError(f"tensor storage offset {offset!r} is not a non-negative int")
    return TensorRef(storage, offset, _ints(size, "size"), _ints(stride, "stride"))


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: a Parameter is its data."""
    if not isinstance(data, TensorRef):
        raise CorruptError(f"parameter data is a {type(data).__name__}, not a tensor")
    return data


SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _Global(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Global(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Global(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Global(_rebuild_parameter),
    **{("torch", name): StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()},
}
ALLOWED_GLOBALS = tuple(f"{module}.{name}" for module, name in SAFE_GLOBALS)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only from ``allowed`` and persistent ids only as storages.

    ``roots`` collects the root storages seen (key -> type and element count); ``None`` means the
    pickle may not hold persistent ids at all (the small header pickles of the legacy format).
    """

    def __init__(self, file: BinaryIO, path: str, allowed: Mapping, roots: dict | None) -> None:
        super().__init__(file, encoding="utf-8")
        self._path, self._allowed, self._roots = path, allowed, roots

    def find_class(self, module: str, name: str) -> Any:
        """Refuse, before anything is called, every global that is not on the allow-list."""
        found = self._allowed.get((module, name))
        if found is None:
            raise UnsafeCheckpointError(
                f"{self._path}: checkpoint asks for {module}.{name}, which is not an allowed "
                "global (a state dict needs only tensors, storages and OrderedDict); "
                "refused before running anything from the file"
            )
        return found

    def persistent_load(self, pid: Any) -> StorageRef:
        if self._roots is None:
            raise CorruptError(f"unexpected persistent id {pid!r} in a header pickle")
        return _storage_ref(pid, self._roots)


def _storage_ref(pid: Any, roots: dict[str, tuple[StorageType, int]]) -> StorageRef:
    """Parse ``('storage', type, key, location, numel[, (view_key, offset, view_numel)])``.

    Every id naming one key must agree on type and size, so shared storages stay shared.
    """
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        kind = pid[0] if isinstance(pid, tuple) and pid else pid
        raise CorruptError(f"persistent id {kind!r} is not a tensor storage (not a state dict?)")
    stype, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(stype, StorageType) or not isinstance(key, str) or type(numel) is not int:
        raise CorruptError(f"malformed storage id {pid!r}")
    if roots.setdefault(key, (stype, numel)) != (stype, numel) or numel < 0:
        raise CorruptError(f"storage {key!r} is declared with conflicting types or sizes")
    view = pid[5] if len(pid) == 6 else None
    if view is None:
        return StorageRef(key, stype, 0, numel)
    _, offset, count = view
    if not (type(offset) is int and type(count) is int and 0 <= offset <= offset + count <= numel):
        raise CorruptError(
            f"storage view {view!r} does not fit storage {key!r} of {numel} elements"
        )
    return StorageRef(key, stype, offset, count)


def decode(raw: bytes, stype: StorageType, byteorder: str) -> np.ndarray:
    """Raw storage bytes -> 1-D array; bfloat16 is widened exactly to float32."""
    if stype.name == "BFloat16Storage":
        bits = np.frombuffer(raw, dtype=byteorder + "u2").astype(np.uint32)
        return (bits << 16).view(np.float32)
    return np.frombuffer(raw, dtype=np.dtype(stype.dtype).newbyteorder(byteorder))


def check_sizes(state: Mapping[str, TensorRef]) -> None:
    """Before any tensor is copied out: none has more elements than the storage window it views
    (a stride-0 view of 1 element as a 10^10-element tensor), none is over ``tensor_bytes``,
    and all together are within ``model_bytes`` (many tensors can view one storage)."""
    size = ModelSize(CorruptError)
    for name, ref in state.items():
        count = math.prod(ref.size)
        if count > ref.storage.numel:
            raise CorruptError(
                f"tensor {name!r} (size {ref.size}, stride {ref.stride}) has {count:,} elements "
                f"but views a storage of {ref.storage.numel:,}: views that repeat elements "
                "would multiply memory, and are refused")
        size.add(count * ref.storage.stype.itemsize, f"tensor {name!r}")
    size.check_total("the tensors together")


def to_arrays(state: Mapping[str, TensorRef], storages: Mapping[str, np.ndarray]) -> dict:
    return {name: _to_array(name, ref, storages) for name, ref in state.items()}


def _to_array(name: str, ref: TensorRef, storages: Mapping[str, np.ndarray]) -> np.ndarray:
    """Strided view -> contiguous native-order copy (never aliasing a storage shared with others).

    The view is bounds-checked first: a corrupt or hostile size/stride would make as_strided read
    outside the buffer.
    """
    s = ref.storage
    if s.key not in storages:
        raise CorruptError(f"tensor {name!r} uses storage {s.key!r}, which has no data")
    base = storages[s.key][s.offset : s.offset + s.numel]
    if len(ref.size) != len(ref.stride):
        raise CorruptError(f"tensor {name!r} has size {ref.size} but stride {ref.stride}")
    if 0 not in ref.size:
        last = ref.offset + sum((d - 1) * st for d, st in zip(ref.size, ref.stride, strict=True))
        if last >= base.size:
            raise CorruptError(
                f"tensor {name!r} (offset {ref.offset}, size {ref.size}, stride {ref.stride}) "
                f"reaches element {last} of a {base.size}-element storage"
            )
    strides = tuple(st * base.itemsize for st in ref.stride)
    view = as_strided(base[ref.offset :], shape=ref.size, strides=strides, writeable=False)
    return view.astype(base.dtype.newbyteorder("="), order="C", copy=True)


def find_state_dict(obj: Any, depth: int = 0) -> Mapping[str, TensorRef]:
    """Unwrap ``{'state_dict': {...}, 'epoch': 3}``-style training checkpoints to name -> tensor."""
    if not isinstance(obj, dict):
        raise CorruptError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")
    if all(isinstance(v, TensorRef) for v in obj.values()):
        bad_keys = [k for k in obj if not isinstance(k, str)]
        if bad_keys:
            raise CorruptError(f"state dict key {bad_keys[0]!r} is not a string")
        return obj
    for key in STATE_DICT_KEYS:
        if isinstance(obj.get(key), dict) and depth < _MAX_NESTING:
            return find_state_dict(obj[key], depth + 1)
    bad = next(k for k, v in obj.items() if not isinstance(v, TensorRef))
    raise CorruptError(
        f"not a state dict: entry {bad!r} is a {type(obj[bad]).__name__}, and none of "
        f"{', '.join(STATE_DICT_KEYS)} holds a dict"
    )
