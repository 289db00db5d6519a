"""Content digests of what a model runs: an ONNX file's bytes (with its external data files and
the seed of any placeholder weights), or a zoo architecture with its weights file or seed.

Caches key on these digests (kryptondb/model/model.py), so the same weights under any name, path
or connection are imported once, and new weights under an old name are never mistaken for the
old ones. A file is hashed (and an ONNX file's external data references listed) once per
version: both are memoized by path and stat (device, inode, size, modification and change times
in nanoseconds), and read again when any of them change.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict

from kryptondb.errors import FileError
from kryptondb.files import check_regular, open_regular
from kryptondb.model.onnx_files import external_locations
from kryptondb.model.zoo import ZOO
from kryptondb.version import __version__

_CHUNK = 1 << 20
_MARKER = b"location"  # the key every external-data reference stores; absent -> no external data
_MEMO: "OrderedDict[tuple[str, str], tuple[tuple, object]]" = OrderedDict()
_MEMO_SIZE = 256
_LOCK = threading.Lock()


def _stamp(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _per_version(path: str, what: str, kind: str, compute):
    """``compute(path)``, memoized per file version (its path and stamp): computed again once
    the file changes, and not memoized when it changed while ``compute`` read it."""
    stamp = _stamp(check_regular(path, what))
    with _LOCK:
        hit = _MEMO.get((path, kind))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    result = compute(path)
    if _stamp(check_regular(path, what)) == stamp:  # not changed while it was read
        with _LOCK:
            _MEMO[(path, kind)] = (stamp, result)
            _MEMO.move_to_end((path, kind))
            while len(_MEMO) > _MEMO_SIZE:
                _MEMO.popitem(last=False)
    return result


def _hashed(path: str, what: str) -> tuple[str, bool]:
    """(sha256 hex of the file, whether its bytes contain the external-data marker)."""
    return _per_version(os.path.abspath(os.fspath(path)), what, "sha256",
                        lambda p: _hash(p, what))


def _hash(path: str, what: str) -> tuple[str, bool]:
    h, marker, tail = hashlib.sha256(), False, b""
    try:
        with open_regular(path, what) as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
                marker = marker or _MARKER in tail + chunk[:len(_MARKER)] or _MARKER in chunk
                tail = chunk[-len(_MARKER):]
    except OSError as exc:
        raise FileError(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None
    return h.hexdigest(), marker


def file_digest(path: str | os.PathLike, what: str = "file") -> str:
    """sha256 (hex) of a regular file's bytes, memoized per file version."""
    return _hashed(os.fspath(path), what)[0]


def _external_locations(path: str) -> tuple[str, ...]:
    """The external data files an ONNX file refers to (as written in it, unchecked), sorted;
    parsed once per file version."""
    return _per_version(path, "ONNX file", "locations", _parse_locations)


def _parse_locations(path: str) -> tuple[str, ...]:
    try:
        import onnx  # ~55 ms to import; only ONNX files with external data need it here

        proto = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - unreadable files fail with a clear error at import
        return ()
    return tuple(external_locations(proto))


def onnx_digest(path: str | os.PathLike, seed: int = 0) -> str:
    """The digest of what an ONNX file runs: its bytes, the bytes of every external data file it
    names (resolved next to it, as onnx does), and the seed that fills placeholder weights."""
    path = os.path.abspath(os.fspath(path))
    content, marker = _hashed(path, "ONNX file")
    h = hashlib.sha256(f"onnx\0{__version__}\0{content}\0seed {seed}".encode())
    base = os.path.dirname(path)
    for loc in _external_locations(path) if marker else ():
        file = os.path.normpath(os.path.join(base, loc))
        inside = os.path.commonpath([base, file]) == base
        part = file_digest(file, "external data file") if inside and os.path.isfile(file) \
            else "unreadable"  # the import names the problem
        h.update(f"\0{loc}\0{part}".encode())
    return h.hexdigest()


def zoo_digest(name: str, seed: int = 0) -> str:
    """The digest of a zoo model: its architecture (by name and KryptonDB version) and its
    weights: the checkpoint file's bytes when it has real ones, else the seed."""
    entry = ZOO[name]
    if entry.has_real_weights:
        path = entry.checkpoint_path()
        weights = file_digest(path, "checkpoint") if path else "not installed"
    else:
        weights = f"seed {seed}"
    return hashlib.sha256(f"zoo\0{__version__}\0{name}\0{weights}".encode()).hexdigest()


def preprocess_digest(digest: str, preprocess=None) -> str:
    """The digest of a model's weights (``digest``) run behind a declared preprocessing
    (``CREATE MODEL ... PREPROCESS``; None: the default, and ``digest`` as it is): views, tunings
    and memos of one preprocessing are never taken for another's."""
    if preprocess is None:
        return digest
    return hashlib.sha256(f"{digest}\0preprocess {preprocess}".encode()).hexdigest()
