"""The plan IR's contracts: typed arguments checked when a node is made, statistics beside the
plan (never in it), and run-time errors that name the plan node they came from."""

from __future__ import annotations

import pytest

import kryptondb
from kryptondb.errors import KryptonError
from kryptondb.lang.ast import Fill
from kryptondb.obe.grid import Grid
from kryptondb.plan.nodes import PlanNode, node
from kryptondb.plan.ops import SCHEMA, Op


def test_every_op_has_a_schema():
    assert set(SCHEMA) == set(Op)


@pytest.mark.parametrize("op, args, says", [
    (Op.OCCLUDE, {"grid": "53x53", "fill": Fill()}, "grid='53x53' is not a Grid"),
    (Op.OCCLUDE, {"grid": Grid(224, 224, 16, 4), "fill": "gray"}, "is not a Fill"),
    (Op.PREPROCESS, {"shape": "3x224x224"}, "is not a tuple of int"),
    (Op.SQL, {"sql": "SELECT 1", "tables": "a b"}, "is not a tuple of str"),
    (Op.HEATMAP, {"positions": "53x53"}, "Heatmap takes no argument 'positions'"),
    (Op.INFERENCE, {"batch": True}, "is not an int"),
    (Op.OCCLUSION_SCAN, {"mode": "fast"}, "is not 'naive' or 'incremental'"),
])
def test_a_wrongly_typed_argument_fails_where_it_is_written(op, args, says):
    with pytest.raises(TypeError, match=says.replace("(", r"\(").replace(")", r"\)")):
        node(op, **args)


def test_an_op_is_an_op():
    with pytest.raises(TypeError, match="is an Op"):
        PlanNode("Heatmap")


def test_a_run_leaves_the_plan_as_it_was_and_measures_beside_it():
    con = kryptondb.connect()
    q = f"PREDICT IMAGE '{kryptondb.bundled_image()}' USING MODEL mobilenet_v2 TOP 2"
    first, second = con.execute(q), con.execute(q)
    assert first.plan.dag == second.plan.dag
    assert not hasattr(first.plan.dag.nodes[0], "stats")
    assert first.profile is not second.profile
    for n in first.plan.dag.nodes:
        assert first.profile.of(n)["time_s"] >= 0
    assert first.profile.of(first.plan.dag.root)["rows"] == 2


def test_a_failing_operator_names_its_node(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(KryptonError) as info:
        kryptondb.connect().execute(f"LOAD IMAGE '{bad}' AS x")
    assert str(info.value).startswith("%0 LoadMedia: ")
    assert info.value.plan_node == "%0 LoadMedia"


def test_a_streaming_operator_names_the_node_that_raised(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    con = kryptondb.connect()
    with pytest.raises(KryptonError) as info:
        con.execute(f"RECOGNIZE OBJECTS IN VIDEO '{bad}' USING MODEL mobilenet_v2 TOP 1 NAIVE")
    assert str(info.value).startswith("%0 VideoScan: "), str(info.value)
    assert str(info.value).count("VideoScan") == 1
