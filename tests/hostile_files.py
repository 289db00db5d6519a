"""Hand-made hostile files for the bad-input corpus, and the statements and functions that read
them: truncated, corrupt and lying files (decompression bombs, absurd ONNX shapes, stride-0 and
lying checkpoint storages, .npy files that lie about their shape or hold a pickle), ONNX external data that is missing or escapes its folder, malicious
pickles, and special files (FIFO, /dev/zero, /dev/urandom, a directory, a socket, links).
tests/corpus_worker.py reads them, tests/test_bad_input.py checks the outcomes."""

from __future__ import annotations

import io
import os
import socket
import struct
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from corpus_worker import World, connect
from hostile import png_header

# -- hostile files -----------------------------------------------------------------------------


def _png(width: int, height: int, body: bytes = b"", color_type: int = 2) -> bytes:
    return png_header(width, height, body, color_type)


def _image_bytes(world: World, fmt: str, mode: str = "RGB", size=(20, 20), **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.open(world.img).convert(mode).resize(size)
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _onnx_variants(world: World) -> dict[str, bytes]:
    import onnx
    from onnx import TensorProto, helper

    good = onnx.load(str(world.onnx))
    out: dict[str, bytes] = {}

    def variant(name, change):
        m = onnx.ModelProto()
        m.CopyFrom(good)
        change(m)
        out[name] = m.SerializeToString()

    def dims(*d):
        def change(m):
            shape = m.graph.input[0].type.tensor_type.shape
            del shape.dim[:]
            for v in d:
                shape.dim.add().dim_value = v
        return change

    def external(location, offset=0, length=64):
        def change(m):
            t = m.graph.initializer[0]
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", location), ("offset", str(offset)),
                         ("length", str(length))):
                t.external_data.add(key=k, value=v)
        return change

    variant("huge_input.onnx", dims(1, 3, 100000, 100000))
    variant("zero_input.onnx", dims(1, 3, 0, 16))
    variant("rank2_input.onnx", dims(1, 768))
    variant("no_nodes.onnx", lambda m: m.graph.ClearField("node"))
    variant("no_inputs.onnx", lambda m: m.graph.ClearField("input"))
    variant("cycle.onnx", lambda m: m.graph.node[0].input.__setitem__(0, "y"))
    variant("opset_999.onnx", lambda m: m.opset_import[0].__setattr__("version", 999))
    variant("huge_initializer.onnx", lambda m: m.graph.initializer[0].dims.__setitem__(0, 1 << 40))
    variant("string_input.onnx", lambda m: m.graph.input[0].type.tensor_type.__setattr__(
        "elem_type", TensorProto.STRING))
    # malformed nodes: each raised KeyError, IndexError or ZeroDivisionError on import, or was
    # accepted and then failed in onnxruntime
    variant("conv_stride_0.onnx", lambda m: m.graph.node[0].attribute.append(
        helper.make_attribute("strides", [0, 0])))
    variant("conv_kernel_shape_lies.onnx", lambda m: m.graph.node[0].attribute.append(
        helper.make_attribute("kernel_shape", [1, 1])))
    variant("conv_weight_from_image.onnx", lambda m: m.graph.node[0].input.__setitem__(1, "x"))
    variant("constant_without_value.onnx", lambda m: m.graph.node.insert(
        0, helper.make_node("Constant", [], ["k"])))
    variant("op_of_another_domain.onnx", lambda m: m.graph.node[1].__setattr__(
        "domain", "com.example"))
    variant("ext_missing.onnx", external("no_such_weights.bin"))
    variant("ext_escape.onnx", external("../../../../../../etc/passwd"))
    variant("ext_absolute.onnx", external("/etc/passwd"))
    variant("ext_dev_zero.onnx", external("/dev/zero", length=1 << 40))
    variant("ext_huge_offset.onnx", external("tiny.onnx", offset=1 << 50))
    kernel = helper.make_node("Conv", ["x", "wbig"], ["y"])
    big = helper.make_tensor("wbig", TensorProto.FLOAT, [1, 3, 64, 64], [0.0] * (3 * 64 * 64))
    g = helper.make_graph([kernel], "g", list(good.graph.input), [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, None)], [big])
    out["kernel_larger_than_input.onnx"] = helper.make_model(g).SerializeToString()
    out["tensor_not_model.onnx"] = helper.make_tensor("t", TensorProto.FLOAT, [1], [1.0]) \
        .SerializeToString()
    return out


