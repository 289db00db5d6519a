"""The GPU backend's Python code without a GPU: runtime/gpu.py with NumPy as ``xp`` and the
kernels compiled on the host by gcc (runtime/kernels.py). Its ops, full inference and
incremental occlusion scans equal the NumPy backend's within Krypton's 1e-4 (of the range).
The same checks on a device: tests/test_gpu.py (``pytest -m gpu``)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from kryptondb.errors import BackendError, DeviceMissingError
from kryptondb.graph.builder import Builder
from kryptondb.ivm.gather import NewValues, PaddedView, gather
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.model.model import load_model
from kryptondb.runtime.backends import NumpyBackend, get_backend
from kryptondb.runtime.gpu import XpBackend, gpu_missing
from test_obe_naive import _tiny_graph

TOLERANCE = 1e-4  # of the reference's range, as Krypton's

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None,
                                reason="the host build of the kernels needs gcc")


@pytest.fixture(scope="module")
def emulated() -> XpBackend:
    return XpBackend(np)


def range_error(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours - ref).max() / max(np.ptp(ref), 1e-6))


def one_op(build, shape=(6, 11, 13), seed=1):
    """A graph of the ops ``build(b, "input")`` adds to a fresh Builder."""
    b = Builder("op", shape, seed=seed)
    return b.build(build(b, "input"))


OPS = {
    "conv3x3": lambda b, x: b.conv(x, "c", 8, 3, 1, 1, bias=True),
    "conv_strided_dilated": lambda b, x: b.conv(x, "c", 5, (3, 2), 2, (2, 1, 0, 3), dilation=2,
                                                bias=True),
    "conv_grouped": lambda b, x: b.conv(x, "c", 4, 3, 1, 1, groups=2, bias=True),
    "conv1x1": lambda b, x: b.conv(x, "c", 7, 1, bias=True),
    "conv_relu": lambda b, x: b.act(b.conv(x, "c", 8, 3, 2, 1, bias=True), "relu"),
    "conv_relu6": lambda b, x: b.act(b.conv(x, "c", 8, 3, 1, 1, bias=True), "relu6"),
    "depthwise": lambda b, x: b.conv(x, "c", 6, 3, 2, 1, groups=6, bias=True),
    "depthwise_relu6": lambda b, x: b.act(b.conv(x, "c", 6, 5, 1, 2, groups=6, bias=True),
                                          "relu6"),
    "maxpool": lambda b, x: b.pool(x, "max", 3, 2, 1),
    "maxpool_ceil": lambda b, x: b.pool(x, "max", 2, 2, ceil=True),
    "avgpool_include_pad": lambda b, x: b.pool(x, "avg", 3, 2, 1, count_include_pad=True),
    "avgpool_exclude_pad_ceil": lambda b, x: b.pool(x, "avg", 3, 2, 1, ceil=True,
                                                     count_include_pad=False),
    "add_concat": lambda b, x: b.concat([b.add(x, b.act(x, "relu")), x]),
    "pad": lambda b, x: b.pad(x, (1, 2, 0, 1), 0.5),
    "head": lambda b, x: b.softmax(b.linear(b.flatten(b.global_pool(x)), "fc", 5)),
    "lrn_on_host": lambda b, x: b.lrn(x, 3),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_equals_numpy(emulated, name):
    g = one_op(OPS[name])
    x = np.random.default_rng(2).standard_normal((3, *g.input_shape)).astype(np.float32)
    ours = emulated.run(g, {"input": x})[g.output]
    ref = NumpyBackend().run(g, {"input": x})[g.output]
    assert isinstance(ours, np.ndarray) and ours.shape == ref.shape
    assert range_error(ours, ref) <= TOLERANCE


@st.composite
def windowed_graphs(draw):
    """A convolution (dense, grouped or depthwise; maybe with a fused activation) or a pool on
    drawn channels, sizes, kernels, strides, pads and dilations."""
    c, h, w = draw(st.integers(1, 4)) * 2, draw(st.integers(3, 12)), draw(st.integers(3, 12))
    k, s = (draw(st.integers(1, 3)), draw(st.integers(1, 3))), draw(st.integers(1, 3))
    pad = tuple(draw(st.integers(0, min(k) - 1)) for _ in range(4))
    kind = draw(st.sampled_from(["conv", "grouped", "depthwise", "max", "avg", "avg_excl"]))
    d = draw(st.integers(1, 2)) if kind in ("conv", "grouped", "depthwise") else 1
    assume(h + pad[0] + pad[2] >= d * (k[0] - 1) + 1 and w + pad[1] + pad[3] >= d * (k[1] - 1) + 1)
    act = draw(st.sampled_from([None, "relu", "relu6"]))
    ceil = draw(st.booleans())

    def build(b, x):
        if kind in ("max", "avg", "avg_excl"):
            return b.pool(x, kind[:3], k, s, pad, ceil=ceil, count_include_pad=kind == "avg")
        groups = {"conv": 1, "grouped": 2, "depthwise": c}[kind]
        y = b.conv(x, "c", c if kind == "depthwise" else 3 * groups, k, s, pad, groups=groups,
                   dilation=d, bias=True)
        return y if act is None else b.act(y, act)

    return one_op(build, (c, h, w), seed=draw(st.integers(0, 9)))


@settings(max_examples=40, deadline=None)
@given(g=windowed_graphs(), n=st.integers(1, 3))
def test_windowed_ops_equal_numpy(g, n):
    x = np.random.default_rng(n).standard_normal((n, *g.input_shape)).astype(np.float32)
    ours = XpBackend(np).run(g, {"input": x})[g.output]
    assert range_error(ours, NumpyBackend().run(g, {"input": x})[g.output]) <= TOLERANCE


def check_gather(backend, pad: float) -> None:
    """The backend's one-launch gather equals ivm.gather, with and without new values and
    owners (shared with tests/test_gpu.py, which runs it on a device)."""
    rng = np.random.default_rng(3)
    view = rng.standard_normal((4, 9, 10)).astype(np.float32)
    ys, xs = np.array([-2, 0, 5, 7]), np.array([3, -1, 6, 0])
    new = NewValues(rng.standard_normal((4, 4, 3, 2)).astype(np.float32),
                    ys + 1, xs + 2, np.array([0, 1, 0, 1]))
    pv = PaddedView(view, (2, 1, 3, 3), pad)
    for values in (None, new, NewValues(new.values, new.ys, new.xs)):
        ours = backend.host(backend.gather(pv, ys, xs, 5, 5, values))
        np.testing.assert_array_equal(ours, gather(pv, ys, xs, 5, 5, values))


@pytest.mark.parametrize("pad", [0.0, -np.inf])
def test_gather_equals_ivm_gather(emulated, pad):
    check_gather(emulated, pad)


def _tiny():
    """test_obe_naive's small seeded CNN (strided conv, residual add, pools)."""
    return _tiny_graph(3)


