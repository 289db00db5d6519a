"""Sizes are checked before memory is spent (kryptondb.limits): images over the pixel limit,
ONNX tensors, placeholders, inputs and activations whose declared size is absurd, and
checkpoints whose storages or views would blow up memory. Each is a KryptonError naming the file
and the limit. The hostile files are a few bytes each: they only declare huge sizes."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest
from hostile import jpeg_header, png_header, save_external, tiny_cnn
from onnx import TensorProto, helper, numpy_helper
from test_checkpoint import FLOATS, ODict, dumps, legacy_bytes, tensor
from test_video_naive import write_video

import kryptondb
from kryptondb.errors import CheckpointError, FileError, ImageError, KryptonError, \
    ModelImportError
from kryptondb.limits import Limits, applied, current, from_env
from kryptondb.model.checkpoint import load_checkpoint

# -- the limits themselves ---------------------------------------------------------------------


def test_defaults_environment_and_overrides(monkeypatch):
    assert current() == Limits() == Limits(100_000_000, 2 << 30, 8 << 30, 10.0)
    monkeypatch.setenv("KRYPTON_MAX_IMAGE_PIXELS", "5e6")
    assert current().image_pixels == 5_000_000
    with applied({"tensor_bytes": 10}):
        assert (current().image_pixels, current().tensor_bytes) == (5_000_000, 10)
    con = kryptondb.connect(limits={"model_bytes": 1e9})
    assert con.limits.model_bytes == 1_000_000_000 and con.limits.image_pixels == 5_000_000
    monkeypatch.setenv("KRYPTON_LOCK_TIMEOUT", "soon")
    with pytest.raises(KryptonError, match="KRYPTON_LOCK_TIMEOUT='soon' is not a number"):
        from_env()
    with pytest.raises(KryptonError, match="unknown limit 'pixels'; known: image_pixels"):
        kryptondb.connect(limits={"pixels": 1})
    with pytest.raises(KryptonError, match="image_pixels must be a non-negative number"):
        Limits(image_pixels=-1)


# -- images ------------------------------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding must not start before the size check."""
    from PIL import ImageFile

    def load(self):
        raise AssertionError("decoding started before the pixel limit was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("header", [png_header(12_000, 10_000), jpeg_header(20_000, 6_000),
                                    png_header(60_000, 60_000), png_header(1, 200_000_000)],
                         ids=["png 120 MP", "jpeg 120 MP", "png 3.6 GP", "png 1 x 200M"])
def test_images_over_the_pixel_limit_are_refused_from_the_header(tmp_path, no_decoding, header):
    path = tmp_path / "bomb.img"
    path.write_bytes(header)
    with pytest.raises(ImageError) as err:
        kryptondb.load_image(path)
    assert str(path) in str(err.value) and "image_pixels limit is 100,000,000" in \
        str(err.value).replace("limit of", "limit is")
    with pytest.raises(ImageError, match="image_pixels"):
        kryptondb.connect().execute(f"LOAD IMAGE '{path}' AS bomb")


def test_the_pixel_limit_is_an_option(tmp_path, monkeypatch):
    cat = kryptondb.bundled_image()
    con = kryptondb.connect(limits={"image_pixels": 1000})
    with pytest.raises(ImageError, match=r"chelsea.png.*over the image_pixels limit of 1,000"):
        con.execute(f"LOAD IMAGE '{cat}' AS cat")
    assert kryptondb.connect().execute(f"LOAD IMAGE '{cat}' AS cat")  # other connections
    monkeypatch.setenv("KRYPTON_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageError, match="image_pixels"):
        kryptondb.load_image(cat)


def test_a_raised_limit_is_not_undercut_by_pil(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    path = tmp_path / "big.png"
    path.write_bytes(png_header(20_000, 20_000))  # 400 MP: over PIL's own hard cap (179 MP)
    with applied({"image_pixels": 500_000_000}):
        with pytest.raises(ImageError, match="not a readable image") as err:
            kryptondb.load_image(path)  # allowed, then fails only for want of pixel data
    assert "too large" not in str(err.value) and "image_pixels" not in str(err.value)


def test_video_frames_over_the_pixel_limit(tmp_path):
    noise = [np.zeros((64, 48, 3), np.uint8)] * 2
    video = write_video(tmp_path / "v.mp4", noise)
    con = kryptondb.connect(limits={"image_pixels": 1000})
    with pytest.raises(FileError, match=r"v.mp4.*48x64.*image_pixels limit of 1,000"):
        con.execute(f"LOAD VIDEO '{video}' AS v")


# -- ONNX --------------------------------------------------------------------------------------

X = helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 8, 8))
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)


