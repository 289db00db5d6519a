"""Malformed inputs: each raises a KryptonError subclass whose message names the problem and where
it is, never a bare ValueError or a protobuf/PIL/numpy exception."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kryptondb
from kryptondb.runtime.backends import get_backend
from kryptondb.errors import (BackendError, CheckpointError, FileError, ImageError, KryptonError,
                              ModelImportError, PlanError, ShapeError, UnsafeCheckpointError,
                              UnsupportedOpError)
from kryptondb.model import architectures
from kryptondb.model.checkpoint import load_checkpoint
from kryptondb.model.onnx_import import import_onnx
from kryptondb.model.zoo import ZOO

LIGHT_SQUEEZENET = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data",
                                "light", "light_squeezenet.onnx")


def test_every_error_is_a_krypton_error():
    for cls in (BackendError, CheckpointError, FileError, ImageError, ModelImportError,
                ShapeError, UnsafeCheckpointError, UnsupportedOpError):
        assert issubclass(cls, KryptonError)


# -- ONNX files --------------------------------------------------------------------------------


def _save(tmp_path, nodes, inits=None, name="m.onnx", opset=17):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    tensors = [numpy_helper.from_array(v, k) for k, v in (inits or {}).items()]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], tensors),
                              opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_truncated_onnx_file_names_the_path(tmp_path, fraction):
    data = open(LIGHT_SQUEEZENET, "rb").read()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelImportError, match="cut.onnx"):
        import_onnx(path)


def test_random_bytes_are_not_an_onnx_model(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelImportError, match="garbage.onnx"):
        import_onnx(path)


@pytest.mark.parametrize("op", ["Tan", "Floor"])
def test_unsupported_op_names_op_node_and_supported_set(tmp_path, op):
    w = np.ones((4, 3, 3, 3), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv0"),
             helper.make_node(op, ["c"], ["y"], name="odd_one")]
    path = _save(tmp_path, nodes, {"w": w})
    with pytest.raises(UnsupportedOpError) as info:
        import_onnx(path)
    message = str(info.value)
    assert repr(op) in message and "odd_one" in message
    assert "supported:" in message and "Conv" in message and "MaxPool" in message


def test_negative_pads_are_refused_not_crashed_on(tmp_path):
    pads = np.array([0, 0, -1, 1, 0, 0, 1, -1], np.int64)  # ONNX lets Pad crop; we do not
    path = _save(tmp_path, [helper.make_node("Pad", ["x", "p"], ["y"], name="crop")], {"p": pads})
    with pytest.raises(UnsupportedOpError, match="negative"):
        import_onnx(path)


def _w(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _node(op, ins, out="y", **kw):
    return helper.make_node(op, ins, [out], name=f"{op.lower()}0", **kw)


_GAP = [helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"])]
_FLAT = [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
         helper.make_node("Flatten", ["g"], ["f"])]
_W = {"w": _w(4, 3, 3, 3)}


def _on_x(op, ins=("x",), **kw):
    """``op`` on the image, then global pooling."""
    return [_node(op, list(ins), "c", **kw)] + _GAP


def _const_add(op, ins):
    """A constant made by ``op`` from ``ins``, added to the image."""
    return [_node(op, ins, "k"), _node("Add", ["x", "k"], "c")] + _GAP


_PADS = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
# Each of these broke the importer with a KeyError, IndexError, ZeroDivisionError, ValueError or
# TypeError, or was accepted and then failed in onnxruntime (or ran something else than the file).
MALFORMED = {
    "conv weight from the image": ([_node("Relu", ["x"], "r")] + _on_x("Conv", ["x", "r"]), {}),
    "conv without a weight": (_on_x("Conv"), {}),
    "conv weight of rank 0": (_on_x("Conv", ["x", "w"]), {"w": np.float32(1)}),
    "conv stride 0": (_on_x("Conv", ["x", "w"], strides=[0, 0]), _W),
    "conv negative stride": (_on_x("Conv", ["x", "w"], strides=[-1, -1]), _W),
    "conv dilation 0": (_on_x("Conv", ["x", "w"], dilations=[0, 0]), _W),
    "conv one pad": (_on_x("Conv", ["x", "w"], pads=[1]), _W),
    "conv three strides": (_on_x("Conv", ["x", "w"], strides=[1, 1, 1]), _W),
    "SAME conv stride 0": (_on_x("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[0, 0]), _W),
    "unknown auto_pad": (_on_x("Conv", ["x", "w"], auto_pad="WHATEVER"), _W),
    "kernel_shape unlike the weight": (_on_x("Conv", ["x", "w"], kernel_shape=[1, 1]), _W),
    "conv bias of another length": (_on_x("Conv", ["x", "w", "b"]), {**_W, "b": _w(7)}),
    "conv group 0": (_on_x("Conv", ["x", "w"], group=0), _W),
    "pool without kernel_shape": (_on_x("MaxPool"), {}),
    "pool kernel 0": (_on_x("MaxPool", kernel_shape=[0, 0]), {}),
    "pool stride 0": (_on_x("MaxPool", kernel_shape=[2, 2], strides=[0, 0]), {}),
    "pool pads as large as the kernel": (_on_x("MaxPool", kernel_shape=[2, 2], pads=[2] * 4), {}),
    "LRN without size": (_on_x("LRN"), {}),
    "LRN size 0": (_on_x("LRN", size=0), {}),
    "LRN even size": (_on_x("LRN", size=4), {}),
    "Constant without a value": (_const_add("Constant", []), {}),
    "ConstantOfShape of a 2-D shape": (_const_add("ConstantOfShape", ["s"]),
                                       {"s": np.ones((2, 2), np.int64)}),
    "ConstantOfShape of a float shape": (_const_add("ConstantOfShape", ["s"]),
                                         {"s": np.array([1e30], np.float32)}),
    "constant Reshape to the wrong size": (_const_add("Reshape", ["a", "s"]),
                                           {"a": _w(4), "s": np.array([3], np.int64)}),
    "Unsqueeze beyond the rank": (_const_add("Unsqueeze", ["a", "ax"]),
                                  {"a": _w(3), "ax": np.array([99], np.int64)}),
    "Gather out of bounds": (_const_add("Gather", ["a", "i"]),
                             {"a": _w(3), "i": np.array([99], np.int64)}),
    "Reshape to an empty shape": (_on_x("Reshape", ["x", "s"]), {"s": np.array([], np.int64)}),
    "Reshape to a float shape": (_on_x("Reshape", ["x", "s"]),
                                 {"s": np.array([1, 3, 8, 8], np.float32)}),
    "Concat axis beyond the rank": (_on_x("Concat", ["x", "x"], axis=99), {}),
    "Concat of nothing": (_on_x("Concat", [], axis=1), {}),
    "Softmax axis beyond the rank": (_on_x("Softmax", axis=-99), {}),
    "Softmax over the batch": (_on_x("Softmax", axis=0), {}),
    "Gemm with a 1-D B": (_FLAT + [_node("Gemm", ["f", "b"])], {"b": _w(3)}),
    "Gemm C of another length": (_FLAT + [_node("Gemm", ["f", "b", "cc"])],
                                 {"b": _w(3, 5), "cc": _w(7)}),
    "MatMul B from the image": (_FLAT + [_node("MatMul", ["f", "f"])], {}),
    "Clip bounds of several values": (_on_x("Clip", ["x", "lo"]), {"lo": _w(3)}),
    "Pad value of several values": (_on_x("Pad", ["x", "p", "v"]), {"p": _PADS, "v": _w(3)}),
    "Pad without pads": (_on_x("Pad"), {}),
    "BatchNormalization missing inputs": (_on_x("BatchNormalization", ["x", "a"]), {"a": _w(3)}),
    "BatchNormalization of the wrong length": (_on_x("BatchNormalization", ["x"] + ["a"] * 4),
                                               {"a": _w(5)}),
    "a constant that adds axes": (_on_x("Add", ["x", "a"]), {"a": _w(1, 5, 3, 8, 8)}),
    "a constant of strings": (_on_x("Add", ["x", "a"]), {"a": np.array(["s"])}),
    "ConvTranspose weight for other channels": (_on_x("ConvTranspose", ["x", "w"]), _W),
    "ConvTranspose output_padding as large as the stride": (
        _on_x("ConvTranspose", ["x", "w"], strides=[2, 2], output_padding=[2, 2]),
        {"w": _w(3, 2, 3, 3)}),
    "ConvTranspose cropped to nothing": (_on_x("ConvTranspose", ["x", "w"], pads=[9] * 4),
                                         {"w": _w(3, 2, 3, 3)}),
    "Resize without scales or sizes": (_on_x("Resize"), {}),
    "Resize scales of three values": (_on_x("Resize", ["x", "", "s"]),
                                      {"s": np.ones(3, np.float32)}),
    "Resize to nothing": (_on_x("Resize", ["x", "", "s"]),
                          {"s": np.array([1, 1, 0.01, 0.01], np.float32)}),
    "Cast to an unknown type": ([_node("Cast", ["a"], "k", to=999), _node("Add", ["x", "k"], "c")]
                                + _GAP, {"a": _w(3)}),
    "a node without outputs": ([helper.make_node("Relu", ["x"], [], name="r")] + _GAP, {}),
    "an op of another domain": ([helper.make_node("Relu", ["x"], ["c"], domain="com.example")]
                                + _GAP, {}),
}


def _text_constant():
    return helper.make_node("Constant", [], ["k"], value_string="a")


MALFORMED["Constant holding a string"] = ([_text_constant(), _node("Add", ["x", "k"], "c")]
                                          + _GAP, {})


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_node_is_a_model_import_error(tmp_path, case):
    nodes, inits = MALFORMED[case]
    path = _save(tmp_path, nodes, inits, opset=13)
    with pytest.raises((ModelImportError, ShapeError), match="m.onnx"):
        kryptondb.load_model(path)


def _channels_last(*nodes):
    return [_node("Transpose", ["x"], "t", perm=[0, 2, 3, 1]), *nodes]


UNSUPPORTED = {
    "Resize cubic": (_on_x("Resize", ["x", "", "s"], mode="cubic"),
                     {"s": np.array([1, 1, 2, 2], np.float32)}, "mode 'cubic'"),
    "Resize of the channels": (_on_x("Resize", ["x", "", "s"]),
                               {"s": np.array([1, 2, 2, 2], np.float32)}, "spatial axes"),
    "ConvTranspose with output_shape": (
        _on_x("ConvTranspose", ["x", "w"], output_shape=[9, 9]), {"w": _w(3, 2, 3, 3)},
        "output_shape"),
    "LayerNormalization over C, H and W": (_on_x("LayerNormalization", ["x", "s"], axis=1),
                                           {"s": _w(3, 8, 8)}, "only over the channels"),
    "a Conv on a channels-last tensor": (_channels_last(_node("Conv", ["t", "w"], "c")) + _GAP,
                                         _W, "channels-last"),
    "ReduceMean over the width": (_on_x("ReduceMean", axes=[3]), {}, "spatial axes"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_uses_of_modern_ops_name_the_node_and_what_is(tmp_path, case):
    nodes, inits, what = UNSUPPORTED[case]
    path = _save(tmp_path, nodes, inits, opset=13)
    with pytest.raises(UnsupportedOpError, match="m.onnx") as info:
        kryptondb.load_model(path)
    assert what in str(info.value)


def test_a_channels_last_output_is_refused(tmp_path):
    path = _save(tmp_path, _channels_last(_node("Relu", ["t"], "y")), opset=13)
    with pytest.raises(ModelImportError, match="channels-last"):
        kryptondb.load_model(path)


def test_every_constant_value_attribute_is_read(tmp_path):
    """value_floats was read as 0.0 (and value_ints too): the model ran something else."""
    import onnxruntime as ort

    k = np.arange(8, dtype=np.float32) / 8
    nodes = [_node("Constant", [], "k", value_floats=k.tolist()), _node("Add", ["x", "k"], "c")]
    path = _save(tmp_path, nodes + _GAP, opset=13)
    x = _w(1, 3, 8, 8)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = get_backend("numpy").run(kryptondb.load_model(path).graph, {"x": x})
    np.testing.assert_allclose(next(iter(got.values())).reshape(want.shape), want, atol=1e-6)


def test_missing_onnx_file_is_a_file_error(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(FileError, match="nowhere.onnx"):
        import_onnx(missing)
    with pytest.raises(FileError, match="nowhere.onnx"):
        kryptondb.load_model(str(missing))


# -- checkpoints -------------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_checkpoint_is_refused_before_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_for_another_architecture_names_a_missing_key():
    path = ZOO["mobilenet_v2"].checkpoint_path()
    if path is None:
        pytest.skip("the MobileNetV2 weights package is not installed")
    with pytest.raises(CheckpointError, match="resnet18 lacks 'conv1.weight'"):
        architectures.resnet18(state=load_checkpoint(path))


# -- images ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet():
    return kryptondb.load_model("mobilenet_v2")


def test_missing_image_names_the_path(tmp_path, mobilenet):
    missing = str(tmp_path / "no_such_cat.png")
    with pytest.raises(ImageError, match="no_such_cat.png"):
        kryptondb.load_image(missing)
    with pytest.raises(ImageError, match="no_such_cat.png"):
        mobilenet.predict(missing)


def test_text_file_named_png_is_not_an_image(tmp_path, mobilenet):
    path = tmp_path / "x.png"
    path.write_text("definitely not a PNG\n")
    with pytest.raises(ImageError, match="x.png.*not a readable image"):
        kryptondb.load_image(path)
    with pytest.raises(ImageError, match="x.png"):
        mobilenet.predict(str(path))


def test_directory_is_not_an_image(tmp_path, mobilenet):
    with pytest.raises(ImageError, match="directory"):
        kryptondb.load_image(tmp_path)
    with pytest.raises(ImageError, match="directory"):
        mobilenet.predict(str(tmp_path))


# -- shapes and backends -----------------------------------------------------------------------


def test_wrong_input_shape_is_a_shape_error(mobilenet):
    with pytest.raises(ShapeError, match="N x 3 x 224 x 224.*got 1 x 3 x 100 x 100"):
        mobilenet.predict(np.zeros((3, 100, 100), np.float32))


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_backend_checks_feed_shape(backend, mobilenet):
    g = mobilenet.graph
    with pytest.raises(ShapeError, match="must be N x 3 x 224 x 224"):
        get_backend(backend).run(g, {g.inputs[0]: np.zeros((1, 224, 224, 3), np.float32)})


def test_backend_reports_an_unfed_input(mobilenet):
    with pytest.raises(ShapeError, match="no value fed"):
        get_backend("numpy").run(mobilenet.graph, {})


def test_onnxruntime_refusing_a_graph_is_a_backend_error():
    """A graph onnxruntime will not load (here an LRN of size 0, which the importer refuses, built
    directly) is a BackendError naming it, not onnxruntime's own exception."""
    from kryptondb.graph.ir import Graph, Op, input_node, make_node

    g = Graph.build("odd", [input_node("x", (3, 4, 4)), make_node("lrn", Op.LRN, ["x"], size=0,
                    alpha=1e-4, beta=0.75, bias=1.0)], "lrn", {})
    with pytest.raises(BackendError, match="onnxruntime could not load graph 'odd'"):
        get_backend("onnxruntime").run(g, {"x": np.zeros((1, 3, 4, 4), np.float32)})


