"""Approximate occlusion through the query language: validation with valid ranges, the plan
rules (tau, drill-down, accuracy targets from a stored tuning), SSIM reporting, TUNE."""

import os

import numpy as np
import pyarrow as pa
import pytest
from test_obe_naive import tiny_connection

import kryptondb
from kryptondb.approx import drilldown as D
from kryptondb.approx.quality import ssim
from kryptondb.obe.tuning import Tuning, lookup, table_name
from kryptondb.errors import PlanError
from kryptondb.obe.occlusion import Grid

Q = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 2 "


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    return tiny_connection(tmp_path_factory.mktemp("m"))


def _scan(result):
    return next(n for n in result.plan.rewritten.walk() if n.op == "OcclusionScan")


@pytest.mark.parametrize("option, message", [
    ("APPROXIMATE TAU 0", "TAU must be in (0, 1], got 0"),
    ("APPROXIMATE TAU 1.5", "TAU must be in (0, 1], got 1.5"),
    ("APPROXIMATE DRILLDOWN 1", "DRILLDOWN fraction must be in (0, 1), got 1"),
    ("APPROXIMATE DRILLDOWN 0 TARGET 2", "DRILLDOWN fraction must be in (0, 1), got 0"),
    ("APPROXIMATE DRILLDOWN 0.25 TARGET 5", "TARGET speedup must be in [1, 4) for DRILLDOWN 0.25"),
    ("APPROXIMATE DRILLDOWN 0.5 TARGET 2", "TARGET speedup must be in [1, 2)"),
    ("APPROXIMATE WITH SSIM >= 1.2", "SSIM target must be in (0, 1], got 1.2"),
    ("APPROXIMATE WITH SSIM >= 0", "SSIM target must be in (0, 1], got 0"),
    ("APPROXIMATE WITHIN 0 SECONDS", "WITHIN needs a positive number of seconds"),
    ("APPROXIMATE TAU 0.5 WITH SSIM >= 0.9", "give either TAU or an accuracy/time target"),
    ("NAIVE APPROXIMATE TAU 0.5", "NAIVE and APPROXIMATE exclude each other"),
    ("APPROXIMATE WITH SSIM >= 0.9", "needs a tuning of tiny at PATCH 8 STRIDE 2"),
])
def test_invalid_settings_are_rejected_at_plan_time(con, option, message):
    with pytest.raises(PlanError) as err:
        con.execute(Q + option)
    assert message in str(err.value)
    assert "^" in str(err.value)  # the caret points into the query


def test_option_errors_point_at_the_option(con):
    with pytest.raises(PlanError) as err:
        con.execute(Q + "APPROXIMATE TAU 1.5")
    caret = str(err.value).splitlines()
    line = next(i for i, s in enumerate(caret) if s.strip().startswith("^"))
    col = caret[line].index("^")
    assert caret[line - 1][col:].startswith("TAU 1.5")


def test_tau_sets_the_plan_and_its_cost(con):
    exact = _scan(con.execute("EXPLAIN PLAN FOR " + Q + "INCREMENTAL"))
    approx = _scan(con.execute(Q + "APPROXIMATE TAU 0.4"))
    assert approx.arg("tau") == 0.4 and approx.arg("mode") == "incremental"
    assert approx.arg("theoretical_speedup") > exact.arg("theoretical_speedup")
    assert approx.arg("flops_incremental") < exact.arg("flops_incremental")


def test_ssim_is_reported_when_the_exact_map_is_at_hand(tmp_path):
    c = tiny_connection(tmp_path)
    first = c.execute(Q + "APPROXIMATE TAU 0.3")
    assert first.heatmap.ssim is None and "no exact heatmap at hand" in first.message
    exact = c.execute(Q)
    again = c.execute(Q + "APPROXIMATE TAU 0.3")
    want = ssim(exact.heatmap.probability, again.heatmap.probability)
    assert again.heatmap.ssim == pytest.approx(want) and f"SSIM {want:.3f}" in again.message
    assert again.heatmap.approximate == {"tau": 0.3}
    same = c.execute(Q + "APPROXIMATE TAU 1")
    assert same.heatmap.ssim == 1.0
    np.testing.assert_allclose(same.heatmap.probability, exact.heatmap.probability, atol=1e-5)


def test_drilldown_plan_and_second_stage_values(con):
    exact = con.execute(Q + "INCREMENTAL").heatmap.probability
    r = con.execute(Q + "APPROXIMATE DRILLDOWN 0.25 TARGET 2")
    scan = _scan(r)
    assert scan.arg("coarse_stride") == D.coarse_stride(2, 0.25, 2.0) == 4  # sqrt(2 / 0.5) * 2
    assert scan.arg("drilldown_speedup") == round(D.speedup(4, 2, 0.25), 2)
    # by definition: stage 1 is the exact map at the coarse stride, upsampled; the quarter of
    # positions with the lowest estimates take their exact values
    coarse = con.execute(Q.replace("STRIDE 2", "STRIDE 4") + "INCREMENTAL").heatmap.probability
    grid = Grid(32, 32, 8, 2)
    want = D.upsample(coarse, 4, grid.corners())
    picked = D.select(want, 0.25)
    want[picked] = exact.ravel()[picked]
    np.testing.assert_allclose(r.heatmap.probability.ravel(), want, atol=1e-5)
    assert len(picked) == np.ceil(0.25 * grid.count)


