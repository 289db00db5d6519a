"""The model zoo: numpy and onnxruntime backends agree, a hand-written ONNX export runs in plain
onnxruntime, real weights classify real photos, describe() counts what torchvision counts, and
user mistakes raise errors that say what was expected."""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import onnxruntime as ort
import pytest

import kryptondb
from kryptondb.runtime.backends import get_backend
from kryptondb.errors import ShapeError, UnknownNameError
from kryptondb.graph.ir import Op
from kryptondb.runtime.onnx_export import to_onnx
from kryptondb.model.zoo import ZOO

NAMES = ("resnet18", "resnet50", "vgg16", "inception3", "mobilenet_v2", "efficientnet_lite0")
TOLERANCE = 1e-4


def test_zoo_holds_exactly_the_tested_models():
    assert set(ZOO) == set(NAMES)


def _logits(graph) -> str:
    return [n.name for n in graph.nodes if n.op is Op.GEMM][-1]


@functools.lru_cache(maxsize=None)
def _batch(name: str) -> np.ndarray:
    shape = kryptondb.load_model(name).input_shape
    return np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _numpy_result(name: str) -> dict[str, np.ndarray]:
    """The reference: output and logits from the numpy backend, computed once per model."""
    g = kryptondb.load_model(name).graph
    return get_backend("numpy").run(g, {g.inputs[0]: _batch(name)}, (g.output, _logits(g)))


@pytest.mark.parametrize("name", NAMES)
def test_onnxruntime_backend_matches_numpy(name, measure):
    g = kryptondb.load_model(name).graph
    ours = get_backend("onnxruntime").run(g, {g.inputs[0]: _batch(name)}, (g.output, _logits(g)))
    ref = _numpy_result(name)
    errors = {what: measure(f"{name} onnxruntime-backend {what}", ours[node], ref[node])
              for what, node in (("output", g.output), ("logits", _logits(g)))}
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.parametrize("name", NAMES)
def test_exported_onnx_file_runs_in_plain_onnxruntime(name, tmp_path, measure):
    g = kryptondb.load_model(name).graph
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(to_onnx(g, (g.output, _logits(g))).SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out, logits = sess.run([g.output, _logits(g)], {g.inputs[0]: _batch(name)})
    ref = _numpy_result(name)
    errors = {"output": measure(f"{name} exported-file output", out, ref[g.output]),
              "logits": measure(f"{name} exported-file logits", logits, ref[_logits(g)])}
    assert max(errors.values()) <= TOLERANCE, errors


# -- real weights ------------------------------------------------------------------------------


def _skimage_photo(name: str) -> str:
    data = pytest.importorskip("skimage.data")
    return os.path.join(data.data_dir, name)


def _real_model(name: str):
    if ZOO[name].checkpoint_path() is None:
        pytest.skip(f"weights package {ZOO[name].pip_name} is not installed")
    return kryptondb.load_model(name)


CATS = {"Egyptian cat", "tabby", "tiger cat"}
PHOTOS = [pytest.param("chelsea.png", CATS, id="chelsea"),
          pytest.param("coffee.png", {"espresso"}, id="coffee")]


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
@pytest.mark.parametrize("photo, expected", PHOTOS)
def test_real_weights_classify_photo_on_both_backends(name, photo, expected):
    model, path = _real_model(name), _skimage_photo(photo)
    probs = {be: model.predict(path, backend=be)[0] for be in ("numpy", "onnxruntime")}
    for be, p in probs.items():
        assert model.labels[int(p.argmax())] in expected, (be, model.top(path, 3, be))
    np.testing.assert_allclose(probs["onnxruntime"], probs["numpy"], rtol=0, atol=1e-4)


# -- describe() --------------------------------------------------------------------------------


def _resnet18_macs() -> int:
    """Conv and fc multiply-adds of ResNet18 at 224x224, counted from the architecture."""
    macs = 64 * 3 * 7 * 7 * 112 * 112  # conv1, stride 2
    cin, size = 64, 56  # after the stride-2 max pool
    for stage, cout in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            size //= stride
            macs += cout * cin * 9 * size * size + cout * cout * 9 * size * size
            if cin != cout:  # 1x1 stride-2 projection shortcut
                macs += cout * cin * size * size
            cin = cout
    return macs + 512 * 1000


def test_resnet18_flops_are_twice_the_known_gmacs():
    macs = _resnet18_macs()
    assert macs == pytest.approx(1.814e9, rel=1e-3)  # the figure papers and torchvision quote
    flops = kryptondb.load_model("resnet18").describe().total_flops
    assert flops == pytest.approx(2 * macs, rel=0.01)  # the rest: pools, adds, ReLUs


def test_vgg16_params_equal_torchvision_count():
    # no BatchNorm in VGG16: nothing is folded, the count must match torchvision exactly
    assert kryptondb.load_model("vgg16").describe().total_params == 138_357_544


def _folded(torchvision_params: int, bn_channels: int) -> int:
    """BatchNorm folding: each BN of C channels loses its weight and bias (2C learnable
    parameters; running mean/var are buffers torchvision never counted) and gives the conv
    before it a bias of C. Those convs had bias=False, so the count drops by C per BN."""
    return torchvision_params - 2 * bn_channels + bn_channels


def _resnet50_bn_channels() -> int:
    total = 64  # bn1
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        total += blocks * (width + width + 4 * width)  # bn1, bn2, bn3 of each bottleneck
        total += 4 * width  # downsample.1: every stage's first block changes the channel count
    return total


def _mobilenet_v2_bn_channels() -> int:
    total, cin = 32, 32  # features.0
    for t, c, n, _ in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for _ in range(n):
            hidden = cin * t
            total += (hidden if t != 1 else 0) + hidden + c  # expand, depthwise, project
            cin = c
    return total + 1280  # the last 1x1 conv


def test_resnet50_params_equal_folded_torchvision_count():
    expected = _folded(25_557_032, _resnet50_bn_channels())
    assert expected == 25_530_472
    assert kryptondb.load_model("resnet50").describe().total_params == expected


def test_mobilenet_v2_params_equal_folded_torchvision_count():
    expected = _folded(3_504_872, _mobilenet_v2_bn_channels())
    assert expected == 3_487_816
    assert kryptondb.load_model("mobilenet_v2").describe().total_params == expected


def test_describe_rows_cover_every_node():
    model = kryptondb.load_model("resnet18")
    rows = model.describe().rows
    assert [r.layer for r in rows] == [n.name for n in model.graph.nodes]
    assert all(r.bytes == 4 * math.prod(r.shape) for r in rows)


# -- user errors -------------------------------------------------------------------------------


def test_predict_on_wrong_shape_names_the_expected_shape():
    model = kryptondb.load_model("resnet18")
    with pytest.raises(ShapeError, match=r"3 x 224 x 224.*got 2 x 3 x 200 x 200"):
        model.predict(np.zeros((2, 3, 200, 200), np.float32))


def test_misspelt_model_name_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="resnt18") as info:
        kryptondb.load_model("resnt18")
    assert "resnet18" in str(info.value)
    assert set(info.value.known) == set(NAMES)
