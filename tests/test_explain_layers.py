"""EXPLAIN PLAN's per-layer plan of an occlusion scan: golden VERBOSE text and FORMAT JSON
documents (no timings) for resnet18 and mobilenet_v2 at PATCH 16 STRIDE 4, with the cost
model's calibration pinned here so that later calibration work keeps them; and the document's
keys and types (``check_document``, which test_explain_analyze.py applies to analyzed ones)."""

import importlib
import json
import pathlib

import pytest
from golden import cases, check

import kryptondb
from kryptondb.ivm import calibration

maintain_views = importlib.import_module("kryptondb.rewrite.maintain_views")  # the module
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "plans" / "layers"
SEPARATOR = "\n-- expected plan --\n"
# the calibration the golden files were made with: the shipped default one (its file is pinned
# by test_cost_model.py), whatever this machine's, and the setup's constants
PINNED = {(calibration, "load"): calibration.default,
          (maintain_views, "SESSION_FLOPS_PER_BYTE"): 300,
          (maintain_views, "SESSION_FLOPS"): 200_000_000}


@pytest.fixture(scope="module")
def pinned(sessions_counted_built):
    """The cost model's constants as the goldens were made, and every model's sessions counted
    as built (the predicted setup otherwise depends on what ran before in the process)."""
    mp = pytest.MonkeyPatch()
    for (module, name), value in PINNED.items():
        mp.setattr(module, name, value)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def con(pinned):
    c = kryptondb.connect()
    c.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS cat")
    return c


def _physical(text: str) -> str:
    return text[text.index("== physical plan"):]


@pytest.mark.parametrize("path", cases(FIXTURES), ids=lambda p: p.stem)
def test_layer_plan_matches_golden_file(con, path):
    """``*.kql``: the VERBOSE physical plan; ``*.json.kql``: the FORMAT JSON document."""
    query = path.read_text().partition(SEPARATOR)[0].strip()
    if path.name.endswith(".json.kql"):
        doc = con.execute(f"EXPLAIN PLAN FORMAT JSON FOR {query}").message
        check(path, SEPARATOR, doc)
    else:
        check(path, SEPARATOR, _physical(con.execute(f"EXPLAIN PLAN VERBOSE FOR {query}").message))


def test_there_are_golden_layer_plans():
    names = {p.name for p in cases(FIXTURES)}
    assert {"resnet18_p16_s4.kql", "mobilenet_v2_p16_s4.kql", "resnet18_p16_s4.json.kql",
            "mobilenet_v2_p16_s4.json.kql"} <= names


# -- the document's schema ------------------------------------------------------------------------

NUM, INT, STR, BOOL = (int, float), int, str, bool
OPT = type(None)
DOC = {"schema": STR, "statement": STR, "analyzed": BOOL, "total_s": (float, OPT),
       "setup_s": (dict, OPT), "nodes": list, "scans": list, "video": (dict, OPT)}
NODE = {"id": INT, "op": STR, "inputs": list, "args": dict, "stats": (dict, OPT)}
SCAN = {"node": INT, "plan": STR, "choice": dict, "input": list, "patch": list, "stride": list,
        "positions": INT, "tau": (float, OPT), "frontier": list, "frontier_reason": STR,
        "suffix": (dict, OPT), "layers": list, "stages": (list, OPT),
        "full_flops": (INT, OPT), "incremental_flops": (INT, OPT)}
CHOICE = {"picked": STR, "reason": (STR, OPT), "theoretical_speedup": (float, OPT),
          "predicted_flops": dict, "predicted_s": dict}
LAYER = {"name": STR, "op": STR, "kernel": (list, OPT), "stride": (list, OPT), "map": list,
         "region": list, "share": float, "context": (list, OPT), "full_flops": INT,
         "incremental_flops": INT, "segment": INT, "capped": BOOL, "measured": (dict, OPT)}
MEASURED = {"calls": INT, "positions": INT, "time_s": float, "gather_s": float,
            "compute_s": float, "gather_bytes": INT, "wall_share": (float, OPT),
            "gflops": (float, OPT)}
