"""Read PyTorch checkpoints (state dicts) into numpy arrays, without PyTorch and without running
code from the file.

A ``.pth`` file is a pickle, and a stock unpickler calls whatever the file names, so loading an
untrusted checkpoint is running untrusted code. This reader instead uses an unpickler whose
``find_class`` hands out only local stand-ins for the handful of globals a state dict needs
(``ALLOWED_GLOBALS``) and raises ``UnsafeCheckpointError`` for anything else at the moment the
name is read, before any call. Tensors come back as lazy views over storages that are decoded
afterwards, since the legacy format puts the raw storage bytes after the pickle.

Formats: the legacy stream (``_use_new_zipfile_serialization=False`` and torch < 1.6) and the zip
archive of newer ``torch.save`` (``<dir>/data.pkl`` plus ``<dir>/data/<key>``).
"""

from __future__ import annotations

import io
import math
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kryptondb.errors import CheckpointError, KryptonError, UnsafeCheckpointError
from kryptondb.files import open_regular
from kryptondb.limits import ModelSize

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
_MAX_NESTING = 4
PICKLE_BYTES = 64 << 20  # a zip checkpoint's data.pkl: a state dict's is kilobytes

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


class _CorruptError(Exception):
    """A problem this reader found itself; its message is already user-facing."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: it only says how the raw bytes decode."""

    name: str
    dtype: str

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize


@dataclass(frozen=True, slots=True)
class _StorageRef:
    """An element window ``[offset, offset + numel)`` of the root storage ``key``."""

    key: str
    stype: _StorageType
    offset: int
    numel: int