@pytest.fixture(scope="module")
def mobilenet():
    return load_model("mobilenet_v2").graph


def scan(graph, backend, patch, corners, owners=None):
    """An incremental occlusion scan's outputs (a gray patch at each corner)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(graph.input_shape).astype(np.float32)
    views = base_views(graph, x, backend)
    plan = IncrementalPlan(graph, corners, patch, views)
    patches = np.full((len(corners), graph.input_shape[0], patch, patch), 0.5, np.float32)
    return plan.run(np.arange(len(corners)), patches, backend, {}, owners)


def test_tiny_full_and_incremental(emulated):
    g = _tiny()
    x = np.random.default_rng(4).standard_normal((2, *g.input_shape)).astype(np.float32)
    full = emulated.run(g, {"input": x})[g.output]
    assert range_error(full, NumpyBackend().run(g, {"input": x})[g.output]) <= TOLERANCE
    corners = np.array([(y, c) for y in range(0, 25, 8) for c in range(0, 25, 6)])
    ours, ref = scan(g, emulated, 8, corners), scan(g, NumpyBackend(), 8, corners)
    assert isinstance(ours, np.ndarray) and range_error(ours, ref) <= TOLERANCE


def test_tiny_several_boxes_of_one_input(emulated):
    """Video: items with one owner are boxes of one frame (grouped gather, one row each)."""
    g = _tiny()
    corners, owners = np.array([(0, 0), (20, 16), (4, 24), (12, 12)]), np.array([0, 0, 1, 1])
    ours = scan(g, emulated, 6, corners, owners)
    ref = scan(g, NumpyBackend(), 6, corners, owners)
    assert ours.shape == ref.shape == (2, 10) and range_error(ours, ref) <= TOLERANCE


def test_mobilenet_v2_full_and_incremental(emulated, mobilenet):
    """Depthwise convolutions, ReLU6 fused into their bias kernels, a coarse scan."""
    x = np.random.default_rng(5).standard_normal((1, *mobilenet.input_shape)).astype(np.float32)
    full = emulated.run(mobilenet, {mobilenet.inputs[0]: x})[mobilenet.output]
    ref = NumpyBackend().run(mobilenet, {mobilenet.inputs[0]: x})[mobilenet.output]
    assert range_error(full, ref) <= TOLERANCE
    corners = np.array([(0, 0), (104, 56), (208, 208)])
    ours, ref = scan(mobilenet, emulated, 16, corners), scan(mobilenet, NumpyBackend(), 16, corners)
    assert range_error(ours, ref) <= TOLERANCE


def test_on_gpu_without_a_device_is_a_plan_error(tmp_path):
    """Here (no CuPy or no device): ON GPU fails when planned, naming what is missing, with
    the caret under ON GPU; get_backend('gpu') says the same."""
    if gpu_missing() is None:
        pytest.skip("a GPU is present: ON GPU runs (tests/test_gpu.py)")
    import kryptondb

    db = kryptondb.connect(None)
    q = (f"EXPLAIN PLAN FOR EXPLAIN OCCLUSION OF IMAGE '{kryptondb.bundled_image()}' "
         "USING MODEL resnet18\n  ON GPU")
    with pytest.raises(DeviceMissingError) as err:
        db.execute(q)
    assert isinstance(err.value, BackendError)
    assert ("kryptondb[gpu]" in str(err.value)) or ("CUDA device" in str(err.value))
    assert err.value.line == 2 and err.value.column == 3 and err.value.length == len("ON GPU")
    with pytest.raises(BackendError, match=r"GPU backend \(ON GPU\) cannot run here"):
        get_backend("gpu")


def test_planner_keeps_naive_on_gpu_where_incremental_would_be_slower(monkeypatch):
    """EfficientNet-Lite0 at P16 S4 (theoretical 1.58): incremental on CPU, but below the GPU's
    1 / 0.6 (Krypton's GPU plans reached 0.6 of theoretical), so NAIVE ON GPU."""
    import kryptondb
    import kryptondb.plan.binder as binder

    monkeypatch.setattr(binder, "gpu_missing", lambda: None)  # plan only: nothing runs
    db, img = kryptondb.connect(None), kryptondb.bundled_image()
    modes = {}
    for dev in ("CPU", "GPU"):
        r = db.execute(f"EXPLAIN PLAN FOR EXPLAIN OCCLUSION OF IMAGE '{img}' USING MODEL "
                       f"efficientnet_lite0 PATCH 16 STRIDE 4 ON {dev}")
        scan = next(n for n in r.plan.rewritten.walk() if n.op == "OcclusionScan")
        modes[dev] = scan.arg("mode"), scan.arg("why")
    assert modes["CPU"][0] == "incremental"
    assert modes["GPU"] == ("naive", "theoretical speedup 1.58 below 1.67")


@pytest.fixture
def on_emulated_gpu(monkeypatch, tmp_path):
    """A connection (the tiny model as ``tiny``, the bundled image as ``cat``) whose ON GPU runs
    the emulated backend: queries take the whole path a GPU query takes."""
    import kryptondb.plan.binder as binder
    from kryptondb.runtime import backends
    from test_obe_naive import tiny_connection

    monkeypatch.setattr(binder, "gpu_missing", lambda: None)
    monkeypatch.setitem(backends._INSTANCES, "cupy", XpBackend(np))
    return tiny_connection(tmp_path), backends._INSTANCES["cupy"]


@pytest.mark.parametrize("mode", ["NAIVE", "INCREMENTAL", "APPROXIMATE TAU 0.5"])
def test_occlusion_query_on_emulated_gpu_equals_numpy(on_emulated_gpu, monkeypatch, mode):
    db, backend = on_emulated_gpu
    gathers = []
    monkeypatch.setattr(backend, "gather", lambda *a: gathers.append(1) or XpBackend.gather(
        backend, *a))
    q = f"EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 4 {{}} {mode}"
    ours, ref = db.execute(q.format("ON GPU")).heatmap, db.execute(q.format("ON NUMPY")).heatmap
    assert range_error(ours.probability, ref.probability) <= TOLERANCE
    assert bool(gathers) == (mode != "NAIVE")  # incremental plans gather on the "device"


def test_gpu_bench_without_a_gpu_exits_2():
    import subprocess
    import sys
    from pathlib import Path

    if gpu_missing() is None:
        pytest.skip("a GPU is present: bench/gpu.py runs")
    script = Path(__file__).resolve().parent.parent / "bench" / "gpu.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "needs a CUDA GPU" in done.stderr


def test_captum_api_keeps_naive_on_gpu_where_incremental_would_be_slower():
    from kryptondb.attr.planning import _why_naive
    from kryptondb.ivm.cost import theoretical

    graph = load_model("efficientnet_lite0").graph
    cost = theoretical(graph, (16, 16))
    assert _why_naive(graph, cost, (16, 16), "onnxruntime", 2809) is None
    assert _why_naive(graph, cost, (16, 16), "gpu", 2809) == "theoretical speedup 1.58 below 1.67"


def test_upsampling_model_incremental(emulated):
    """Resize and ConvTranspose steps (NumPy code in ivm: on a device their buffers visit the
    host) and the host-run reference ops inside a scan."""
    b = Builder("up", (3, 24, 24), seed=6)
    x = b.act(b.conv(b.pool("input", "max", 2, 2), "c1", 6, 3, 1, 1, bias=True), "relu")
    x = b.resize(x, scale=2.0, mode="linear", coord="half_pixel")
    x = b.conv_transpose(x, "t1", 4, 3, 2, 1, output_padding=1, bias=True)
    g = b.build(b.linear(b.flatten(b.global_pool(x)), "fc", 5))
    corners = np.array([(0, 0), (9, 13), (18, 18)])
    ours, ref = scan(g, emulated, 6, corners), scan(g, NumpyBackend(), 6, corners)
    assert range_error(ours, ref) <= TOLERANCE