def _save(path, nodes, inits=(), inputs=(X,)):
    graph = helper.make_graph(nodes, "g", list(inputs), [Y], list(inits))
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
                     .SerializeToString())
    return path


def _conv(w="W"):
    return helper.make_node("Conv", ["x", w], ["y"], kernel_shape=[1, 1])


def _declared(name, dims):
    """A float tensor that declares ``dims`` and holds no data."""
    t = TensorProto(name=name, data_type=TensorProto.FLOAT)
    t.dims.extend(dims)
    return t


ONNX_CASES = {
    "ConstantOfShape of 10^12": (
        lambda p: _save(p, [helper.make_node("ConstantOfShape", ["s"], ["W"]), _conv()],
                        [numpy_helper.from_array(np.array([10**6, 10**6, 1, 1]), "s")]),
        "placeholder 'W'"),
    "input 1x3x100000x100000": (
        lambda p: _save(p, [_conv()], [numpy_helper.from_array(np.ones((4, 3, 1, 1),
                                                                       np.float32), "W")],
                        [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                       (1, 3, 100_000, 100_000))]),
        "input 'x'"),
    "initializer declaring 10^11 floats": (
        lambda p: _save(p, [_conv()], [_declared("W", [100_000, 1_000_000, 1, 1])]),
        "tensor 'W'"),
    "Constant node declaring 10^11 floats": (
        lambda p: _save(p, [helper.make_node("Constant", [], ["W"],
                                             value=_declared("v", [100_000, 1_000_000, 1, 1])),
                            _conv()]),
        "tensor 'v'"),
    "placeholder input of 10^12": (
        lambda p: _save(p, [_conv()], inputs=[X, helper.make_tensor_value_info(
            "W", TensorProto.FLOAT, (10**6, 10**6, 1, 1))]),
        "'W'"),
    "activation of 1.6e12 bytes": (
        lambda p: _save(p, [_conv()], [numpy_helper.from_array(
            np.ones((100_000, 3, 1, 1), np.float32), "W")], [helper.make_tensor_value_info(
                "x", TensorProto.FLOAT, (1, 3, 2000, 2000))]),
        "output of node 'y'"),
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_absurd_onnx_sizes_are_refused_before_allocation(tmp_path, case):
    make, what = ONNX_CASES[case]
    path = make(tmp_path / "absurd.onnx")
    with pytest.raises(ModelImportError) as err:
        kryptondb.load_model(path)
    message = str(err.value)
    assert str(path) in message and what in message, message
    assert "over the tensor_bytes limit of 2,147,483,648 bytes" in message, message
    with pytest.raises(ModelImportError, match="tensor_bytes"):
        kryptondb.connect().execute(f"CREATE MODEL m FROM '{path}'")


def test_onnx_data_shorter_than_declared(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "W")
    w.dims[0] = 400
    path = _save(tmp_path / "short.onnx", [_conv()], [w])
    with pytest.raises(ModelImportError, match=r"'W' in .*short.onnx has shape \[400, 3, 1, "
                                               r"1\] \(4,800 bytes\) but holds 48 bytes"):
        kryptondb.load_model(path)


def test_onnx_file_and_weights_over_model_bytes(tmp_path):
    path = save_external(tiny_cnn(channels=64), tmp_path / "m.onnx")
    with applied({"model_bytes": 100}):
        with pytest.raises(FileError, match=r"m.onnx.*over the model_bytes limit of 100 bytes"):
            kryptondb.load_model(path)
    with applied({"model_bytes": 1000}):  # the file fits, its external weights do not
        with pytest.raises(ModelImportError, match=r"weights of .*m.onnx: 9,472 bytes, over "
                                                   "the model_bytes limit of 1,000"):
            kryptondb.load_model(path)