@dataclass(frozen=True, slots=True)
class _TensorRef:
    """A tensor as a strided view of a storage, kept lazy until the storage bytes are read."""

    storage: _StorageRef
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
        raise _CorruptError(f"tensor {what} is {value!r}, not a tuple of ints")
    if any(v < 0 for v in value):
        raise _CorruptError(f"tensor {what} {tuple(value)} has a negative entry")
    return tuple(value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> Any:
    """Stand-in for ``torch._utils._rebuild_tensor[_v2]``; grad flags, hooks, metadata dropped."""
    if not isinstance(storage, _StorageRef):
        raise _CorruptError(f"tensor storage is a {type(storage).__name__}, not a storage id")
    if type(offset) is not int or offset < 0:
        raise _CorruptError(f"tensor storage offset {offset!r} is not a non-negative int")
    return _TensorRef(storage, offset, _ints(size, "size"), _ints(stride, "stride"))


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: a Parameter is its data."""
    if not isinstance(data, _TensorRef):
        raise _CorruptError(f"parameter data is a {type(data).__name__}, not a tensor")
    return data


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _Global(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Global(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Global(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Global(_rebuild_parameter),
    **{("torch", name): _StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()},
}
ALLOWED_GLOBALS = tuple(f"{module}.{name}" for module, name in _SAFE_GLOBALS)


class _RestrictedUnpickler(pickle.Unpickler):
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

    def persistent_load(self, pid: Any) -> _StorageRef:
        if self._roots is None:
            raise _CorruptError(f"unexpected persistent id {pid!r} in a header pickle")
        return _storage_ref(pid, self._roots)


def _storage_ref(pid: Any, roots: dict[str, tuple[_StorageType, int]]) -> _StorageRef:
    """Parse ``('storage', type, key, location, numel[, (view_key, offset, view_numel)])``.

    Every id naming one key must agree on type and size, so shared storages stay shared.
    """
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        kind = pid[0] if isinstance(pid, tuple) and pid else pid
        raise _CorruptError(f"persistent id {kind!r} is not a tensor storage (not a state dict?)")
    stype, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(stype, _StorageType) or not isinstance(key, str) or type(numel) is not int:
        raise _CorruptError(f"malformed storage id {pid!r}")
    if roots.setdefault(key, (stype, numel)) != (stype, numel) or numel < 0:
        raise _CorruptError(f"storage {key!r} is declared with conflicting types or sizes")
    view = pid[5] if len(pid) == 6 else None
    if view is None:
        return _StorageRef(key, stype, 0, numel)
    _, offset, count = view
    if not (type(offset) is int and type(count) is int and 0 <= offset <= offset + count <= numel):
        raise _CorruptError(
            f"storage view {view!r} does not fit storage {key!r} of {numel} elements"
        )
    return _StorageRef(key, stype, offset, count)


def _decode(raw: bytes, stype: _StorageType, byteorder: str) -> np.ndarray:
    """Raw storage bytes -> 1-D array; bfloat16 is widened exactly to float32."""
    if stype.name == "BFloat16Storage":
        bits = np.frombuffer(raw, dtype=byteorder + "u2").astype(np.uint32)
        return (bits << 16).view(np.float32)
    return np.frombuffer(raw, dtype=np.dtype(stype.dtype).newbyteorder(byteorder))


def _check_sizes(state: Mapping[str, _TensorRef]) -> None:
    """Before any tensor is copied out: none has more elements than the storage window it views
    (a stride-0 view of 1 element as a 10^10-element tensor), none is over ``tensor_bytes``,
    and all together are within ``model_bytes`` (many tensors can view one storage)."""
    size = ModelSize(_CorruptError)
    for name, ref in state.items():
        count = math.prod(ref.size)
        if count > ref.storage.numel:
            raise _CorruptError(
                f"tensor {name!r} (size {ref.size}, stride {ref.stride}) has {count:,} elements "
                f"but views a storage of {ref.storage.numel:,}: views that repeat elements "
                "would multiply memory, and are refused")
        size.add(count * ref.storage.stype.itemsize, f"tensor {name!r}")
    size.check_total("the tensors together")


def _arrays(state: Mapping[str, _TensorRef], storages: Mapping[str, np.ndarray]) -> dict:
    return {name: _to_array(name, ref, storages) for name, ref in state.items()}


def _to_array(name: str, ref: _TensorRef, storages: Mapping[str, np.ndarray]) -> np.ndarray:
    """Strided view -> contiguous native-order copy (never aliasing a storage shared with others).

    The view is bounds-checked first: a corrupt or hostile size/stride would make as_strided read
    outside the buffer.
    """
    s = ref.storage
    if s.key not in storages:
        raise _CorruptError(f"tensor {name!r} uses storage {s.key!r}, which has no data")
    base = storages[s.key][s.offset : s.offset + s.numel]
    if len(ref.size) != len(ref.stride):
        raise _CorruptError(f"tensor {name!r} has size {ref.size} but stride {ref.stride}")
    if 0 not in ref.size:
        last = ref.offset + sum((d - 1) * st for d, st in zip(ref.size, ref.stride, strict=True))
        if last >= base.size:
            raise _CorruptError(
                f"tensor {name!r} (offset {ref.offset}, size {ref.size}, stride {ref.stride}) "
                f"reaches element {last} of a {base.size}-element storage"
            )
    strides = tuple(st * base.itemsize for st in ref.stride)
    view = as_strided(base[ref.offset :], shape=ref.size, strides=strides, writeable=False)
    return view.astype(base.dtype.newbyteorder("="), order="C", copy=True)


def _find_state_dict(obj: Any, depth: int = 0) -> Mapping[str, _TensorRef]:
    """Unwrap ``{'state_dict': {...}, 'epoch': 3}``-style training checkpoints to name -> tensor."""
    if not isinstance(obj, dict):
        raise _CorruptError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")
    if all(isinstance(v, _TensorRef) for v in obj.values()):
        bad_keys = [k for k in obj if not isinstance(k, str)]
        if bad_keys:
            raise _CorruptError(f"state dict key {bad_keys[0]!r} is not a string")
        return obj
    for key in STATE_DICT_KEYS:
        if isinstance(obj.get(key), dict) and depth < _MAX_NESTING:
            return _find_state_dict(obj[key], depth + 1)
    bad = next(k for k, v in obj.items() if not isinstance(v, _TensorRef))
    raise _CorruptError(
        f"not a state dict: entry {bad!r} is a {type(obj[bad]).__name__}, and none of "
        f"{', '.join(STATE_DICT_KEYS)} holds a dict"
    )


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """Read n bytes or fail; the size is checked against the file before allocating."""
    pos = f.tell()
    end = f.seek(0, io.SEEK_END)
    f.seek(pos)
    if n > end - pos:
        raise _CorruptError(f"file is truncated: {what} needs {n} bytes, {end - pos} remain")
    return f.read(n)


def _header_pickle(f: BinaryIO, path: str) -> Any:
    """The legacy header pickles (magic, protocol, sys_info, keys) need no globals at all."""
    return _RestrictedUnpickler(f, path, {}, None).load()


def _read_legacy_storages(f: BinaryIO, keys: Any, roots: dict, needed: set) -> dict:
    """After the key list: per key an int64 element count, then the little-endian elements."""
    if not isinstance(keys, list) or set(keys) != set(roots) or len(keys) != len(roots):
        raise _CorruptError("the storage key list does not match the storages the tensors use")
    storages = {}
    _check_storages(roots, keys)
    for key in keys:
        stype, numel = roots[key]
        (count,) = struct.unpack("<q", _read_exact(f, 8, f"storage {key!r} header"))
        if count != numel:
            raise _CorruptError(f"storage {key!r} holds {count} elements, its id says {numel}")
        raw = _read_exact(f, numel * stype.itemsize, f"storage {key!r}")
        if key in needed:
            storages[key] = _decode(raw, stype, "<")
    return storages


def _read_legacy(f: BinaryIO, path: str) -> dict[str, np.ndarray]:
    """magic, protocol version, sys_info, the object, storage keys, then the storages' bytes."""
    if _header_pickle(f, path) != LEGACY_MAGIC:
        raise _CorruptError("not a PyTorch checkpoint (bad magic number)")
    version = _header_pickle(f, path)
    if version != LEGACY_PROTOCOL:
        raise _CorruptError(f"unsupported legacy protocol version {version!r}")
    if not isinstance(_header_pickle(f, path), dict):
        raise _CorruptError("the sys_info header is not a dict")
    roots: dict[str, tuple[_StorageType, int]] = {}
    state = _find_state_dict(_RestrictedUnpickler(f, path, _SAFE_GLOBALS, roots).load())
    _check_sizes(state)
    needed = {ref.storage.key for ref in state.values()}
    storages = _read_legacy_storages(f, _header_pickle(f, path), roots, needed)
    return _arrays(state, storages)


def _zip_prefix(names: list[str]) -> str:
    """The archive's single top-level folder (torch names it after the file) holding data.pkl."""
    pkls = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    prefixes = [n[: -len("data.pkl")] for n in pkls]
    if len(prefixes) != 1:
        raise _CorruptError("zip checkpoint has no single <folder>/data.pkl member")
    if any(n.startswith(prefixes[0] + "code/") for n in names):
        raise _CorruptError("this is a TorchScript archive, not a torch.save state dict")
    return prefixes[0]


def _read_zip(f: BinaryIO, path: str) -> dict[str, np.ndarray]:
    """Newer torch.save: <dir>/data.pkl plus one raw member <dir>/data/<key> per storage."""
    with zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        prefix = _zip_prefix(names)
        order = ">" if _zip_text(zf, prefix + "byteorder") == "big" else "<"
        roots: dict[str, tuple[_StorageType, int]] = {}
        pickled = io.BytesIO(_zip_member(zf, prefix + "data.pkl", PICKLE_BYTES))
        state = _find_state_dict(_RestrictedUnpickler(pickled, path, _SAFE_GLOBALS, roots).load())
        _check_sizes(state)
        keys = {ref.storage.key for ref in state.values()}
        _check_storages(roots, keys)
        storages = {}
        for key in keys:
            stype, numel = roots[key]
            raw = _zip_member(zf, f"{prefix}data/{key}", numel * stype.itemsize, exact=True)
            storages[key] = _decode(raw, stype, order)
    return _arrays(state, storages)


def _check_storages(roots: dict, keys) -> None:
    """The storages to be read, each within ``tensor_bytes`` and all within ``model_bytes``."""
    size = ModelSize(_CorruptError)
    for key in keys:
        stype, numel = roots.get(key, (None, 0))
        size.add(numel * stype.itemsize if stype is not None else 0, f"storage {key!r}")
    size.check_total("the storages together")


def _zip_member(zf: zipfile.ZipFile, name: str, size: int, exact: bool = False) -> bytes:
    """A member's bytes, its declared uncompressed size checked before anything is inflated
    (a zip bomb declares little and inflates much: reading stops at the declared size)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _CorruptError(f"zip checkpoint has no member {name}") from None
    if exact and info.file_size < size:
        raise _CorruptError(f"{name} has {info.file_size} bytes, the storage needs {size}")
    if not exact and info.file_size > size:
        raise _CorruptError(f"{name} declares {info.file_size:,} bytes, more than the "
                            f"{size:,} this reader allows for it")
    with zf.open(info) as member:
        data = member.read(size if exact else info.file_size)
    if exact and len(data) < size:
        raise _CorruptError(f"{name} is truncated: {len(data)} of {size} bytes")
    return data


def _zip_text(zf: zipfile.ZipFile, name: str) -> str | None:
    """A small text member such as ``byteorder`` (absent in older archives, meaning little)."""
    if name not in zf.namelist():
        return None
    return _zip_member(zf, name, 64).decode("ascii", "replace").strip()


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load a PyTorch state dict as ``{name: array}`` in file order, running nothing from the file.

    Raises FileError for a missing/unreadable path, UnsafeCheckpointError when the pickle names a
    global outside ``ALLOWED_GLOBALS``, and CheckpointError for any corrupt or unsupported file.
    """
    shown = os.fspath(path)
    with open_regular(shown, "checkpoint file") as f:
        head = f.read(512)
        f.seek(0)
        try:
            if head.startswith(ZIP_MAGIC):
                return _read_zip(f, shown)
            if not head:
                raise _CorruptError("the file is empty")
            if head[257:262] == b"ustar":
                raise _CorruptError("tar-format checkpoints (PyTorch < 0.4) are not supported")
            return _read_legacy(f, shown)
        except KryptonError:
            raise
        except Exception as exc:  # pickle, zipfile and numpy raise many types on corrupt input
            what = str(exc) if isinstance(exc, _CorruptError) else f"{type(exc).__name__}: {exc}"
            raise CheckpointError(f"cannot read checkpoint {shown}: {what}") from exc
