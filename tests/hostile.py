"""Hand-made hostile and tiny files for the tests: image headers that declare huge sizes (a few
bytes each, nothing decodable behind them), small ONNX CNNs with or without external data,
and special files (FIFOs, sockets, links to devices)."""

from __future__ import annotations

import os
import socket
import struct
import zlib
from pathlib import Path

import numpy as np


def png_header(width: int, height: int, body: bytes | None = None,
               color_type: int = 2) -> bytes:
    """A PNG that declares width x height pixels (RGB by default) and holds none (IHDR, IEND),
    or, with ``body``, that much pixel data (often far too little: a decompression bomb only
    needs the header to lie)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(body)) if body is not None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def jpeg_header(width: int, height: int) -> bytes:
    """A baseline JPEG that declares width x height (SOI, SOF0 with 3 components, EOI)."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"".join(
        bytes([i, 0x11, 0]) for i in (1, 2, 3))
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9"


def tiny_cnn(in_shape=(1, 3, 16, 16), channels: int = 8, classes: int = 10, seed: int = 0,
             kernel: int = 3):
    """conv -> relu -> global average pool -> flatten -> gemm, as an ONNX ModelProto."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    c = in_shape[1]
    weights = [numpy_helper.from_array(rng.standard_normal((channels, c, kernel, kernel))
                                       .astype(np.float32), "W"),
               numpy_helper.from_array(rng.standard_normal((classes, channels))
                                       .astype(np.float32), "G")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[kernel, kernel]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "G"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, classes))], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def save_external(model, path: Path, locations: dict[str, str] | None = None) -> Path:
    """Save ``model`` with every initializer's data in external files beside it: by default
    all in ``<name>.data``; ``locations`` maps a tensor name to its own location. A location
    that is not a plain relative path (hostile: absolute, with ``..``) is written into the model
    as it is, and no data is written for it."""
    from onnx import TensorProto

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    locations = locations or {}
    offsets: dict[str, int] = {}
    for t in model.graph.initializer:
        location = locations.get(t.name, path.name + ".data")
        raw, offset = t.raw_data or _raw(t), offsets.get(location, 0)
        if not os.path.isabs(location) and ".." not in Path(location).parts:
            (path.parent / location).parent.mkdir(parents=True, exist_ok=True)
            with open(path.parent / location, "r+b" if location in offsets else "wb") as f:
                f.seek(offset)
                f.write(raw)
        offsets[location] = offset + len(raw)
        t.ClearField("raw_data")
        del t.float_data[:]
        _set_external(t, location, offset, len(raw))
        t.data_location = TensorProto.EXTERNAL
    path.write_bytes(model.SerializeToString())
    return path


def _raw(tensor) -> bytes:
    from onnx import numpy_helper

    return numpy_helper.to_array(tensor).tobytes()


def _set_external(tensor, location: str, offset: int, length: int) -> None:
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def unix_socket(path: Path) -> socket.socket:
    """A bound UNIX socket at ``path`` (keep the object alive while the path is used)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    return s


def link(path: Path, target: str) -> Path:
    os.symlink(target, path)
    return path