# -- checkpoints -------------------------------------------------------------------------------


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _declare_size(archive: bytes, member: str, size: int) -> bytes:
    """Rewrite a member's uncompressed size in the central directory (what a bomb lies about)."""
    at = archive.rindex(b"PK\x01\x02", 0, archive.rindex(member.encode()))
    return archive[:at + 24] + struct.pack("<I", size) + archive[at + 28:]


def test_stride_0_views_cannot_multiply_memory(tmp_path):
    one = np.ones(1, np.float32)
    state = ODict(w=tensor("0", one, 0, (100_000, 100_000), (0, 0)))
    path = tmp_path / "s0.pth"
    path.write_bytes(legacy_bytes(state, {"0": one}))
    with pytest.raises(CheckpointError, match=r"s0.pth.*10,000,000,000 elements but views a "
                                              r"storage of 1"):
        load_checkpoint(path)


def test_many_views_of_one_storage_count_together(tmp_path):
    state = ODict({f"w{i}": tensor("0", FLOATS, 0, (24,), (1,)) for i in range(50)})
    path = tmp_path / "views.pth"
    path.write_bytes(legacy_bytes(state, {"0": FLOATS}))
    assert len(load_checkpoint(path)) == 50
    with applied({"model_bytes": 1000}):
        with pytest.raises(CheckpointError, match=r"views.pth.*tensors together: 4,800 "
                                                  r"bytes, over the model_bytes limit of 1,000"):
            load_checkpoint(path)


def test_storages_larger_than_the_file_could_hold(tmp_path):
    big = np.zeros(1000, np.float32)
    state = ODict(w=tensor("0", big, 0, (1000,), (1,)))
    data = legacy_bytes(state, {"0": big})
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:-3000])  # the storage declares 4000 bytes; 1000 remain
    with pytest.raises(CheckpointError, match=r"cut.pth.*truncated: storage '0' needs 4000 "
                                              r"bytes, 1000 remain"):
        load_checkpoint(path)
    huge = np.zeros(1, np.float32)
    state = ODict(w=tensor("0", huge, 0, (1,), (1,)))
    pid = legacy_bytes(state, {"0": huge}).replace(b"J\x01\x00\x00\x00", b"J\xff\xff\xff\x7f", 1)
    path.write_bytes(pid)  # a storage id that declares 2^31 elements
    with pytest.raises(CheckpointError, match="cut.pth"):
        load_checkpoint(path)


def test_zip_bombs_are_refused_from_the_declared_size(tmp_path):
    zeros = np.zeros(1 << 20, np.float32)  # 4 MiB of zeros: a few KiB deflated
    state = ODict(w=tensor("0", zeros, 0, (1 << 20,), (1,)))
    archive = _zip({"a/data.pkl": dumps(state), "a/byteorder": b"little",
                    "a/data/0": zeros.tobytes()})
    path = tmp_path / "bomb.pth"
    path.write_bytes(archive)
    assert path.stat().st_size < 100_000 and load_checkpoint(path)["w"].size == 1 << 20
    with applied({"tensor_bytes": 1 << 20}):
        with pytest.raises(CheckpointError, match=r"bomb.pth.*tensor 'w': 4,194,304 bytes, "
                                                  r"over the tensor_bytes limit"):
            load_checkpoint(path)
    small_view = ODict(w=tensor("0", zeros, 0, (10,), (1,)))  # of the whole 4 MiB storage
    path.write_bytes(_zip({"a/data.pkl": dumps(small_view), "a/data/0": zeros.tobytes()}))
    with applied({"tensor_bytes": 1 << 20}):
        with pytest.raises(CheckpointError, match=r"bomb.pth.*storage '0': 4,194,304 bytes, "
                                                  r"over the tensor_bytes limit"):
            load_checkpoint(path)
    path.write_bytes(_declare_size(archive, "a/data.pkl", 3 << 30))
    with pytest.raises(CheckpointError, match=r"bomb.pth.*data.pkl declares 3,221,225,472 bytes"):
        load_checkpoint(path)
    short = _zip({"a/data.pkl": dumps(state), "a/data/0": zeros[:10].tobytes()})
    path.write_bytes(short)
    with pytest.raises(CheckpointError, match=r"a/data/0 has 40 bytes, the storage needs 4194304"):
        load_checkpoint(path)