def test_unknown_backend_lists_known_ones(mobilenet):
    with pytest.raises(BackendError, match="tensorrt.*known: cupy, numpy, onnxruntime"):
        get_backend("tensorrt")
    with pytest.raises(BackendError, match="known: cupy, numpy, onnxruntime"):
        mobilenet.predict(np.zeros((1, 3, 224, 224), np.float32), backend="tpu")


# -- the Python API: wrong types and values are KryptonErrors that say what was expected -------


@pytest.mark.parametrize("call, says", [
    (lambda m: m.predict(np.zeros((0, 3, 224, 224), np.float32)), "N >= 1"),
    (lambda m: m.predict([]), "no images"),
    (lambda m: m.predict(None), "got NoneType"),
    (lambda m: m.predict(7), "got int"),
    (lambda m: m.predict([np.zeros((3, 224, 224)), np.zeros((3, 99, 99))]), "99 at item 1"),
    (lambda m: m.predict([np.zeros((3, 224, 224)), 3.5]), "item 1 is a float"),
    (lambda m: m.predict(np.zeros((1, 3, 224, 224), np.complex64)), "real numbers"),
    (lambda m: m.predict(np.zeros((1, 3, 224, 224), object)), "real numbers"),
    (lambda m: m.predict(np.full((2, 3, 224, 224), np.nan, np.float32)), "input 0 holds NaN"),
    (lambda m: m.predict(np.zeros((1, 3, 224, 224), np.float32), batch_size=0), "batch_size"),
    (lambda m: m.predict(np.zeros((1, 3, 224, 224), np.float32), batch_size=2.5), "batch_size"),
    (lambda m: m.top(np.zeros((1, 3, 224, 224), np.float32), k=0), "k must be"),
    (lambda m: m.top(np.zeros((1, 3, 224, 224), np.float32), k=-1), "k must be"),
    (lambda m: m.top(np.zeros((1, 3, 224, 224), np.float32), k=1001), "1 to 1000"),
    (lambda m: m.predict(_image("RGB", (0, 0))), "0x0"),
    (lambda m: kryptondb.load_model(None), "expected a path, got NoneType"),
    (lambda m: kryptondb.load_model("resnet18", seed=-1), "seed"),
    (lambda m: kryptondb.load_model("resnet18", seed="1"), "seed"),
    (lambda m: kryptondb.load_image(None), "expected a path"),
    (lambda m: kryptondb.load_image(3), "expected a path, got int"),
    (lambda m: kryptondb.Preprocess(resize=0), "resize must be a positive integer"),
    (lambda m: kryptondb.Preprocess(std=(1, 0, 1)), "std must be"),
    (lambda m: kryptondb.connect(5), "expected a path, got int"),
    (lambda m: kryptondb.connect(""), "path is empty"),
    (lambda m: kryptondb.connect().execute(None), "a query is a str, got NoneType"),
    (lambda m: kryptondb.connect().execute(b"SHOW MODELS"), "a query is a str, got bytes"),
    (lambda m: kryptondb.connect().execute(["SHOW MODELS"]), "got list"),
    (lambda m: kryptondb.explain(5), "a query is a str, got int"),
], ids=lambda v: "" if callable(v) else v)
def test_api_misuse_is_a_krypton_error(mobilenet, call, says):
    with pytest.raises(KryptonError, match=re.escape(says)):
        call(mobilenet)


