"""OBE heatmaps equal a hand-written loop of single full inferences, on both backends, for the
naive plan (NAIVE) and the incremental one (INCREMENTAL)."""

import numpy as np
import pytest

import kryptondb
from kryptondb.runtime.backends import get_backend
from kryptondb.media.images import Preprocess
from kryptondb.graph.builder import Builder
from kryptondb.plan.ops import OCCLUSION_SCANS
from kryptondb.runtime.onnx_export import to_onnx


def _tiny_graph(seed: int = 3):
    """A small seeded CNN with the shapes that matter: strided conv, residual add, pools."""
    b = Builder("tiny", (3, 32, 32), seed=seed)
    x = b.conv_bn("input", "c1", "b1", 8, 3, 2, 1)
    y = b.conv_bn(x, "c2", "b2", 8, 3, 1, 1, act=None)
    x = b.act(b.add(x, y, "res"), "relu", "res.relu")
    x = b.pool(x, "max", 3, 2, 1, name="pool")
    x = b.conv_bn(x, "c3", "b3", 16, 3, 1, 1)
    x = b.flatten(b.global_pool(x))
    return b.build(b.softmax(b.linear(x, "fc", 10)))


def tiny_connection(folder, db=None):
    """A connection with the tiny model registered as ``tiny`` and the bundled image as ``cat``."""
    path = folder / "tiny.onnx"
    path.write_bytes(to_onnx(_tiny_graph()).SerializeToString())
    c = kryptondb.connect(db)
    c.execute(f"CREATE MODEL tiny FROM '{path}'")
    c.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS cat")
    return c


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    return tiny_connection(tmp_path_factory.mktemp("m"))


def _hand_loop(model, x, cls, patch, stride, fill_pixel, backend):
    """One full inference per position, nothing shared: the definition of the heatmap."""
    pre = model.preprocess
    fill = (np.float32(fill_pixel) - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std,
                                                                                     np.float32)
    _, h, w = x.shape
    rows, cols = (h - patch) // stride + 1, (w - patch) // stride + 1
    out = np.zeros((rows, cols), np.float32)
    for i in range(rows):
        for j in range(cols):
            z = x.copy()
            z[:, i * stride:i * stride + patch, j * stride:j * stride + patch] = fill[:, None, None]
            out[i, j] = model.predict(z[None], backend=backend)[0, cls]
    return out


@pytest.mark.parametrize("mode", ["NAIVE", "INCREMENTAL"])
@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
@pytest.mark.parametrize("patch, stride", [(8, 4), (5, 3), (32, 1)])
def test_heatmap_equals_hand_loop(con, backend, patch, stride, mode):
    r = con.execute(f"EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH {patch} "
                    f"STRIDE {stride} ON {backend} BATCH 7 {mode}")
    scan = next(n for n in r.plan.rewritten.walk() if n.op == "OcclusionScan")
    assert scan.arg("mode") == ("naive" if mode == "NAIVE" else "incremental")
    model = kryptondb.load_model(con.db.models()["tiny"].source)
    x = model.inputs(kryptondb.bundled_image())[0]
    cls = r.heatmap.class_id
    expected = _hand_loop(model, x, cls, patch, stride, 0.5, backend)
    assert r.heatmap.probability.shape == expected.shape
    np.testing.assert_allclose(r.heatmap.probability, expected, atol=1e-5, rtol=0)
    base = model.predict(x[None], backend=backend)[0]
    assert cls == int(base.argmax())
    np.testing.assert_allclose(r.to_numpy(), base[cls] - expected, atol=1e-5, rtol=0)


def test_heatmap_table_layout(con):
    r = con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 4 INTO heat")
    t = con.execute("SELECT y, x, probability, drop FROM heat ORDER BY y, x").to_arrow()
    assert t.num_rows == 7 * 7
    assert t.column("y").to_pylist()[:8] == [0] * 7 + [4]
    np.testing.assert_allclose(np.asarray(t.column("drop")), r.to_numpy().ravel(), atol=1e-7)


