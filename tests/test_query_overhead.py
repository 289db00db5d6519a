"""What a query no longer redoes on the same inputs (issue 19, per-query overhead): decoding and
preprocessing an unchanged image file, the planner's static costs of a model, parsing the same
text, rewriting and lowering the same bound plan. None may serve stale results: each has a test
that a change it depends on is seen. No test asserts on time."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from PIL import Image

import kryptondb
from kryptondb.errors import PlanError, QuerySyntaxError
from kryptondb.exec.inference import model_flops
from kryptondb.exec.pipeline import plan_key
from kryptondb.graph.shapes import node_flops
from kryptondb.ivm import calibration as C
from kryptondb.ivm.cost import _theoretical, theoretical
from kryptondb.ivm.frontier import centre_cut
from kryptondb.lang import parse
from kryptondb.lang.parser import _parse
from kryptondb.lang.statements import has_code, split_statements, take_statements
from kryptondb.media.images import Preprocess, decoded, load_image
from kryptondb.model.binding import resolve
from kryptondb.model.model import load_model
from kryptondb.obe.occlusion import Grid, occluded_batch, per_channel
from kryptondb.obe.tuning import Tuning, table_name
from kryptondb.plan.binder import bind
from kryptondb.result import Result
from kryptondb.runtime.onnx_export import to_onnx
from test_approximate import _scan, _synthetic_tuning
from test_obe_naive import _hand_loop, _tiny_graph, tiny_connection


def test_an_unchanged_image_is_decoded_once_and_a_changed_one_again(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((9, 7, 3), 10, np.uint8)).save(path)
    first = load_image(path)
    first.putpixel((0, 0), (255, 0, 0))  # the caller's copy: the cache keeps its own
    assert np.asarray(load_image(path))[0, 0].tolist() == [10, 10, 10]
    Image.fromarray(np.full((5, 4, 3), 200, np.uint8)).save(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    again = np.asarray(load_image(path))
    assert again.shape == (5, 4, 3) and (again == 200).all()


def test_static_costs_are_computed_once_per_model_and_equal_fresh_ones():
    g = load_model("resnet18").graph
    assert theoretical(g, 16) is theoretical(g, (16, 16)) == _theoretical(g, (16, 16), None)
    assert theoretical(g, 16, 0.5) != theoretical(g, 16)
    cal = C.default()
    assert centre_cut(g, (16, 16), cal=cal) is centre_cut(g, (16, 16), cal=cal)
    nominal = centre_cut(g, (16, 16), cal=C.nominal())
    assert nominal.seconds != centre_cut(g, (16, 16), cal=cal).seconds


# -- statements parsed once, plans kept with the bound model (kryptondb/exec/pipeline.py) -------

Q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 4 "


@pytest.fixture
def con(tmp_path):
    with tiny_connection(tmp_path) as c:
        yield c


def _kept(con) -> dict:
    return resolve(con.db, "tiny").model.memo.get("plans", {})


def test_a_statement_is_parsed_once_and_equals_a_fresh_parse():
    text = Q.replace("tiny", "parse_once")
    assert parse(text) is parse(text) and parse(text) == _parse(text)
    for _ in range(2):  # errors are never kept: raised every time
        with pytest.raises(QuerySyntaxError):
            parse(text + "PATCH")


def test_a_repeated_statement_reuses_its_plans_and_gives_the_same_result(con):
    first, again = con.execute(Q + "NAIVE"), con.execute(Q + "NAIVE")
    assert again.plan.rewritten is first.plan.rewritten and again.plan.dag is first.plan.dag
    np.testing.assert_array_equal(again.heatmap.probability, first.heatmap.probability)
    _kept(con).clear()  # planned afresh: the same plans
    fresh = con.execute(Q + "NAIVE")
    assert fresh.plan.rewritten is not first.plan.rewritten
    assert (fresh.plan.rewritten, fresh.plan.dag) == (first.plan.rewritten, first.plan.dag)


def test_a_replaced_model_is_planned_and_run_afresh(con, tmp_path):
    before = con.execute(Q + "NAIVE")
    other = tmp_path / "other.onnx"
    other.write_bytes(to_onnx(_tiny_graph(seed=11)).SerializeToString())
    con.execute(f"CREATE MODEL tiny FROM '{other}'")
    after = con.execute(Q + "NAIVE")
    assert _model_of(after).digest != _model_of(before).digest
    model = load_model(str(other))
    x = model.inputs(kryptondb.bundled_image())[0]
    want = _hand_loop(model, x, after.heatmap.class_id, 8, 4, 0.5, "onnxruntime")
    np.testing.assert_allclose(after.heatmap.probability, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(after.heatmap.probability, before.heatmap.probability)


def _model_of(result):
    return _scan(result).arg("model")


def test_changed_options_and_calibration_are_planned_afresh(con, monkeypatch, tmp_path):
    eight = _scan(con.execute(Q + "BATCH 8 NAIVE"))
    assert eight.arg("batch") == 8 and _scan(con.execute(Q + "BATCH 16 NAIVE")).arg("batch") == 16
    assert _scan(con.execute(Q + "MEMORY 64 MB")).arg("memory_mb") == 64
    nominal = con.execute(Q)
    mine = tmp_path / "calibration.json"  # the default's values, read as this machine's
    mine.write_text(C.dumps(C.default().to_json()))
    monkeypatch.setenv("KRYPTONDB_CALIBRATION", str(mine))
    calibrated = con.execute(Q)
    assert "nominal FLOP counts" in _scan(nominal).arg("why")
    assert "this machine's calibration" in _scan(calibrated).arg("why")


def test_a_recalibration_is_seen_by_the_next_plan(con, monkeypatch, tmp_path):
    mine = tmp_path / "calibration.json"
    doc = C.default().to_json()
    mine.write_text(C.dumps(doc))
    monkeypatch.setenv("KRYPTONDB_CALIBRATION", str(mine))
    before = _scan(con.execute(Q)).arg("seconds_naive")
    mine.write_text(C.dumps(doc | {"rates": {k: [[p, r / 10] for p, r in v]
                                             for k, v in doc["rates"].items()}}))
    st = os.stat(mine)
    os.utime(mine, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert _scan(con.execute(Q)).arg("seconds_naive") > 5 * before


def test_a_dropped_or_created_table_is_seen_by_the_next_statement(con):
    con.execute(Q + "NAIVE INTO heat")
    with pytest.raises(PlanError, match="table 'heat' exists"):
        con.execute(Q + "NAIVE INTO heat")
    con.execute("DROP TABLE heat")
    assert con.execute(Q + "NAIVE INTO heat").table.num_rows == 49
    assert con.db.names("table") == ["heat"]


def test_a_plan_that_read_a_tuning_is_not_kept_and_a_replaced_tuning_is_seen(con):
    t = _synthetic_tuning(patch=8, stride=4)
    con.db.put_table(table_name("tiny", 8, 4), t.table, info=t.info())
    q = "EXPLAIN PLAN FOR " + Q + "APPROXIMATE WITH SSIM >= 0.9"
    _kept(con).clear()
    assert _scan(con.execute(q)).arg("tau") == t.for_ssim(0.9).tau
    assert not _kept(con)  # the tuning is catalog state no key holds
    ssim = pc.add(t.table["ssim"], 0.1)  # every setting more accurate: a smaller tau
    better = Tuning("tiny", 8, 4, t.table.set_column(3, "ssim", ssim), t.exact_seconds)
    con.db.put_table(table_name("tiny", 8, 4), better.table, info=better.info())
    assert better.for_ssim(0.9).tau < t.for_ssim(0.9).tau
    assert _scan(con.execute(q)).arg("tau") == better.for_ssim(0.9).tau
    con.execute(f"DROP TABLE {table_name('tiny', 8, 4)}")
    with pytest.raises(PlanError, match="needs a tuning"):
        con.execute(q)


def test_sessions_built_for_the_model_change_the_key(con, tmp_path):
    path = tmp_path / "unseen.onnx"  # weights no other test runs: no sessions built yet
    path.write_bytes(to_onnx(_tiny_graph(seed=23)).SerializeToString())
    con.execute(f"CREATE MODEL unseen FROM '{path}'")
    q = Q.replace("tiny", "unseen") + "INCREMENTAL"
    logical, options = bind(con.db, parse(q), q)
    before = plan_key(logical, options)
    con.execute(q)  # builds the model's per-layer sessions
    assert plan_key(logical, options) != before


def test_a_replaced_image_file_is_preprocessed_again(con, tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.full((40, 40, 3), 30, np.uint8)).save(path)
    con.execute(f"LOAD IMAGE '{path}' AS pic")
    q = Q.replace("cat", "pic") + "NAIVE"
    dark = con.execute(q).heatmap.image
    Image.fromarray(np.full((40, 40, 3), 220, np.uint8)).save(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    light = con.execute(q).heatmap.image
    assert light.mean() > dark.mean() + 0.5
    other = tmp_path / "other.png"
    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(other)
    con.execute(f"LOAD IMAGE '{other}' AS pic")  # the name, now another file: the same plan
    np.testing.assert_allclose(con.execute(q).heatmap.image, 100 / 255, atol=1e-6)


def test_preprocessed_inputs_are_copies_and_only_of_kept_images(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((9, 7, 3), 10, np.uint8)).save(path)
    pre = Preprocess(resize=(4, 4), crop=None, mean=(), std=())
    for _ in range(2):  # made, then kept: the caller gets a copy each time
        pre(path)[:] = 0
    assert pre(path).max() > 0 and (pre(decoded(path)) == pre(path)).all()
    mine = load_image(path)  # a copy the caller may draw on: never taken for the file's
    mine.paste((255, 255, 255), (0, 0, 7, 9))
    assert pre(mine).min() > pre(path).max()


def test_a_heatmap_result_makes_its_table_once_when_read(con):
    r = con.execute(Q + "NAIVE")
    assert "_table" in vars(r) and not isinstance(vars(r)["_table"], pa.Table)  # not made yet
    assert r.table is r.table and r.table.equals(r.heatmap.to_arrow())
    assert r.table.schema.metadata == r.heatmap.to_arrow().schema.metadata
    assert Result("message", message="m").table is None


@pytest.mark.parametrize("border", ["fit", "cut"])
def test_a_per_channel_fill_occludes_like_the_whole_fill(border):
    rng = np.random.default_rng(0)
    x = rng.random((3, 11, 13), np.float32)
    whole = np.broadcast_to(np.float32([0.1, 0.2, 0.3])[:, None, None], x.shape).copy()
    grid = Grid(11, 13, (4, 5), (3, 4), border)
    assert per_channel(whole).shape == (3, 1, 1)
    np.testing.assert_array_equal(occluded_batch(x, per_channel(whole), grid.corners(), (4, 5)),
                                  occluded_batch(x, whole, grid.corners(), (4, 5)))
    varied = whole.copy()
    varied[1, 5, 6] = 0.9  # not one value per channel: kept whole, and written as it is
    assert per_channel(varied) is varied
    want = np.repeat(x[None], grid.count, axis=0)
    for k, (y, xx) in enumerate(grid.corners()):
        want[k, :, y:y + 4, xx:xx + 5] = varied[:, y:y + 4, xx:xx + 5]
    np.testing.assert_array_equal(occluded_batch(x, varied, grid.corners(), (4, 5)), want)


def test_one_statement_without_a_semicolon_splits_as_before():
    for text in ("SHOW MODELS", "  SHOW MODELS\n-- done\n", "-- only a comment\n", "  \n",
                 "SHOW 'a--b'", "-- c\nSHOW MODELS"):
        done, rest = take_statements(text)
        assert split_statements(text) == [s for _, s in done] + ([rest.strip()] if
                                                                    has_code(rest) else [])


def test_a_models_flops_are_counted_once_and_as_a_fresh_count():
    model = load_model("resnet18")
    g = model.graph
    fresh = sum(node_flops(n, [g[i].shape for i in n.inputs], g.weights) for n in g.nodes)
    assert model_flops(model) == fresh == model_flops(model) and model.memo["flops"] == fresh


def test_the_unoccluded_pass_is_reused_only_on_the_same_weights_and_input(con, tmp_path):
    def base(result):
        node = next(n for n in result.plan.dag.nodes if n.op == "FullInference")
        return result.heatmap.base_probability, result.profile.of(node)

    path = tmp_path / "fresh.onnx"  # weights no other test runs
    path.write_bytes(to_onnx(_tiny_graph(seed=37)).SerializeToString())
    con.execute(f"CREATE MODEL fresh FROM '{path}'")
    q = Q.replace("tiny", "fresh") + "NAIVE"
    (first, ran), (again, reused) = base(con.execute(q)), base(con.execute(q))
    assert ran.get("flops") and reused.get("reused") == 1 and "flops" not in reused
    assert again == first
    model = resolve(con.db, "fresh").model
    assert first == pytest.approx(float(model.predict(kryptondb.bundled_image()).max()),
                                  rel=1e-6)
    image = tmp_path / "img.png"
    Image.fromarray(np.full((40, 40, 3), 30, np.uint8)).save(image)
    con.execute(f"LOAD IMAGE '{image}' AS cat")  # another input under the same name: run again
    other, stats = base(con.execute(q))
    assert stats.get("flops") and other != first
    assert other == pytest.approx(float(model.predict(str(image)).max()), rel=1e-6)
    path.write_bytes(to_onnx(_tiny_graph(seed=41)).SerializeToString())
    con.execute(f"CREATE MODEL fresh FROM '{path}'")  # other weights, the same input
    assert base(con.execute(q))[1].get("flops")