def _image(mode, size):
    from PIL import Image

    return Image.new(mode, size)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "F", "1", "CMYK"])
def test_a_pil_image_of_any_mode_is_converted(mobilenet, mode):
    from PIL import Image

    img = Image.open(kryptondb.bundled_image()).convert(mode)
    assert mobilenet.predict(img).shape == (1, 1000)


def test_the_crop_only_resize_matches_the_whole_resize(monkeypatch):
    """Past WHOLE_RESIZE_PIXELS only the centre crop's source region is resized (a 1 x 60000
    image resized whole would be 256 x 15 M pixels): the same pixels, up to one grey level."""
    from PIL import Image

    from kryptondb.media import images

    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (37, 900, 3), np.uint8))
    whole = images.Preprocess()(img)
    monkeypatch.setattr(images, "WHOLE_RESIZE_PIXELS", 0)
    crop = images.Preprocess()(img)
    assert np.abs(crop - whole).max() <= 1.01 / 255 / min(images.IMAGENET_STD)
    assert kryptondb.Preprocess()(Image.new("RGB", (1, 60000), (9, 99, 199))).shape == \
        (3, 224, 224)


def test_integer_and_bool_arrays_are_numbers(mobilenet):
    x = np.zeros((1, 3, 224, 224))
    for dtype in (np.uint8, np.int64, bool, np.float64):
        assert mobilenet.predict(x.astype(dtype)).shape == (1, 1000)


