"""Reading ONNX files safely: regular files only, sizes checked before memory is spent, external
data read only from the model's own folder, and self-contained copies for a database.

``load_onnx_proto`` refuses, each with a ModelImportError (FileError for the file itself) naming
the file and what is wrong:

- a model file or external data file that is not a regular file (files.py);
- a file over the ``model_bytes`` limit, and any tensor (initializer or Constant node) whose
  declared size is over ``tensor_bytes``, or all of them together over ``model_bytes``
  (kryptondb.limits), before the tensor is materialized; likewise a graph input whose declared
  shape is over ``tensor_bytes`` (a 1x3x100000x100000 image);
- external data whose ``location`` is absolute, climbs out with ``..``, or leads out of the
  model's folder through a symlink; whose offset and length do not lie inside the file; or
  whose length is not the tensor's declared size.

External data is read into the tensors, so the returned proto is self-contained.
"""

from __future__ import annotations

import math
import os
from pathlib import PurePath, PurePosixPath, PureWindowsPath
from typing import BinaryIO, Iterator

from kryptondb.errors import ModelImportError
from kryptondb.files import check_regular, open_regular, read_regular
from kryptondb.limits import ModelSize

_PROTOBUF_MAX = (1 << 31) - 1  # one serialized protobuf message, in bytes


def load_onnx_proto(path: str | os.PathLike):
    """The checked ModelProto of the ONNX file at ``path``, external data read in."""
    shown = os.fspath(path)
    proto = _parse(read_regular(shown, "ONNX file", "model_bytes"), shown)
    check_declared_sizes(proto, shown)
    _read_external(proto, shown)
    return proto


def portable_copy(path: str | os.PathLike, data_name: str,
                  inline_max: int | None = None) -> tuple[bytes, list[bytes]]:
    """(model file bytes, data file chunks) of a self-contained copy of the ONNX file at
    ``path``: the file as it is when its weights are inside it; else the model with its external
    data read in (checked as by load_onnx_proto), in one file when that fits ``inline_max``
    bytes (default: what one protobuf holds), otherwise with the weights in one data file
    ``data_name`` beside it. A file that does not parse as ONNX is copied as it is (validating
    it is the caller's business)."""
    shown = os.fspath(path)
    raw = read_regular(shown, "ONNX file", "model_bytes")
    try:
        proto = _parse(raw, shown)
    except ModelImportError:
        return raw, []
    if not any(_is_external(t) for t in tensors(proto)):
        return raw, []
    check_declared_sizes(proto, shown)
    _read_external(proto, shown)
    if proto.ByteSize() <= (_PROTOBUF_MAX if inline_max is None else inline_max):
        return proto.SerializeToString(), []
    return _externalize(proto, data_name)


def _parse(raw: bytes, shown: str):
    import onnx  # slow to import (~55 ms): ONNX files only
    from google.protobuf.message import DecodeError  # comes with onnx, as lazily

    try:
        return onnx.load_model_from_string(raw)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelImportError(
            f"{shown!r} is not a readable ONNX model (truncated or corrupt?): {exc}") from None


# -- tensors and their declared sizes --------------------------------------------------------


def tensors(proto) -> Iterator:
    """Every TensorProto of the model: initializers and node attributes, in subgraphs too."""
    yield from _graph_tensors(proto.graph)


def _graph_tensors(graph) -> Iterator:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graph_tensors(sub)


def itemsize(data_type: int) -> int:
    """Bytes per element of an ONNX element type (1 for strings and unknown types)."""
    from onnx import helper  # slow to import (~55 ms): ONNX files only

    try:
        size = helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return 1
    return size if size and data_type != 8 else 1  # 8: STRING, a pointer-sized object


def declared_bytes(dims, data_type: int, what: str) -> int:
    if any(d < 0 for d in dims):
        raise ModelImportError(f"{what} has a negative dimension: {list(dims)}")
    return math.prod(dims) * itemsize(data_type)


def check_declared_sizes(proto, shown: str) -> None:
    """Each tensor's and input's declared size against the limits, before any is allocated."""
    declared = ModelSize(ModelImportError)
    for t in tensors(proto):
        what = f"tensor {t.name!r} in {shown}"
        size = declared_bytes(t.dims, t.data_type, what)
        declared.add(size, f"{what} (shape {list(t.dims)})")
        if t.HasField("raw_data") and len(t.raw_data) != size and t.data_type != 8:
            raise ModelImportError(f"{what} has shape {list(t.dims)} ({size:,} bytes) but holds "
                                   f"{len(t.raw_data):,} bytes of data")
    declared.check_total(f"the weights of {shown}")
    for vi in proto.graph.input:  # inputs besides the image are placeholders, seeded as float32
        tensor_type = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim]
        what = f"input {vi.name!r} of {shown} (shape {dims})"
        size = max(declared_bytes(dims, tensor_type.elem_type, what), 4 * math.prod(dims))
        declared.add(size, what)
    declared.check_total(f"the weights and inputs of {shown} together")


