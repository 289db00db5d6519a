"""EXPLAIN PLAN ANALYZE: per layer of an incremental scan, the counters a run keeps (calls,
positions, bytes gathered) equal what the plan implies; setup (model load, backend sessions)
is reported apart from inference; a video's stages are reported and the node that drains the
stream is charged only its own time. Nothing here asserts how fast anything ran."""

import json
import math
import time

import pytest
from test_explain_layers import check_document
from test_obe_naive import _tiny_graph
from test_video_incremental import _fixed_camera

import kryptondb
from kryptondb.ivm.frontier import merge_extras
from kryptondb.runtime.onnx_export import to_onnx


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analyze")
    c = kryptondb.connect()
    for name, seed in (("m", 1515), ("fresh", 1516)):  # seeds no other test uses: the
        path = folder / f"{name}.onnx"                  # sessions of "fresh" are built here
        path.write_bytes(to_onnx(_tiny_graph(seed)).SerializeToString())
        c.execute(f"CREATE MODEL {name} FROM '{path}'")
    c.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS cat")
    return c


def _analyze(con, query):
    r = con.execute(f"EXPLAIN PLAN ANALYZE FORMAT JSON FOR {query}")
    doc = json.loads(r.message)
    check_document(doc)
    assert doc["analyzed"]
    return r, doc


def test_counters_per_layer_are_what_the_plan_implies(con):
    r, doc = _analyze(con, "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL m PATCH 8 STRIDE 4 "
                           "INCREMENTAL BATCH 10")
    (scan,) = doc["scans"]
    node = next(n for n in r.plan.dag.nodes if n.id == scan["node"])
    graph = node.arg("model").graph
    stats = r.profile.stats[scan["node"]]
    positions = scan["positions"]
    assert positions == 49 and stats["rows"] == positions
    calls = math.ceil(positions / stats["chunk"])  # one backend call per chunk of a block
    heads = [x for x in scan["layers"] if x["measured"] is not None]
    assert len(heads) == len({x["segment"] for x in scan["layers"]})  # one per segment
    for layer in heads:
        m = layer["measured"]
        assert (m["calls"], m["positions"]) == (calls, positions), layer["name"]
        assert m["time_s"] == pytest.approx(m["gather_s"] + m["compute_s"])
        head = graph[layer["name"]]
        if head.op.value in ("Conv", "MaxPool"):  # windowed: one gathered context per position
            c = graph[head.inputs[0]].shape[0]
            h, w = layer["context"]
            # and a residual Add fused into the segment reads its other input at the region
            # (nothing to gather where that input's new region is the same rectangle)
            chain = [graph[x["name"]] for x in scan["layers"] if x["segment"] == layer["segment"]]
            rows = {x["name"]: x for x in scan["layers"]}
            extras = [graph[src].shape[0] * math.prod(layer["region"])
                      for _, src in merge_extras(chain)
                      if src not in rows or rows[src]["region"] != layer["region"]]
            assert m["gather_bytes"] == positions * (c * h * w + sum(extras)) * 4, layer["name"]
    suffix = scan["suffix"]["measured"]
    assert (suffix["calls"], suffix["positions"]) == (calls, positions)
    frontier = sum(math.prod(graph[f].shape) for f in scan["frontier"])
    assert suffix["gather_bytes"] == positions * frontier * 4  # the frontier's full maps
    assert scan["measured"]["positions_per_s"] > 0
    text = con.execute("EXPLAIN PLAN ANALYZE FOR EXPLAIN OCCLUSION OF IMAGE cat USING MODEL m "
                       "PATCH 8 STRIDE 4 INCREMENTAL BATCH 10").message
    assert "calls  positions  gathered" in text and "positions/s" in text


def test_drilldown_reports_its_stages(con):
    _, doc = _analyze(con, "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL m PATCH 8 STRIDE 2 "
                           "APPROXIMATE DRILLDOWN 0.25 TARGET 2")
    (scan,) = doc["scans"]
    coarse, fine = scan["stages"]
    assert coarse["name"] == "coarse" and coarse["stride"][0] > fine["stride"][0] == 2
    assert 0 < fine["measured_positions"] <= scan["positions"]
    heads = [x["measured"] for x in scan["layers"] if x["measured"]]
    assert all(m["positions"] == coarse["positions"] + fine["measured_positions"] for m in heads)


def test_predict_reports_setup_apart_from_inference(con):
    r, doc = _analyze(con, "PREDICT IMAGE cat USING MODEL fresh TOP 3")
    setup = doc["setup_s"]
    infer = next(n for n in doc["nodes"] if n["op"] == "FullInference")
    assert setup["sessions"] > 0 and infer["stats"]["setup_s"] == setup["sessions"]
    own = sum(n["stats"]["time_s"] for n in doc["nodes"])
    assert doc["total_s"] == pytest.approx(own + setup["model_load"] + setup["sessions"])
    assert sum(n["stats"]["share"] for n in doc["nodes"]) < 1  # setup is not in any node's
    text = con.execute("EXPLAIN PLAN ANALYZE FOR PREDICT IMAGE cat USING MODEL fresh").message
    line = next(x for x in text.splitlines() if x.startswith("setup "))
    assert "apart from inference: model load" in line and "sessions" in line
    again = con.execute("EXPLAIN PLAN ANALYZE FORMAT JSON FOR PREDICT IMAGE cat USING MODEL "
                        "fresh")
    assert json.loads(again.message)["setup_s"]["sessions"] == 0  # built once


def test_video_stages_and_the_labels_node_charged_its_own_time(con, tmp_path):
    video = _fixed_camera(tmp_path / "v.mkv", frames=6, size=64)
    start = time.perf_counter()
    _, doc = _analyze(con, f"RECOGNIZE OBJECTS IN VIDEO '{video}' USING MODEL m TOP 2")
    wall = time.perf_counter() - start
    stages = doc["video"]["stages"]
    assert all(v >= 0 for v in stages.values())
    assert stages["full_s"] > 0 and stages["change_detection_s"] > 0  # a key frame, then deltas
    assert sum(stages.values()) <= doc["total_s"]
    # every node's own time: the labels node no longer also counts the stream it drained,
    # which made the nodes add up to about twice the statement
    assert sum(n["stats"]["time_s"] for n in doc["nodes"]) <= wall
    ivm = next(n for n in doc["nodes"] if n["op"] == "IncrementalVideoInference")
    assert ivm["stats"]["time_s"] > 0