def test_for_class_and_fills(con):
    a = con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny FOR CLASS 3 PATCH 8")
    assert a.heatmap.class_id == 3
    black = con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 FILL BLACK")
    zero = con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 FILL 0")
    np.testing.assert_array_equal(black.heatmap.probability, zero.heatmap.probability)
    gray = con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8")
    assert not np.allclose(black.heatmap.probability, gray.heatmap.probability)
    for fill in ("MEAN", "BLUR"):
        r = con.execute(f"EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 FILL {fill}")
        assert np.isfinite(r.heatmap.probability).all()


def test_save_png_writes_a_picture(con, tmp_path):
    r = con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 4")
    out = r.save_png(tmp_path / "h.png")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_explain_analyze_reports_costs(con):
    text = con.execute("EXPLAIN PLAN ANALYZE FOR EXPLAIN OCCLUSION OF IMAGE cat USING MODEL "
                       "tiny PATCH 8 STRIDE 4 BATCH 10").message
    scan = next(line for line in text.splitlines() if "OcclusionScan(" in line)
    assert "5 batches" in scan and "49 rows" in scan and "FLOPs" in scan and "time" in scan


@pytest.mark.parametrize("fmt, marker", [("DOT", "digraph"), ("SVG", "<svg"), ("HTML", "<html")])
def test_plan_formats(con, fmt, marker):
    r = con.execute(f"EXPLAIN PLAN FORMAT {fmt} FOR EXPLAIN OCCLUSION OF IMAGE cat USING MODEL "
                    "tiny")
    assert marker in r.message and "OcclusionScan" in r.message


@pytest.mark.parametrize("query, words", [
    ("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 0", ["PATCH", "positive"]),
    ("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 33", ["PATCH 33", "32x32"]),
    ("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny FOR CLASS 10", ["class 10", "10 classes"]),
    ("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny ON tpu", ["unknown device 'tpu'"]),
    ("EXPLAIN OCCLUSION OF IMAGE 'missing.png' USING MODEL tiny", ["missing.png", "not exist"]),
    ("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny INTO models", ["catalog relation"]),
    ("EXPLAIN OCCLUSION OF IMAGE dog USING MODEL tiny", ["no image 'dog'", "cat", "^^^"]),
])
def test_plan_errors_name_the_problem(con, query, words):
    with pytest.raises(kryptondb.KryptonError) as info:
        con.execute(query)
    for w in words:
        assert w in str(info.value)


def test_fill_tensor_matches_preprocessing():
    from kryptondb.lang.ast import Fill
    from kryptondb.obe.occlusion import fill_tensor

    pre = Preprocess()
    x = np.zeros((3, 4, 4), np.float32)
    f = fill_tensor(x, Fill("gray", 0.5), pre, 2)
    np.testing.assert_allclose(f[:, 0, 0], (0.5 - np.array(pre.mean)) / np.array(pre.std),
                               rtol=1e-6)


def test_backends_agree_on_the_same_scan(con):
    a = con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 3 ON numpy")
    b = con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 3 ON cpu")
    np.testing.assert_allclose(a.heatmap.probability, b.heatmap.probability, atol=1e-5)
    assert get_backend("cpu").name == "onnxruntime"


@pytest.mark.parametrize("workers", [1, 3])
def test_concurrent_batches_give_the_loops_heatmap(con, monkeypatch, workers):
    """onnxruntime runs one chunk of each batch per core side by side; whatever the number of
    workers (3 splits BATCH 7 into chunks of 3, 3 and 1), the heatmap is the loop's."""
    from kryptondb.runtime.backends import OnnxRuntimeBackend

    single = OnnxRuntimeBackend(threads=1)
    monkeypatch.setattr(OnnxRuntimeBackend, "concurrent", lambda self: (workers, single))
    r = con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 3 "
                    "ON cpu BATCH 7 INCREMENTAL")
    scan = next(n for n in r.plan.dag.nodes if n.op in OCCLUSION_SCANS)
    assert r.profile.of(scan)["workers"] == workers
    model = kryptondb.load_model(con.db.models()["tiny"].source)
    x = model.inputs(kryptondb.bundled_image())[0]
    expected = _hand_loop(model, x, r.heatmap.class_id, 8, 3, 0.5, "onnxruntime")
    np.testing.assert_allclose(r.heatmap.probability, expected, atol=1e-5, rtol=0)