def to_array(tensor, where: str):
    """numpy_helper.to_array, with a malformed tensor as a ModelImportError naming it and
    ``where`` it is (the file, or a node)."""
    from onnx import numpy_helper  # slow to import (~55 ms): ONNX files only

    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ModelImportError(f"tensor {tensor.name!r} of {where} cannot be read: "
                               f"{exc}") from None


# -- external data ---------------------------------------------------------------------------


def _is_external(tensor) -> bool:
    from onnx import TensorProto  # slow to import (~55 ms): ONNX files only

    return tensor.data_location == TensorProto.EXTERNAL


def external_locations(proto) -> list[str]:
    """The ``location`` every external tensor names, as written (not checked: the import checks
    them when it reads the data), sorted."""
    return sorted({e.value for t in tensors(proto) if _is_external(t)
                   for e in t.external_data if e.key == "location"})


def _read_external(proto, shown: str) -> None:
    """Read every tensor's external data into the tensor (see the module docstring)."""
    from onnx import TensorProto  # slow to import (~55 ms): ONNX files only

    folder = os.path.realpath(os.path.dirname(os.path.abspath(shown)))
    opened: dict[str, BinaryIO] = {}
    try:
        for t in tensors(proto):
            if _is_external(t):
                t.raw_data = _external_bytes(t, folder, shown, opened)
                t.data_location = TensorProto.DEFAULT
                del t.external_data[:]
    finally:
        for f in opened.values():
            f.close()


def _external_bytes(t, folder: str, shown: str, opened: dict) -> bytes:
    info = {e.key: e.value for e in t.external_data}
    what = f"tensor {t.name!r} of {shown}"
    file = _external_path(info.get("location", ""), folder, what)
    if file not in opened:
        opened[file] = open_regular(file, f"external data file of {what}", ModelImportError)
    f = opened[file]
    size, want = os.fstat(f.fileno()).st_size, declared_bytes(t.dims, t.data_type, what)
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", want))
    except ValueError:
        raise ModelImportError(f"{what}: external data offset/length {info} are not "
                               "integers") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise ModelImportError(f"{what}: external data bytes [{offset}, {offset + length}) lie "
                               f"outside {file}, which has {size:,} bytes")
    if length != want:
        raise ModelImportError(f"{what} has shape {list(t.dims)} ({want:,} bytes) but its "
                               f"external data is {length:,} bytes")
    f.seek(offset)
    return f.read(length)


def _external_path(location: str, folder: str, what: str) -> str:
    """The file ``location`` names, if it lies inside the model's folder (after symlinks)."""
    refuse = f"{what}: external data location {location!r} is outside the model's folder " \
             f"{folder}; only files in that folder (or below it) are read"
    if not location or "\0" in location:
        raise ModelImportError(f"{what}: external data has no usable location")
    parts = set(PurePosixPath(location).parts) | set(PureWindowsPath(location).parts)
    if PurePath(location).is_absolute() or PureWindowsPath(location).drive \
            or location.startswith(("/", "\\")) or ".." in parts:
        raise ModelImportError(refuse)
    check_regular(os.path.join(folder, location), f"external data file of {what}",
                  ModelImportError)  # says what a link to a device or FIFO is
    file = os.path.realpath(os.path.join(folder, location))
    if os.path.commonpath([file, folder]) != folder:
        raise ModelImportError(refuse + " (through a symlink)")
    return file


def _externalize(proto, data_name: str) -> tuple[bytes, list[bytes]]:
    """Move tensors' data (1 KiB and up) into one data file ``data_name``; (model, chunks)."""
    # onnx is slow to import (~55 ms): ONNX files only
    from onnx.external_data_helper import set_external_data

    chunks, offset = [], 0
    for t in tensors(proto):
        if t.HasField("raw_data") and len(t.raw_data) >= 1024:
            chunks.append(t.raw_data)
            set_external_data(t, data_name, offset, len(t.raw_data))
            offset += len(t.raw_data)
            t.ClearField("raw_data")
    return proto.SerializeToString(), chunks

