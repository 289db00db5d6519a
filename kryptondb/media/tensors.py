"""Tensor files: NumPy's ``.npy``, read as data only (never a pickle), size-checked from the
header before the array is read, through the regular-file opener (kryptondb/files.py).

>>> import os
>>> read_npy(os.devnull, "tensor file")
Traceback (most recent call last):
kryptondb.errors.FileError: tensor file '/dev/null' is a character device, not a regular file
"""

from __future__ import annotations

import os

import numpy as np

from kryptondb.errors import FileError
from kryptondb.files import open_regular
from kryptondb.limits import check_size, tensor_bytes

_NUMERIC = "biuf"  # bool, signed and unsigned integers, floats: what a model input can be


def read_npy(path: str | os.PathLike, what: str = "tensor file") -> np.ndarray:
    """The array in the ``.npy`` file ``path`` as float32; a file that is not a regular file,
    not an ``.npy`` file, truncated, larger than the ``tensor_bytes`` limit, holding objects
    (a pickle) or anything but real numbers is a FileError naming it."""
    shown = os.fspath(path)
    with open_regular(shown, what) as f:
        shape, dtype = _header(f, shown, what)
        check_size(tensor_bytes(shape, dtype.itemsize), "tensor_bytes", f"{what} {shown!r}",
                   FileError)
        f.seek(0)
        try:
            array = np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FileError(f"cannot read {what} {shown!r}: {exc}") from None
    if array.shape != tuple(shape):
        raise FileError(f"{what} {shown!r} is truncated: its header says {shape}")
    with np.errstate(over="ignore"):  # beyond float32: inf, which the binder refuses
        return array.astype(np.float32)


def _header(f, shown: str, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the file's header, checked to be an array of real numbers."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        if version not in read:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = read[version](f)
    except (ValueError, OSError, EOFError) as exc:
        raise FileError(f"{what} {shown!r} is not a NumPy .npy file: {exc}") from None
    if dtype.hasobject or dtype.kind not in _NUMERIC or dtype.fields:
        raise FileError(f"{what} {shown!r} holds {dtype}, not real numbers (an .npy file of "
                        "float or integer values)")
    return tuple(int(d) for d in shape), dtype
