"""The open occlusion statement end to end (issue 13): tensors (``?`` values, ``.npy`` files),
rectangular windows, per-axis strides, GRID COVER, SCORE LOGIT, several classes, BASELINE,
LAYOUT PIXELS and several inputs give what a hand-written loop of full inferences on
onnxruntime gives (the definition, Captum's when the grid covers), on the naive and the
incremental plans alike."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest

import kryptondb
from kryptondb.graph.builder import Builder
from kryptondb.runtime.onnx_export import to_onnx

OCC = "EXPLAIN OCCLUSION OF"


def _net(name: str, shape, softmax: bool, seed: int):
    """A small seeded CNN: a strided conv, a residual add, a pool, a linear head of 10."""
    b = Builder(name, shape, seed=seed)
    x = b.conv_bn("input", "c1", "b1", 8, 3, 2, 1)
    y = b.conv_bn(x, "c2", "b2", 8, 3, 1, 1, act=None)
    x = b.act(b.add(x, y, "res"), "relu", "res.relu")
    x = b.pool(x, "max", 3, 2, 1, name="pool")
    x = b.flatten(b.global_pool(b.conv_bn(x, "c3", "b3", 16, 3, 1, 1)))
    out = b.linear(x, "fc", 10)
    return b.build(b.softmax(out) if softmax else out)


def _shallow(seed: int):
    """One conv and a linear head: its top class follows the input (the deeper net's biases
    make one class win on any input)."""
    b = Builder("shallow", (3, 32, 32), seed=seed)
    x = b.flatten(b.global_pool(b.conv_bn("input", "c1", "b1", 8, 3, 2, 1)))
    return b.build(b.linear(x, "fc", 10))


class Oracle:
    """onnxruntime on the model file: the raw outputs of a batch."""

    def __init__(self, path):
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.feed = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.feed: x.astype(np.float32)})[0].reshape(len(x), -1)


def definition(oracle, x, classes, window, strides, cover, baseline, logit) -> np.ndarray:
    """(N, K, rows, cols): one full inference per window position, nothing shared. The last
    windows of a covering grid reach past the border and are cut off there (Captum's)."""
    n, _, h, w = x.shape
    (wh, ww), (sy, sx) = window, strides
    steps = (lambda size, k, s: math.ceil((size - k) / s) + 1) if cover else \
        (lambda size, k, s: (size - k) // s + 1)
    rows, cols = steps(h, wh, sy), steps(w, ww, sx)
    fill = np.broadcast_to(np.asarray(baseline, np.float32), x.shape)
    out = np.zeros((n, len(classes), rows, cols), np.float32)
    for k in range(n):
        batch = np.repeat(x[k:k + 1], rows * cols, axis=0)
        for i in range(rows):
            for j in range(cols):
                box = (slice(None), slice(i * sy, i * sy + wh), slice(j * sx, j * sx + ww))
                batch[(i * cols + j, *box)] = fill[k][box]
        y = oracle(batch)
        scores = y if logit else np.exp(y) / np.exp(y).sum(axis=1, keepdims=True)
        out[k] = scores[:, list(classes)].T.reshape(len(classes), rows, cols)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A connection with ``logits`` (no softmax: SCORE LOGIT is the raw output), ``gray``
    (1 channel, 24 x 40) and ``shallow`` registered, their oracles, and two images."""
    folder = tmp_path_factory.mktemp("occ")
    con = kryptondb.connect()
    oracles = {}
    nets = {"logits": _net("logits", (3, 32, 32), False, 21),
            "gray": _net("gray", (1, 24, 40), False, 22), "shallow": _shallow(21)}
    for name, graph in nets.items():
        path = folder / f"{name}.onnx"
        path.write_bytes(to_onnx(graph).SerializeToString())
        con.execute(f"CREATE MODEL {name} FROM '{path}'")
        oracles[name] = Oracle(path)
    images = folder / "images"
    images.mkdir()
    shutil.copy(kryptondb.bundled_image(), images / "cat.png")
    from PIL import Image

    rng = np.random.default_rng(5)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(images / "noise.png")
    con.execute(f"LOAD IMAGE '{images / 'cat.png'}' AS cat")
    return con, oracles, images


def _x(shape, n=2, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


FORMS = [  # (options, window, strides, cover, classes, logit, baseline)
    ("PATCH 8 12 STRIDE 4 6 FOR CLASSES (3, 1)", (8, 12), (4, 6), False, (3, 1), False, None),
    ("PATCH 7 STRIDE 3 GRID COVER FOR CLASS 2", (7, 7), (3, 3), True, (2,), False, None),
    ("PATCH 6 10 STRIDE 5 3 GRID COVER SCORE LOGIT BASELINE -0.75 FOR CLASSES (2, 7, 0)",
     (6, 10), (5, 3), True, (2, 7, 0), True, -0.75),
    ("PATCH 9 STRIDE 4 FOR ALL CLASSES SCORE LOGIT BASELINE 1.5", (9, 9), (4, 4), False,
     tuple(range(10)), True, 1.5),
]


@pytest.mark.parametrize("form", FORMS, ids=[f[0] for f in FORMS])
def test_new_forms_equal_the_definition_on_both_plans(world, form):
    con, oracles, _ = world
    options, window, strides, cover, classes, logit, baseline = form
    x = _x((3, 32, 32))
    fill = 0.0 if baseline is None else baseline
    if baseline is None:  # FILL 0: the pixel 0 normalised like an ImageNet image
        options += " FILL 0"
        pre = kryptondb.load_model(con.db.models()["logits"].source).preprocess
        fill = ((0 - np.asarray(pre.mean)) / np.asarray(pre.std)).reshape(3, 1, 1)
    want = definition(oracles["logits"], x, classes, window, strides, cover, fill, logit)
    maps = {}
    for mode in ("NAIVE", "INCREMENTAL"):
        r = con.execute(f"{OCC} ? USING MODEL logits {options} {mode}", [x])
        scan = next(n for n in r.plan.rewritten.walk() if n.op == "OcclusionScan")
        assert scan.arg("mode") == mode.lower()
        got = np.stack([m.probability for m in r.heatmaps]).reshape(want.shape)
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
        maps[mode] = got
    np.testing.assert_allclose(maps["NAIVE"], maps["INCREMENTAL"], atol=1e-5, rtol=0)


def test_table_of_several_inputs_and_classes(world):
    con, oracles, _ = world
    x = _x((3, 32, 32), n=3, seed=1)
    r = con.execute(f"{OCC} ? USING MODEL logits PATCH 8 STRIDE 8 FOR CLASSES (4, 2) "
                    "SCORE LOGIT INTO several", [x])
    assert r.kind == "table" and len(r.heatmaps) == 6
    t = con.execute("SELECT image, class, COUNT(*) AS n, MAX(drop) AS d FROM several "
                    "GROUP BY image, class ORDER BY image, class").to_arrow()
    assert t.column("image").to_pylist() == [0, 0, 1, 1, 2, 2]
    assert t.column("class").to_pylist() == [2, 4] * 3 and set(t.column("n").to_pylist()) == {16}
    base = oracles["logits"](x)
    assert [m.base_probability for m in r.heatmaps] == pytest.approx(
        [base[n, c] for n in range(3) for c in (4, 2)], abs=1e-5)
    assert r.to_numpy().shape == (6, 4, 4)
    assert "6 heatmaps 4x4 (3 inputs, 2 classes)" in r.message


def test_each_input_of_a_batch_gets_its_own_top_class(world):
    con, oracles, _ = world
    x = _x((3, 32, 32), n=4, seed=2) * 3
    top = oracles["shallow"](x).argmax(axis=1)
    assert len(set(top.tolist())) > 1
    r = con.execute(f"{OCC} ? USING MODEL shallow PATCH 8 STRIDE 8", [x])
    assert [m.class_id for m in r.heatmaps] == top.tolist()
    assert r.to_arrow().column_names == ["image", "class", "y", "x", "probability", "drop"]


def test_one_class_keeps_the_heatmap_result(world, tmp_path):
    con, _, _ = world
    r = con.execute(f"{OCC} ? USING MODEL logits PATCH 8 STRIDE 4 FOR CLASSES (3)",
                    [_x((3, 32, 32), n=1)])
    assert r.kind == "heatmap" and r.heatmap.class_id == 3
    assert r.to_arrow().column_names[:2] == ["image", "class"]
    assert r.to_numpy().shape == (7, 7)
    assert open(r.save_png(tmp_path / "h.png"), "rb").read(4) == b"\x89PNG"
    several = con.execute(f"{OCC} ? USING MODEL logits PATCH 8 STRIDE 8 FOR CLASSES (3, 4)",
                          [_x((3, 32, 32), n=1)])
    with pytest.raises(kryptondb.KryptonError, match=r"heatmaps\[i\].save_png"):
        several.save_png(tmp_path / "no.png")
    assert several.heatmaps[1].save_png(tmp_path / "one.png").endswith("one.png")


def test_default_grid_fits_cover_reaches_the_border(world):
    con, _, _ = world
    x = _x((3, 32, 32), n=1)
    fit = con.execute(f"{OCC} ? USING MODEL logits PATCH 7 STRIDE 3", [x])
    cover = con.execute(f"{OCC} ? USING MODEL logits PATCH 7 STRIDE 3 GRID COVER", [x])
    assert fit.to_numpy().shape == (9, 9) and cover.to_numpy().shape == (10, 10)
    np.testing.assert_allclose(cover.to_numpy()[:9, :9], fit.to_numpy(), atol=1e-6)
    assert cover.to_arrow().column("y").to_pylist()[-1] == 27  # 9 * 3: cut off at row 31


def test_layout_pixels_is_the_mean_over_covering_windows(world):
    con, _, _ = world
    x = _x((3, 32, 32), n=1, seed=3)
    q = f"{OCC} ? USING MODEL logits PATCH 8 6 STRIDE 5 4 GRID COVER SCORE LOGIT BASELINE 0"
    windows = con.execute(q, [x])
    pixels = con.execute(f"{q} LAYOUT PIXELS", [x])
    drop, grid = windows.heatmap.drop, windows.heatmap.grid
    total, count = np.zeros((32, 32)), np.zeros((32, 32))
    for (y0, x0), d in zip(grid.corners(), drop.ravel()):
        total[y0:y0 + 8, x0:x0 + 6] += d
        count[y0:y0 + 8, x0:x0 + 6] += 1
    assert count.min() >= 1  # a covering grid leaves no pixel out
    np.testing.assert_allclose(pixels.to_numpy(), total / count, atol=1e-6)
    t = pixels.to_arrow()
    assert t.column_names == ["image", "class", "y", "x", "drop"] and t.num_rows == 32 * 32
    np.testing.assert_allclose(np.asarray(t.column("drop")), (total / count).ravel(), atol=1e-6)


def test_baseline_tensors_broadcast_or_go_per_input(world):
    con, oracles, _ = world
    x = _x((3, 32, 32), n=2, seed=4)
    per_channel = np.array([0.5, -1.0, 2.0], np.float32).reshape(3, 1, 1)
    each = _x((3, 32, 32), n=2, seed=5)
    for baseline in (np.broadcast_to(per_channel, (3, 32, 32)), each):
        want = definition(oracles["logits"], x, (1,), (8, 8), (8, 8), False, baseline, True)
        r = con.execute(f"{OCC} ? USING MODEL logits PATCH 8 STRIDE 8 FOR CLASS 1 SCORE LOGIT "
                        "BASELINE ? INCREMENTAL", [x, baseline])
        np.testing.assert_allclose(np.stack([m.probability for m in r.heatmaps]),
                                   want[:, 0], atol=2e-5)


def test_npy_file_equals_the_same_parameter(world, tmp_path):
    con, _, _ = world
    x = _x((3, 32, 32), n=2, seed=6)
    np.save(tmp_path / "x.npy", x.astype(np.float64))
    a = con.execute(f"{OCC} TENSOR '{tmp_path / 'x.npy'}' USING MODEL logits PATCH 8 STRIDE 8")
    b = con.execute(f"{OCC} TENSOR ? USING MODEL logits PATCH 8 STRIDE 8", [x])
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    plan = con.execute(f"EXPLAIN PLAN FOR {OCC} TENSOR '{tmp_path / 'x.npy'}' USING MODEL "
                       "logits").message
    assert "x.npy'[2x3x32x32#" in plan


def test_plans_show_a_tensor_by_digest_never_its_numbers(world):
    con, _, _ = world
    x = np.full((3, 32, 32), 0.123456, np.float32)
    q = f"EXPLAIN PLAN FOR {OCC} ? USING MODEL logits PATCH 8 BASELINE ?"
    plan = con.execute(q, [x, np.full((3, 32, 32), -2.5)]).message
    assert "0.123" not in plan and "-2.5" not in plan
    assert "tensor=?1[1x3x32x32#" in plan and "baseline=?2[3x32x32#" in plan
    other = con.execute(q, [x + 1, np.full((3, 32, 32), -2.5)]).message
    digest = plan.split("tensor=?1[1x3x32x32#")[1][:8]
    assert digest not in other
    assert "baseline=-2.5" in con.execute(q, [x, -2.5]).message  # a number is a number


def test_a_tensor_is_read_once_and_shared(world):
    con, _, _ = world
    r = con.execute(f"EXPLAIN PLAN FOR {OCC} ? USING MODEL logits PATCH 8 INCREMENTAL",
                    [_x((3, 32, 32), n=1)])
    ops = [n.op for n in r.plan.dag.nodes]
    assert ops.count("TensorScan") == 1 and ops.count("MaterializeViews") == 1


def test_one_channel_non_square_model_from_tensors(world):
    con, oracles, _ = world
    x = _x((1, 24, 40), n=2, seed=8)
    want = definition(oracles["gray"], x, (5,), (4, 6), (3, 5), True, -1.0, True)
    for mode in ("NAIVE", "INCREMENTAL"):
        r = con.execute(f"{OCC} ? USING MODEL gray PATCH 4 6 STRIDE 3 5 GRID COVER SCORE LOGIT "
                        f"BASELINE -1 FOR CLASS 5 {mode} ON NUMPY", [x])
        np.testing.assert_allclose(np.stack([m.probability for m in r.heatmaps]), want[:, 0],
                                   atol=2e-5)


def _one(con, path, options):
    return con.execute(f"{OCC} IMAGE '{path}' USING MODEL logits {options}").to_numpy()


def test_images_glob_list_and_table(world):
    con, _, images = world
    options = "PATCH 8 STRIDE 8"
    expected = {p: _one(con, images / p, options) for p in ("cat.png", "noise.png")}
    pattern = f"{images}/*.png"
    r = con.execute(f"{OCC} IMAGES '{pattern}' USING MODEL logits {options}")
    names = [os.path.basename(m.source) for m in r.heatmaps]
    assert names == ["cat.png", "noise.png"]
    for m in r.heatmaps:
        np.testing.assert_array_equal(m.drop, expected[os.path.basename(m.source)])
    listed = con.execute(f"{OCC} IMAGES (cat, '{images / 'noise.png'}') USING MODEL logits "
                         f"{options} INTO listed")
    assert [m.source for m in listed.heatmaps] == ["cat", str(images / "noise.png")]
    np.testing.assert_array_equal(listed.to_numpy(),
                                  np.stack([expected["cat.png"], expected["noise.png"]]))
    table = con.execute("SELECT DISTINCT image FROM listed ORDER BY image").to_arrow()
    assert table.column("image").to_pylist() == sorted(["cat", str(images / "noise.png")])
    relation = con.execute(f"{OCC} IMAGES TABLE images USING MODEL logits {options}")
    assert [m.source for m in relation.heatmaps] == ["cat"]  # labelled by the name column
    con.db.put_table("files", pa.table({"path": [str(images / "noise.png")]}))
    files = con.execute(f"{OCC} IMAGES TABLE files USING MODEL logits {options}")
    np.testing.assert_array_equal(files.to_numpy(), expected["noise.png"])
    plan = con.execute(f"EXPLAIN PLAN FOR {OCC} IMAGES '{pattern}' USING MODEL logits").message
    assert f"images='{pattern}'[2]" in plan


def test_views_are_materialized_per_input_and_reused(world):
    con, _, images = world
    q = f"{OCC} IMAGES '{images}/*.png' USING MODEL logits PATCH 16 STRIDE 4 INCREMENTAL"
    for name in con.db.names("view"):
        con.db.drop("view", name)
    first = con.execute(q)
    assert len(con.db.names("view")) == 2
    again = con.execute(q)
    node = next(n for n in again.plan.dag.nodes if n.op == "MaterializeViews")
    assert again.profile.of(node)["reused"] == 2
    np.testing.assert_array_equal(first.to_numpy(), again.to_numpy())


def _footprint(con, query, params=None):
    from kryptondb.rewrite.batch_queries import footprint

    r = con.execute(f"EXPLAIN PLAN FOR {query}", params)
    scan = next(n for n in r.plan.rewritten.walk() if n.op == "OcclusionScan")
    graph = kryptondb.load_model(con.db.models()["logits"].source).graph
    return footprint(graph, scan)


def test_the_memory_estimate_counts_every_input_and_class(world):
    con, _, _ = world
    q = f"{OCC} ? USING MODEL logits PATCH 8 STRIDE 4 INCREMENTAL"
    one = _footprint(con, q, [_x((3, 32, 32), n=1)])
    three = _footprint(con, f"{q} FOR ALL CLASSES", [_x((3, 32, 32), n=3)])
    assert three.fixed["views"] == 3 * one.fixed["views"] > 0
    assert three.fixed["heatmap"] == 3 * 10 * one.fixed["heatmap"]
    assert three.materialize == one.materialize + 2 * one.fixed["views"]


def test_drilldown_runs_on_a_covering_grid_of_rectangles(world):
    con, _, _ = world
    x = _x((3, 32, 32), n=2, seed=9)
    q = f"{OCC} ? USING MODEL logits PATCH 12 8 STRIDE 2 GRID COVER FOR CLASSES (1, 2)"
    exact = con.execute(q, [x])
    approx = con.execute(f"{q} APPROXIMATE DRILLDOWN 0.25 TARGET 2", [x])
    assert approx.to_numpy().shape == exact.to_numpy().shape == (4, 11, 13)
    assert approx.heatmaps[0].approximate["coarse_stride"] == 4
    assert 0 < approx.heatmaps[0].ssim <= 1  # scored against the exact maps of this session