# -- option ranges: each checked at plan time, the caret under the option --------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A connection with a tiny 10-class model (16x16 input), an image and a video."""
    from corpus_worker import make_world

    world = make_world(tmp_path_factory.mktemp("tiny"))
    con = kryptondb.connect()
    con.execute(f"CREATE MODEL tiny FROM '{world.onnx}'; LOAD IMAGE '{world.img}' AS cat; "
                f"LOAD VIDEO '{world.vid}' AS clip")
    return con


OCC = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny "
REC = "RECOGNIZE OBJECTS IN VIDEO clip USING MODEL tiny "
TUNE = "TUNE MODEL tiny "
STRIDE_RANGE = "STRIDE must be a positive integer, at most 4 (PATCH 4: a larger stride leaves " \
               "pixels that no patch covers)"
FILL_RANGE = "FILL must be a pixel value in [0, 1] (before normalisation)"
PATCH_RANGE = "PATCH must be a positive integer, at most 16 (the side of tiny's 16x16 input)"
OUT_OF_RANGE = [
    (OCC + "FILL 1.5", "FILL 1.5", f"{FILL_RANGE}, got 1.5"),
    (OCC + "FILL 400 PATCH 4", "FILL 400", f"{FILL_RANGE}, got 400"),
    (OCC + "PATCH 4 STRIDE 8", "STRIDE 8", f"STRIDE 8 is out of range: {STRIDE_RANGE}"),
    (OCC + "STRIDE 9223372036854775807 PATCH 4", "STRIDE 9223372036854775807",
     f"STRIDE 9223372036854775807 is out of range: {STRIDE_RANGE}"),
    (OCC + "PATCH 0", "PATCH 0", f"PATCH 0 is out of range: {PATCH_RANGE}"),
    (OCC + "PATCH 17", "PATCH 17", f"PATCH 17 is out of range: {PATCH_RANGE}"),
    (OCC + "STRIDE 0", "STRIDE 0", "STRIDE must be a positive integer, at most 16"),
    (OCC + "BATCH 0", "BATCH 0", "BATCH 0 is out of range: BATCH must be a positive integer, at "
     "most 4096"),
    (OCC + "BATCH 4097", "BATCH 4097", "BATCH must be a positive integer, at most 4096"),
    (OCC + "MEMORY 0 MB", "MEMORY 0 MB", "MEMORY 0 MB is out of range: MEMORY must be a positive "
     "integer, at most 1048576 MB (1 TiB)"),
    (OCC + "MEMORY 1048577 MB", "MEMORY 1048577 MB", "MEMORY 1048577 MB is out of range"),
    (OCC + "FOR CLASS 10", "FOR CLASS 10", "class 10 is out of range: tiny has 10 classes"),
    (OCC + "FILL purple", "FILL purple", "unknown FILL 'PURPLE'"),
    ("PREDICT IMAGE cat USING MODEL tiny TOP 11", "TOP 11",
     "TOP 11 is out of range: TOP must be a positive integer, at most 10 (tiny has 10 classes)"),
    ("PREDICT IMAGE cat USING MODEL tiny TOP 0", "TOP 0", "TOP 0 is out of range"),
    (REC + "TOP 9223372036854775807", "TOP 9223372036854775807", "at most 10"),
    (REC + "EVERY 0", "EVERY 0", "EVERY 0 is out of range: EVERY must be a positive integer"),
    (REC + "FRAMES 3 TO 1", "FRAMES 3 TO 1", "FRAMES 3 TO 1: the range is empty"),
    (REC + "BOXES 0", "BOXES 0", "BOXES must be a positive integer, at most 64 boxes per frame"),
    (REC + "BOXES 65", "BOXES 65", "BOXES 65 is out of range"),
    (REC + "KEYFRAME EVERY 0", "KEYFRAME EVERY 0", "KEYFRAME EVERY must be a positive integer"),
    (REC + "THRESHOLD 1.5", "THRESHOLD 1.5", "THRESHOLD is a pixel difference in [0, 1]"),
    (REC + "KEYFRAME AREA 0", "KEYFRAME AREA 0", "KEYFRAME AREA must be a share of the frame"),
    (REC + "NAIVE WITH AGREEMENT", "WITH AGREEMENT", "NAIVE runs full inference per frame"),
    (REC + "NAIVE BOXES 2 THRESHOLD 0", "THRESHOLD 0", "need the incremental plan"),
    (REC + "EXACT THRESHOLD 0.2", "THRESHOLD 0.2", "EXACT and THRESHOLD 0.2 exclude each other"),
    (TUNE + "PATCH 4 STRIDE 5 ON IMAGES cat", "STRIDE 5", f"STRIDE 5 is out of range: "
     f"{STRIDE_RANGE}"),
    (TUNE + "PATCH 40 ON IMAGES cat", "PATCH 40", f"PATCH 40 is out of range: {PATCH_RANGE}"),
    (TUNE + "FILL 2 ON IMAGES cat", "FILL 2", f"{FILL_RANGE}, got 2"),
    (TUNE + "FILL purple ON IMAGES cat", "FILL purple", "unknown FILL 'PURPLE'"),
]