def test_drilldown_formula_and_bound():
    for r, t in ((0.25, 3.0), (0.1, 5.0), (0.5, 1.5)):
        s1 = D.coarse_stride(4, r, t)
        assert D.speedup(s1, 4, r) < 1 / r
        assert abs(D.speedup(s1, 4, r) - t) / t < 0.15  # rounding S1 to whole pixels
    with pytest.raises(ValueError):
        D.coarse_stride(4, 0.25, 4.0)


def _synthetic_tuning(model="tiny", patch=8, stride=2) -> Tuning:
    """SSIM falls with tau (more with drill-down); seconds fall with tau."""
    rows = []
    for img in range(10):
        for tau in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4):
            for drill in (False, True):
                s = 1 - 0.8 * (1 - tau) ** 1.5 - (0.15 if drill else 0) - 0.01 * img
                rows.append({"image": f"i{img}", "tau": tau, "drilldown": drill,
                             "ssim": s, "seconds": 10 * tau / (3 if drill else 1)})
    table = pa.Table.from_pylist(rows)
    return Tuning(model, patch, stride, table, 12.0)


def test_tuning_choices():
    t = _synthetic_tuning()
    c = t.for_ssim(0.9)
    measured = dict(t.measured(False))
    # a tuned tau, whose 10th-percentile SSIM met the target, the next smaller one's did not
    assert c.tau in measured and not c.drilldown and c.predicted_ssim >= 0.9
    smaller = [tau for tau in measured if tau < c.tau]
    assert not smaller or measured[max(smaller)] < 0.9
    true = [1 - 0.8 * (1 - c.tau) ** 1.5 - 0.01 * img for img in range(10)]
    assert sum(v >= 0.9 for v in true) >= 8, (c, true)  # nine images in ten meet it
    assert t.for_ssim(0.75, drill=False).tau < c.tau
    assert t.for_ssim(0.7).drilldown  # loose target: drill-down is faster and good enough
    assert t.for_ssim(0.99).why.startswith("no tuned setting reached SSIM 0.99")
    fast = t.for_seconds(3.0)
    assert fast.predicted_seconds <= 3.0 and fast.drilldown
    assert t.for_seconds(100).tau == 1.0  # time to spare: exact
    assert "nothing is predicted within" in t.for_seconds(0.1).why


def test_accuracy_target_reads_the_stored_tuning(tmp_path):
    db = tmp_path / "db"
    with tiny_connection(tmp_path, db) as c:
        t = _synthetic_tuning()
        c.db.put_table(table_name("tiny", 8, 2), t.table, info=t.info())
    with kryptondb.connect(db) as c:  # stored: a new connection reuses it
        scan = _scan(c.execute("EXPLAIN PLAN FOR " + Q + "APPROXIMATE WITH SSIM >= 0.9"))
        assert scan.arg("tau") == t.for_ssim(0.9).tau
        assert "predicted SSIM" in scan.arg("why") and scan.arg("predicted_ssim") >= 0.9
        text = c.execute("EXPLAIN PLAN FOR " + Q + "APPROXIMATE WITHIN 3 SECONDS").message
        assert "most accurate setting predicted within 3 s" in text and "drilldown=0.25" in text
        bare = _scan(c.execute("EXPLAIN PLAN FOR " + Q + "APPROXIMATE"))
        assert bare.arg("tau") == t.for_ssim(0.9).tau  # APPROXIMATE alone: SSIM >= 0.9


def test_tune_statement_stores_a_usable_tuning(con):
    from skimage import data

    coffee = os.path.join(os.path.dirname(data.__file__), "coffee.png")
    r = con.execute(f"TUNE MODEL tiny PATCH 8 STRIDE 4 ON IMAGES cat, '{coffee}'")
    assert "stored as table tuning_tiny_p8_s4" in r.message
    t = lookup(con.db, "tiny", 8, 4)
    assert t.table.num_rows == 2 * 7 * 2
    rows = t.table.to_pylist()
    assert all(-1 <= row["ssim"] <= 1 and row["seconds"] > 0 for row in rows)
    assert min(row["ssim"] for row in rows) < 1  # the approximations did change the maps
    table = con.execute("SELECT tau, AVG(ssim) AS s FROM tuning_tiny_p8_s4 GROUP BY tau").table
    assert table.num_rows == 7
    scan = _scan(con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 4 "
                             "APPROXIMATE WITH SSIM >= 0.8"))
    assert scan.arg("predicted_ssim") >= 0.8


def test_tune_where_drill_down_cannot_run_tunes_without_it(con):
    """On a map too small for drill-down's coarse stage (tiny's input at PATCH 8 STRIDE 8), TUNE
    failed with an error about DRILLDOWN TARGET at a column of a query the user never wrote."""
    r = con.execute("TUNE MODEL tiny PATCH 8 STRIDE 8 ON IMAGES cat")
    assert "stored as table tuning_tiny_p8_s8" in r.message
    t = lookup(con.db, "tiny", 8, 8)
    assert t.table.num_rows == 7 and not any(t.table.column("drilldown").to_pylist())
    scan = _scan(con.execute("EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 8 STRIDE 8 "
                             "APPROXIMATE WITHIN 100 SECONDS"))
    assert scan.arg("tau") is not None and not scan.arg("drilldown")


def test_tune_errors_name_the_problem(con, tmp_path):
    with pytest.raises(PlanError, match="no image file matches"):
        con.execute(f"TUNE MODEL tiny ON IMAGES '{tmp_path}/*.png'")
    with pytest.raises(kryptondb.errors.UnknownNameError):
        con.execute("TUNE MODEL tiny ON IMAGES nosuchimage")
    with pytest.raises(kryptondb.errors.UnknownNameError):
        con.execute("TUNE MODEL nosuchmodel ON IMAGES cat")
