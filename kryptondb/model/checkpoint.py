"""Read PyTorch checkpoints (state dicts) into numpy arrays, without PyTorch and without running
code from the file.

A ``.pth`` file is a pickle, read by torch_pickle.py's restricted unpickler: only the globals a
state dict needs (``ALLOWED_GLOBALS``), anything else refused before any call. Tensors come back
as lazy views over storages that are decoded afterwards, since the legacy format puts the raw
storage bytes after the pickle.

Formats: the legacy stream (``_use_new_zipfile_serialization=False`` and torch < 1.6) and the zip
archive of newer ``torch.save`` (``<dir>/data.pkl`` plus ``<dir>/data/<key>``).
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

from kryptondb.errors import CheckpointError, KryptonError
from kryptondb.files import open_regular
from kryptondb.limits import ModelSize
from kryptondb.model.torch_pickle import (ALLOWED_GLOBALS, SAFE_GLOBALS, CorruptError,
                                          RestrictedUnpickler, StorageType, check_sizes, decode,
                                          find_state_dict, to_arrays)

__all__ = ["ALLOWED_GLOBALS", "LEGACY_MAGIC", "LEGACY_PROTOCOL", "load_checkpoint"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_BYTES = 64 << 20  # a zip checkpoint's data.pkl: a state dict's is kilobytes


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    """Read n bytes or fail; the size is checked against the file before allocating."""
    pos = f.tell()
    end = f.seek(0, io.SEEK_END)
    f.seek(pos)
    if n > end - pos:
        raise CorruptError(f"file is truncated: {what} needs {n} bytes, {end - pos} remain")
    return f.read(n)


def _header_pickle(f: BinaryIO, path: str) -> Any:
    """The legacy header pickles (magic, protocol, sys_info, keys) need no globals at all."""
    return RestrictedUnpickler(f, path, {}, None).load()


def _read_legacy_storages(f: BinaryIO, keys: Any, roots: dict, needed: set) -> dict:
    """After the key list: per key an int64 element count, then the little-endian elements."""
    if not isinstance(keys, list) or set(keys) != set(roots) or len(keys) != len(roots):
        raise CorruptError("the storage key list does not match the storages the tensors use")
    storages = {}
    _check_storages(roots, keys)
    for key in keys:
        stype, numel = roots[key]
        (count,) = struct.unpack("<q", _read_exact(f, 8, f"storage {key!r} header"))
        if count != numel:
            raise CorruptError(f"storage {key!r} holds {count} elements, its id says {numel}")
        raw = _read_exact(f, numel * stype.itemsize, f"storage {key!r}")
        if key in needed:
            storages[key] = decode(raw, stype, "<")
    return storages


def _read_legacy(f: BinaryIO, path: str) -> dict[str, np.ndarray]:
    """magic, protocol version, sys_info, the object, storage keys, then the storages' bytes."""
    if _header_pickle(f, path) != LEGACY_MAGIC:
        raise CorruptError("not a PyTorch checkpoint (bad magic number)")
    version = _header_pickle(f, path)
    if version != LEGACY_PROTOCOL:
        raise CorruptError(f"unsupported legacy protocol version {version!r}")
    if not isinstance(_header_pickle(f, path), dict):
        raise CorruptError("the sys_info header is not a dict")
    roots: dict[str, tuple[StorageType, int]] = {}
    state = find_state_dict(RestrictedUnpickler(f, path, SAFE_GLOBALS, roots).load())
    check_sizes(state)
    needed = {ref.storage.key for ref in state.values()}
    storages = _read_legacy_storages(f, _header_pickle(f, path), roots, needed)
    return to_arrays(state, storages)


def _zip_prefix(names: list[str]) -> str:
    """The archive's single top-level folder (torch names it after the file) holding data.pkl."""
    pkls = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    prefixes = [n[: -len("data.pkl")] for n in pkls]
    if len(prefixes) != 1:
        raise CorruptError("zip checkpoint has no single <folder>/data.pkl member")
    if any(n.startswith(prefixes[0] + "code/") for n in names):
        raise CorruptError("this is a TorchScript archive, not a torch.save state dict")
    return prefixes[0]


def _read_zip(f: BinaryIO, path: str) -> dict[str, np.ndarray]:
    """Newer torch.save: <dir>/data.pkl plus one raw member <dir>/data/<key> per storage."""
    with zipfile.ZipFile(f) as zf:
        names = zf.namelist()
        prefix = _zip_prefix(names)
        order = ">" if _zip_text(zf, prefix + "byteorder") == "big" else "<"
        roots: dict[str, tuple[StorageType, int]] = {}
        pickled = io.BytesIO(_zip_member(zf, prefix + "data.pkl", PICKLE_BYTES))
        state = find_state_dict(RestrictedUnpickler(pickled, path, SAFE_GLOBALS, roots).load())
        check_sizes(state)
        keys = {ref.storage.key for ref in state.values()}
        _check_storages(roots, keys)
        storages = {}
        for key in keys:
            stype, numel = roots[key]
            raw = _zip_member(zf, f"{prefix}data/{key}", numel * stype.itemsize, exact=True)
            storages[key] = decode(raw, stype, order)
    return to_arrays(state, storages)


def _check_storages(roots: dict, keys) -> None:
    """The storages to be read, each within ``tensor_bytes`` and all within ``model_bytes``."""
    size = ModelSize(CorruptError)
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
        raise CorruptError(f"zip checkpoint has no member {name}") from None
    if exact and info.file_size < size:
        raise CorruptError(f"{name} has {info.file_size} bytes, the storage needs {size}")
    if not exact and info.file_size > size:
        raise CorruptError(f"{name} declares {info.file_size:,} bytes, more than the "
                            f"{size:,} this reader allows for it")
    with zf.open(info) as member:
        data = member.read(size if exact else info.file_size)
    if exact and len(data) < size:
        raise CorruptError(f"{name} is truncated: {len(data)} of {size} bytes")
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
                raise CorruptError("the file is empty")
            if head[257:262] == b"ustar":
                raise CorruptError("tar-format checkpoints (PyTorch < 0.4) are not supported")
            return _read_legacy(f, shown)
        except KryptonError:
            raise
        except Exception as exc:  # pickle, zipfile and numpy raise many types on corrupt input
            what = str(exc) if isinstance(exc, CorruptError) else f"{type(exc).__name__}: {exc}"
            raise CheckpointError(f"cannot read checkpoint {shown}: {what}") from exc