@pytest.mark.parametrize("query, option, message", OUT_OF_RANGE,
                         ids=[o for _, o, _ in OUT_OF_RANGE])
def test_an_option_out_of_range_is_a_plan_error_under_the_option(tiny, query, option, message):
    """FILL outside [0, 1] and STRIDE > PATCH used to run silently, BATCH, MEMORY and TOP had no
    upper bound (STRIDE 2^63-1 was an OverflowError), and the caret was under the statement."""
    for prefix in ("", "EXPLAIN PLAN FOR "):
        with pytest.raises(PlanError) as info:
            tiny.execute(prefix + query)
        assert message in info.value.message
        where = (info.value.column, info.value.length)
        assert where == (len(prefix) + query.index(option) + 1, len(option))


def test_the_default_stride_is_at_most_the_patch(tiny):
    """PATCH 2 alone used to scan at the default STRIDE 4, leaving half the pixels unoccluded."""
    assert tiny.execute(OCC + "PATCH 2").to_numpy().shape == (8, 8)
    assert tiny.execute(OCC + "PATCH 8").to_numpy().shape == (3, 3)  # stride 4 below PATCH 8


@pytest.mark.parametrize("query", [
    OCC + "PATCH 4 STRIDE 4 FILL 0 BATCH 4096 MEMORY 1048576 MB",
    OCC + "PATCH 16 STRIDE 16 FILL 1",
    REC + "TOP 10 FRAMES 0 TO 9223372036854775807 EVERY 9223372036854775807 BOXES 64",
    REC + "KEYFRAME EVERY 9223372036854775807",
    REC + "EXACT THRESHOLD 0",
    "PREDICT IMAGE cat USING MODEL tiny TOP 10",
])
def test_the_bounds_themselves_run(tiny, query):
    tiny.execute(query)
