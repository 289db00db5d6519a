"""The GPU backend on a device (CuPy, a CUDA GPU): the checks of tests/test_gpu_emulated.py with
``xp = cupy`` and the kernels compiled by NVRTC, plus queries ON GPU end to end. Marked ``gpu``:
deselected by default, skipped without CuPy or a device. Run on a GPU machine with
``bench/gpu_check.sh`` (or ``pytest -m gpu tests/test_gpu.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from kryptondb.model.model import load_model
from kryptondb.runtime.backends import NumpyBackend, get_backend
from kryptondb.runtime.gpu import gpu_missing
from test_gpu_emulated import OPS, TOLERANCE, _tiny, check_gather, one_op, range_error, scan

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(gpu_missing() is not None, reason=str(gpu_missing()))]


@pytest.fixture(scope="module")
def device():
    return get_backend("gpu")


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_equals_numpy(device, name):
    g = one_op(OPS[name])
    x = np.random.default_rng(2).standard_normal((3, *g.input_shape)).astype(np.float32)
    ours = device.run(g, {"input": x})[g.output]  # host feeds: a host result
    assert isinstance(ours, np.ndarray)
    assert range_error(ours, NumpyBackend().run(g, {"input": x})[g.output]) <= TOLERANCE
    on_device = device.run(g, {"input": device.xp.asarray(x)})[g.output]
    assert not isinstance(on_device, np.ndarray)  # device feeds: the result stays there
    assert range_error(device.host(on_device), ours) <= TOLERANCE


@pytest.mark.parametrize("pad", [0.0, -np.inf])
def test_gather_equals_ivm_gather(device, pad):
    check_gather(device, pad)


def test_tiny_full_incremental_and_boxes(device):
    g = _tiny()
    corners = np.array([(y, c) for y in range(0, 25, 8) for c in range(0, 25, 6)])
    ours = scan(g, device, 8, corners)
    assert isinstance(ours, np.ndarray)  # only the outputs come back
    assert range_error(ours, scan(g, NumpyBackend(), 8, corners)) <= TOLERANCE
    owners = np.arange(len(corners)) // 3
    ref = scan(g, NumpyBackend(), 8, corners, owners)
    assert range_error(scan(g, device, 8, corners, owners), ref) <= TOLERANCE


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "vgg16"])
def test_zoo_full_and_incremental(device, name):
    graph = load_model(name).graph
    x = np.random.default_rng(5).standard_normal((2, *graph.input_shape)).astype(np.float32)
    feeds = {graph.inputs[0]: x}
    ref = NumpyBackend().run(graph, feeds)[graph.output]
    assert range_error(device.run(graph, feeds)[graph.output], ref) <= TOLERANCE
    corners = np.array([(0, 0), (104, 56), (208, 208), (96, 100)])
    ours, ref = scan(graph, device, 16, corners), scan(graph, NumpyBackend(), 16, corners)
    assert range_error(ours, ref) <= TOLERANCE


@pytest.mark.parametrize("mode", ["NAIVE", "INCREMENTAL", "APPROXIMATE TAU 0.5"])
def test_occlusion_query_on_gpu_equals_numpy(mode):
    import kryptondb

    db = kryptondb.connect(None)
    q = (f"EXPLAIN OCCLUSION OF IMAGE '{kryptondb.bundled_image()}' USING MODEL resnet18 "
         f"PATCH 32 STRIDE 32 {{}} {mode}")
    ours, ref = db.execute(q.format("ON GPU")).heatmap, db.execute(q.format("ON NUMPY")).heatmap
    assert range_error(ours.probability, ref.probability) <= TOLERANCE


def test_predict_on_gpu_equals_numpy():
    import kryptondb

    db = kryptondb.connect(None)
    q = f"PREDICT IMAGE '{kryptondb.bundled_image()}' USING MODEL mobilenet_v2 TOP 3 {{}}"
    ours, ref = (db.execute(q.format(dev)).to_arrow() for dev in ("ON GPU", "ON NUMPY"))
    assert ours.column("class").to_pylist() == ref.column("class").to_pylist()
    assert range_error(ours.column("probability").to_pylist(),
                       ref.column("probability").to_pylist()) <= TOLERANCE