DISTRIBUTION = {"address": STR, "workers": list, "nodes": list}
DIST_NODE = {"node": INT, "op": STR, "tasks": INT, "task_size": list, "unit": STR,
             "whole_inputs": BOOL, "measured": (dict, OPT)}
SETUP = {"model_load": float, "sessions": float, "views": float}
STAGES = {"decode_s": float, "preprocess_s": float, "change_detection_s": float,
          "incremental_s": float, "full_s": float}


def _keys(obj: dict, spec: dict, where: str) -> None:
    assert set(obj) >= set(spec), f"{where}: missing {set(spec) - set(obj)}"
    for k, kinds in spec.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        ok = isinstance(obj[k], kinds) and not (isinstance(obj[k], bool) and bool not in kinds)
        assert ok, f"{where}.{k} = {obj[k]!r} is not {kinds}"


def check_document(doc: dict) -> None:
    """The keys and types docs/explain.md documents (the page renders from them)."""
    _keys(doc, DOC, "document")
    assert doc["schema"] == "kryptondb.plan/1"
    json.dumps(doc, allow_nan=False)  # plain JSON
    for n in doc["nodes"]:
        _keys(n, NODE, f"node {n['id']}")
    if doc["setup_s"] is not None:
        _keys(doc["setup_s"], SETUP, "setup_s")
    if doc["video"] is not None:
        _keys(doc["video"]["stages"], STAGES, "video.stages")
    if "distribution" in doc:  # only with a Dask cluster (kryptondb/dist/describe.py)
        _keys(doc["distribution"], DISTRIBUTION, "distribution")
        for s in doc["distribution"]["nodes"]:
            _keys(s, DIST_NODE, "distribution.node")
    for s in doc["scans"]:
        _keys(s, SCAN, "scan")
        _keys(s["choice"], CHOICE, "choice")
        assert s["plan"] in ("naive", "incremental", "drilldown")
        assert s["node"] in {n["id"] for n in doc["nodes"]}
        for r in s["layers"]:
            _keys(r, LAYER, f"layer {r['name']}")
            if r["measured"] is not None:
                _keys(r["measured"], MEASURED, f"layer {r['name']}.measured")
        if "tail" in (s["suffix"] or {}):  # only a plan with a classifier tail
            _keys(s["suffix"]["tail"], {"layers": INT, "flops": INT, "batch": INT,
                                        "measured": (dict, OPT)}, "suffix.tail")
        for stage in s["stages"] or ():
            _keys(stage, {"name": STR, "stride": list, "positions": INT}, "stage")


@pytest.mark.parametrize("options", ["", "NAIVE", "APPROXIMATE TAU 0.5 DRILLDOWN 0.25 TARGET 3"])
def test_the_document_has_the_documented_keys_and_types(con, options):
    q = f"EXPLAIN OCCLUSION OF IMAGE cat USING MODEL resnet18 PATCH 16 STRIDE 4 {options}"
    r = con.execute(f"EXPLAIN PLAN FORMAT JSON FOR {q}")
    doc = json.loads(r.message)
    check_document(doc)
    assert doc == r.extra["document"] and doc["statement"] == q.strip()
    assert not doc["analyzed"] and doc["total_s"] is None and doc["setup_s"] is None
    (scan,) = doc["scans"]
    if scan["plan"] != "naive":
        assert scan["frontier"] and scan["layers"][0]["name"] == "conv1"
        assert sum(r["incremental_flops"] for r in scan["layers"]) + scan["suffix"]["flops"] \
            == scan["incremental_flops"]
        assert scan["frontier"][-1] in {r["name"] for r in scan["layers"]}
    assert scan["choice"]["reason"]


def test_a_broken_document_fails_the_schema_check():
    doc = {"schema": "kryptondb.plan/1", "statement": "", "analyzed": False, "total_s": None,
           "setup_s": None, "nodes": [{"id": 0, "op": "X", "inputs": [], "args": {},
                                       "stats": None}], "scans": [], "video": None}
    check_document(doc)
    with pytest.raises(AssertionError):
        check_document({**doc, "analyzed": "no"})
    with pytest.raises(AssertionError):
        check_document({k: v for k, v in doc.items() if k != "scans"})