def _checkpoints(world: World) -> dict[str, bytes]:
    from test_checkpoint import (FLOATS, STATE, STORAGES, ODict, legacy_bytes, legacy_pickles,
                                 payloads, storage_bytes, tensor)

    out = {f"evil_{k.replace(' ', '_')}.pth": v for k, (v, _) in payloads(world.marker).items()}
    pickles = legacy_pickles(STATE, STORAGES)
    pickles[3] = payloads(world.marker)["os.system"][0]
    out["evil_state.pth"] = b"".join(pickles) + storage_bytes(STORAGES)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payloads(world.marker)["stdlib os.system"][0])
    out["evil_zip.pth"] = buf.getvalue()
    whole = legacy_bytes(STATE, STORAGES)
    out["truncated.pth"] = whole[: len(whole) // 2]
    amplified = ODict(w=tensor("0", FLOATS, 0, (1 << 20, 1 << 20), (0, 0)))
    out["stride0_amplified.pth"] = legacy_bytes(amplified, {"0": FLOATS})
    lying = legacy_bytes(ODict(w=tensor("0", FLOATS, 0, (24,), (1,))), {"0": FLOATS})
    out["storage_count_lies.pth"] = lying.replace(struct.pack("<q", 24), struct.pack("<q", 1 << 60))
    return out


def _npy_variants(world: World) -> dict[str, bytes]:
    """.npy files that lie, hide a pickle, or hold what no model takes."""
    from test_checkpoint import payloads

    def npy(array, **kw) -> bytes:
        buf = io.BytesIO()
        np.save(buf, array, **kw)
        return buf.getvalue()

    def header(descr: str, shape: tuple) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                                   "shape": shape})
        return buf.getvalue()

    good = npy(np.zeros((1, 3, 16, 16), np.float32))
    body = good[len(header("<f4", (1, 3, 16, 16))):]
    return {
        "truncated.npy": good[: len(good) // 2], "header_only.npy": good[:len(good) - len(body)],
        "shape_lies.npy": header("<f4", (9, 3, 16, 16)) + body,
        "huge_shape.npy": header("<f4", (1, 3, 65536, 65536)) + body,
        "pickle.npy": npy(np.array([{"x": 1}], dtype=object), allow_pickle=True),
        "evil_pickle.npy": header("|O", (1,)) + payloads(world.marker)["os.system"][0],
        "complex.npy": npy(np.zeros((3, 16, 16), complex)),
        "strings.npy": npy(np.array(["a", "b"])),
        "structured.npy": npy(np.zeros(3, [("a", "f4"), ("b", "i4")])),
        "wrong_shape.npy": npy(np.zeros((5, 5))),
        "nan.npy": npy(np.full((3, 16, 16), np.nan, np.float32)),
        "float64_inf.npy": npy(np.full((3, 16, 16), 1e300)),
        "zero_inputs.npy": npy(np.zeros((0, 3, 16, 16), np.float32)),
        "version_9.npy": b"\x93NUMPY\x09\x00" + good[8:], "text.npy": b"[[1, 2], [3, 4]]\n",
        "random.npy": np.random.default_rng(3).bytes(512), "empty.npy": b"",
    }


def _calibration_variants() -> dict[str, bytes]:
    """The shipped calibration with its optional Winograd rates broken."""
    import json

    from kryptondb.ivm.calibration import DEFAULT_PATH

    doc = json.loads(DEFAULT_PATH.read_text())
    bad = {"empty": [], "negative": [[4, -1.0]], "text": [[4, "fast"]], "flat": 3}
    return {f"{kind}_{k}.json": json.dumps(doc | {"rates": doc["rates"] | {kind: v}}).encode()
            for k, v in bad.items() for kind in ("winograd", "winograd512")}


def hostile_files(world: World) -> dict[str, Path]:
    """name -> path of every hostile file (created under world.dir / 'hostile')."""
    root = world.dir / "hostile"
    root.mkdir(exist_ok=True)
    good_png, good_onnx = world.img.read_bytes(), world.onnx.read_bytes()
    good_vid = world.vid.read_bytes()
    rng = np.random.default_rng(2)
    data: dict[str, bytes] = {
        "empty.png": b"", "empty.onnx": b"", "empty.mp4": b"", "empty.pth": b"",
        "text.png": b"definitely not a PNG\n", "text.onnx": b"ir_version: 7\n",
        "random.onnx": rng.bytes(4096), "random.mp4": rng.bytes(4096), "random.png": rng.bytes(512),
        "truncated.png": good_png[: len(good_png) // 2], "header_only.png": good_png[:33],
        "truncated.onnx": good_onnx[: len(good_onnx) // 2], "truncated.mp4": good_vid[:300],
        "truncated_late.mp4": good_vid[: len(good_vid) * 3 // 4],
        "bomb_10gpx.png": _png(100_000, 100_000), "bomb_144mpx.png": _png(12_000, 12_000),
        "bomb_wide.png": _png(1 << 30, 1), "zero_width.png": _png(0, 20),
        "bad_color_type.png": _png(20, 20, color_type=7),
        "gray16.png": _image_bytes(world, "PNG", "I;16"), "one_bit.png": _image_bytes(
            world, "PNG", "1"), "cmyk.jpg": _image_bytes(world, "JPEG", "CMYK"),
        "palette.gif": _image_bytes(world, "GIF", "P"), "rgba.png": _image_bytes(world, "PNG",
                                                                                 "RGBA"),
        "tiny_1x1.png": _image_bytes(world, "PNG", size=(1, 1)),
        "thin_1x4000.png": _image_bytes(world, "PNG", size=(4000, 1)),
        # 4 MP, under the pixel limit, but resized whole to the tiny model's 18 pixels wide it
        # would be 1.3 G pixels (at 256 wide, a 1 x 60000 image would be 15 G)
        "thin_1x4000000.png": _image_bytes(world, "PNG", size=(1, 4_000_000)),
        # PIL's DDS reader raises NotImplementedError for a pixel format it does not know
        "unknown_format.dds": b"DDS " + struct.pack("<7I", 124, 0x1007, 8, 8, 0, 0, 0)
        + bytes(200),
        "tiff.tif": _image_bytes(world, "TIFF"), "bmp.bmp": _image_bytes(world, "BMP"),
        "svg.png": b'<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"/>',
        "image_as_video.mp4": good_png, "video_as_image.png": good_vid,
        "onnx_as_image.png": good_onnx,
        "empty.json": b"", "random.json": rng.bytes(512), "png_as.json": good_png,
        "wrong_schema.json": b'{"schema": "kryptondb.calibration/9"}', "list.json": b"[1, 2]",
        **_calibration_variants(),
        **_onnx_variants(world), **_checkpoints(world), **_npy_variants(world),
    }
    corrupt = bytearray(_image_bytes(world, "JPEG", size=(64, 64)))
    corrupt[200:260] = rng.bytes(60)
    data["corrupt.jpg"] = bytes(corrupt)
    files = {}
    for name, blob in data.items():
        (root / name).write_bytes(blob)
        files[name] = root / name
    return {**files, **_special_files(root)}


def _special_files(root: Path) -> dict[str, Path]:
    out = {"dev_zero": Path("/dev/zero"), "dev_null": Path("/dev/null"),
           "dev_urandom": Path("/dev/urandom"), "directory": root / "folder.png"}
    out["directory"].mkdir(exist_ok=True)
    fifo = root / "fifo.onnx"
    if not fifo.exists():
        os.mkfifo(fifo)
    out["fifo"] = fifo
    sock = root / "sock.png"
    if not sock.exists():
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(sock))
        s.close()
    out["socket"] = sock
    for name, target in (("zero_link.onnx", "/dev/zero"), ("loop.png", "loop.png"),
                         ("dangling.mp4", "nowhere.mp4")):
        link = root / name
        if not link.is_symlink():
            link.symlink_to(target)
        out[name] = link
    return out


# -- reading them ------------------------------------------------------------------------------

READERS = {
    "CREATE MODEL": "CREATE MODEL m FROM '{f}'",
    "CREATE MODEL, PREDICT": "CREATE MODEL m FROM '{f}'; PREDICT IMAGE cat USING MODEL m TOP 1",
    "LOAD IMAGE": "LOAD IMAGE '{f}' AS x",
    "LOAD VIDEO": "LOAD VIDEO '{f}' AS v",
    "PREDICT": "PREDICT IMAGE '{f}' USING MODEL tiny TOP 2",
    "EXPLAIN OCCLUSION": "EXPLAIN OCCLUSION OF IMAGE '{f}' USING MODEL tiny PATCH 8 STRIDE 8",
    "EXPLAIN OCCLUSION OF TENSOR": "EXPLAIN OCCLUSION OF TENSOR '{f}' USING MODEL tiny PATCH 8 "
                                   "STRIDE 8",
    "EXPLAIN OCCLUSION OF IMAGES": "EXPLAIN OCCLUSION OF IMAGES ('{f}', cat) USING MODEL tiny "
                                   "PATCH 8 STRIDE 8",
    "TUNE": "TUNE MODEL tiny PATCH 8 STRIDE 4 ON IMAGES '{f}'",
    "PREDICT IMAGES": "PREDICT IMAGES ('{f}', cat) USING MODEL tiny TOP 2",
    "RECOGNIZE IN VIDEOS": "RECOGNIZE OBJECTS IN VIDEOS (clip, '{f}') USING MODEL tiny TOP 1",
    "RECOGNIZE": "RECOGNIZE OBJECTS IN VIDEO '{f}' USING MODEL tiny TOP 1",
    "RECOGNIZE NAIVE": "RECOGNIZE OBJECTS IN VIDEO '{f}' USING MODEL tiny TOP 1 NAIVE",
    "TUNE ON VIDEO": "TUNE MODEL tiny ON VIDEO '{f}' FRAMES 0 TO 7",
}
# Every file goes through the three statements that register files; the readers of one kind
# of file see the files of that kind, and special files (no suffix) see every reader.
EVERY_FILE = ("CREATE MODEL", "LOAD IMAGE", "LOAD VIDEO")
BY_KIND = {
    "model": ("CREATE MODEL, PREDICT", "load_model", "load_checkpoint", "on-disk CREATE MODEL"),
    "image": ("PREDICT", "PREDICT IMAGES", "EXPLAIN OCCLUSION", "EXPLAIN OCCLUSION OF IMAGES",
              "TUNE", "load_image"),
    "tensor": ("EXPLAIN OCCLUSION OF TENSOR",),
    "video": ("RECOGNIZE", "RECOGNIZE NAIVE", "RECOGNIZE IN VIDEOS", "TUNE ON VIDEO"),
    "calibration": ("read_calibration",),  # kryptondb calibrate's file, KRYPTONDB_CALIBRATION
}
KINDS = {".onnx": "model", ".pth": "model", ".png": "image", ".jpg": "image", ".gif": "image",
         ".tif": "image", ".bmp": "image", ".dds": "image", ".mp4": "video", ".npy": "tensor",
         ".json": "calibration"}
HOSTILE_TIMEOUT_S = 10  # a hostile file is refused in well under a second
HOSTILE_HEADROOM = 1 << 30


def readers(name: str) -> tuple[str, ...]:
    kind = KINDS.get(os.path.splitext(name)[1])
    extra = BY_KIND[kind] if kind else sum(BY_KIND.values(), ())
    return EVERY_FILE + tuple(r for r in extra if r not in EVERY_FILE)


def read_action(world: World, reader: str, path: Path):
    """The action a case runs: a statement on a fresh connection, or a Python API call."""
    import kryptondb

    if reader == "load_model":
        return lambda: kryptondb.load_model(str(path))
    if reader == "load_image":
        return lambda: kryptondb.load_image(path)
    if reader == "read_calibration":
        from kryptondb.ivm.calibration import read

        return lambda: read(path)
    if reader == "load_checkpoint":
        from kryptondb.model.checkpoint import load_checkpoint

        return lambda: load_checkpoint(path)
    if reader == "on-disk CREATE MODEL":
        def create():
            with tempfile.TemporaryDirectory() as db:
                kryptondb.connect(db).execute(f"CREATE MODEL m FROM '{path}'")
        return create
    con = connect(world)
    return lambda: con.execute(READERS[reader].replace("{f}", str(path)))


