"""Incremental inference on the zoo models and a real image equals onnxruntime's full inference
of the occluded images, at positions sampled over the whole grid (borders included)."""

import numpy as np
import pytest

import kryptondb
from kryptondb.runtime.backends import get_backend
from kryptondb.ivm.incremental import IncrementalPlan, base_views
from kryptondb.lang.ast import Fill
from kryptondb.obe.occlusion import Grid, fill_tensor, occluded_batch


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "efficientnet_lite0",
                                  "inception3", "vgg16"])
def test_incremental_matches_onnxruntime_full_inference(name):
    model = kryptondb.load_model(name)
    g = model.graph
    x = model.inputs(kryptondb.bundled_image())[0]
    grid = Grid(x.shape[1], x.shape[2], 16, 4)
    corners = grid.corners()
    fill = fill_tensor(x, Fill(), model.preprocess, 16)
    be = get_backend("onnxruntime")
    plan = IncrementalPlan(g, corners, 16, base_views(g, x, be))
    idx = np.unique(np.r_[0, grid.cols - 1, grid.count - 1,
                          np.random.default_rng(0).choice(grid.count, 5, replace=False)])
    pv = np.stack([fill[:, y:y + 16, c:c + 16] for y, c in corners[idx]])
    out = plan.run(idx, pv, be, {})
    ref = be.run(g, {g.inputs[0]: occluded_batch(x, fill, corners[idx], 16)})[g.output]
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-4)


def test_explain_analyze_reports_the_gather_share():
    con = kryptondb.connect()
    text = con.execute(f"EXPLAIN PLAN ANALYZE FOR EXPLAIN OCCLUSION OF IMAGE "
                       f"'{kryptondb.bundled_image()}' USING MODEL resnet18 PATCH 56 STRIDE 56 "
                       "INCREMENTAL").message
    scan = next(line for line in text.splitlines() if "OcclusionScan(" in line)
    assert "IncrementalOcclusionScan(" in scan and "gather" in scan and "% of its work" in scan


def test_views_are_stored_on_disk_and_reused(tmp_path):
    query = (f"EXPLAIN OCCLUSION OF IMAGE '{kryptondb.bundled_image()}' USING MODEL resnet18 "
             "PATCH 56 STRIDE 56 INCREMENTAL")
    first = kryptondb.connect(tmp_path / "db").execute(query)
    con = kryptondb.connect(tmp_path / "db")  # a new connection: views come from disk
    views = con.execute("SELECT name, rows FROM views").to_arrow().to_pylist()
    assert len(views) == 1 and views[0]["name"].startswith("views_resnet18_")
    again = con.execute(query)
    mat = next(n for n in again.plan.dag.nodes if n.op == "MaterializeViews")
    assert again.profile.of(mat).get("reused") == 1
    np.testing.assert_array_equal(first.heatmap.probability, again.heatmap.probability)
