"""The open occlusion statement (issue 13): how its new forms parse, and the errors the binder
gives for them, each a KryptonError naming the problem with a caret under where it is.

End-to-end results (against a hand-written definition): tests/test_occlusion_inputs.py.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import kryptondb
from kryptondb.errors import KryptonError, PlanError, QuerySyntaxError, UnknownNameError
from kryptondb.lang import ast, parse
from test_obe_naive import tiny_connection

OCC = "EXPLAIN OCCLUSION OF"


def test_window_and_strides_take_one_number_or_two():
    s = parse(f"{OCC} IMAGE cat USING MODEL m PATCH 8 12 STRIDE 4 6")
    assert (s.patch, s.stride) == ((8, 12), (4, 6))
    s = parse(f"{OCC} IMAGE cat USING MODEL m PATCH 8 STRIDE 4")
    assert (s.patch, s.stride) == (8, 4)


def test_score_grid_layout_are_keywords_in_any_case():
    s = parse(f"{OCC} IMAGE cat USING MODEL m score logit Grid Cover LAYOUT pixels")
    assert (s.score, s.grid, s.layout) == ("logit", "cover", "pixels")
    s = parse(f"{OCC} IMAGE cat USING MODEL m SCORE PROBABILITY GRID FIT LAYOUT WINDOWS")
    assert (s.score, s.grid, s.layout) == ("probability", "fit", "windows")


def test_classes():
    s = parse(f"{OCC} IMAGE cat USING MODEL m FOR CLASSES (3, 'tabby', 7)")
    assert s.target_class == ast.Classes((3, "tabby", 7))
    assert parse(f"{OCC} IMAGE cat USING MODEL m FOR ALL CLASSES").target_class.every
    assert parse(f"{OCC} IMAGE cat USING MODEL m FOR CLASS 'tabby'").target_class == "tabby"


def test_baseline_is_signed_or_a_parameter():
    assert parse(f"{OCC} IMAGE cat USING MODEL m BASELINE -0.5").baseline == -0.5
    assert parse(f"{OCC} IMAGE cat USING MODEL m BASELINE 2").baseline == 2.0
    s = parse(f"{OCC} IMAGE cat USING MODEL m BASELINE ?")
    assert s.baseline == ast.Param(0) and s.params == 1


def test_inputs():
    s = parse(f"{OCC} IMAGES 'dir/*.png' USING MODEL m")
    assert s.image.refs == (ast.Ref("dir/*.png", True),) and not s.image.listed
    s = parse(f"{OCC} IMAGES ('a.png', cat) USING MODEL m")
    assert s.image.refs == (ast.Ref("a.png", True), ast.Ref("cat", False)) and s.image.listed
    assert parse(f"{OCC} IMAGES TABLE files USING MODEL m").image.table.value == "files"
    assert parse(f"{OCC} TENSOR 'x.npy' USING MODEL m").image.source == ast.Ref("x.npy", True)
    assert parse(f"{OCC} TENSOR ? USING MODEL m").image.source == ast.Param(0)


def test_parameters_are_numbered_in_the_order_written():
    s = parse(f"EXPLAIN PLAN FOR {OCC} ? USING MODEL m PATCH 4 BASELINE ?")
    assert s.params == 2
    assert (s.statement.image.source.index, s.statement.baseline.index) == (0, 1)
    assert s.statement.baseline.span.column == len(f"EXPLAIN PLAN FOR {OCC} ? USING MODEL m "
                                                   "PATCH 4 BASELINE ?")


@pytest.mark.parametrize("tail, words", [
    ("SCORE SOFTMAX", ["'SOFTMAX'", "LOGIT or PROBABILITY"]),
    ("GRID SQUARE", ["COVER or FIT"]),
    ("LAYOUT ROWS", ["PIXELS or WINDOWS"]),
    ("FOR CLASSES ()", ["')'", "an integer", "a quoted string"]),
    ("PATCH 8 12 14", ["'14'"]),
    ("BASELINE - ?", ["'?'", "an integer"]),
    ("FOR CLASS 3 FOR CLASSES (4)", ["FOR CLASSES and FOR CLASS exclude each other"]),
    ("FOR ALL CLASSES FOR ALL CLASSES", ["FOR ALL CLASSES is given twice"]),
])
def test_syntax_errors(tail, words):
    with pytest.raises(QuerySyntaxError) as info:
        parse(f"{OCC} IMAGE cat USING MODEL m {tail}")
    for w in words:
        assert w in str(info.value)


def test_images_need_something_to_read():
    with pytest.raises(QuerySyntaxError, match="unexpected 'USING'"):
        parse(f"{OCC} IMAGES USING MODEL m")


def test_a_tensor_value_is_its_digest_and_a_copy():
    from kryptondb.plan.values import Tensor

    x = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    t = Tensor(x, "?1")
    x[:] = 0  # the caller's array changes after binding: the plan's does not
    assert t.array.max() == 11 and not t.array.flags.writeable
    assert t == Tensor(np.arange(12.0).reshape(1, 3, 2, 2), "?1")  # same numbers, any dtype
    assert t != Tensor(x, "?1") and t != Tensor(t.array, "?2")
    assert repr(t) == str(t) == f"?1[1x3x2x2#{t.digest[:8]}]"  # never the numbers
    assert hash(t) == hash(Tensor(t.array, "?1"))


# -- binding -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    return tiny_connection(tmp_path_factory.mktemp("kql"))


X = np.zeros((3, 32, 32), np.float32)


def _error(con, query, params=None, kind=KryptonError):
    with pytest.raises(kind) as info:
        con.execute(query, params)
    return str(info.value)


def _caret_under(message: str, query: str, word: str) -> bool:
    """The caret line of ``message`` starts under the first ``word`` of ``query``."""
    lines = message.split("\n")
    i = next(k for k, line in enumerate(lines) if line.strip().startswith("^"))
    return lines[i].index("^") - 2 == query.index(word)


@pytest.mark.parametrize("tail, words, at", [
    ("PATCH 8 40", ["PATCH 8 40", "width 40 is out of range", "at most 32"], "PATCH"),
    ("PATCH 0 8", ["height 0 is out of range"], "PATCH"),
    ("PATCH 8 8 STRIDE 4 9", ["STRIDE 4 9", "width 9", "at most 8"], "STRIDE"),
    ("PATCH 4 STRIDE 5", ["STRIDE 5 is out of range", "PATCH 4"], "STRIDE"),
    ("PATCH 8 12 STRIDE 9", ["at most 8", "PATCH 8 12"], "STRIDE"),
    ("FILL 0.5 BASELINE 0", ["FILL and BASELINE exclude each other"], "BASELINE"),
    ("BASELINE -1 FILL GRAY", ["FILL and BASELINE exclude each other"], "FILL"),
    ("FILL 2", ["[0, 1]", "BASELINE takes any value"], "FILL"),
    ("FOR CLASSES (1, 4, 1)", ["class 1 twice"], "FOR"),
    ("FOR CLASSES (1, 10)", ["class 10 is out of range", "10 classes"], "FOR"),
    ("FOR CLASSES (1, 'zebra')", ["no class labelled 'zebra'"], "FOR"),
    ("PATCH 8 STRIDE 4 2 APPROXIMATE DRILLDOWN 0.25", ["DRILLDOWN takes one stride"],
     "DRILLDOWN"),
    ("PATCH 8 4 APPROXIMATE WITH SSIM >= 0.9", ["square PATCH and one STRIDE"], "APPROXIMATE"),
    ("PATCH 4 STRIDE 2 GRID COVER APPROXIMATE DRILLDOWN 0.25", ["GRID COVER",
                                                                "exceeds the window"],
     "DRILLDOWN"),
])
def test_option_errors_have_a_caret(con, tail, words, at):
    query = f"{OCC} ? USING MODEL tiny {tail}"
    message = _error(con, query, [X], PlanError)
    for w in words:
        assert w in message
    assert _caret_under(message, query, at), message


def test_approximate_tau_takes_any_window(con):
    r = con.execute(f"EXPLAIN PLAN FOR {OCC} ? USING MODEL tiny PATCH 8 4 STRIDE 2 3 "
                    "GRID COVER APPROXIMATE TAU 0.5", [X])
    assert "tau=0.5" in r.message and "patch=8x4" in r.message


@pytest.mark.parametrize("value, words", [
    (np.zeros((3, 16, 16)), ["?1 has shape 3 x 16 x 16", "takes 3 x 32 x 32 (one input) or N x"]),
    (np.zeros((2, 1, 32, 32)), ["2 x 1 x 32 x 32"]),
    (np.zeros((0, 3, 32, 32)), ["0 x 3 x 32 x 32", "N >= 1"]),
    (np.full((3, 32, 32), np.nan), ["NaN or infinite"]),
    (np.full((3, 32, 32), 1e300), ["NaN or infinite"]),
    ("'; DROP MODEL tiny; --", ["is a str, not real numbers"]),
    ([[1, 2], [3]], ["cannot read a list as an array"]),
    (np.zeros((3, 32, 32), complex), ["complex128, not real numbers"]),
    (None, ["is a NoneType"]),
])
def test_tensor_parameter_errors(con, value, words):
    query = f"{OCC} ? USING MODEL tiny PATCH 8"
    message = _error(con, query, [value], PlanError)
    for w in words:
        assert w in message
    assert _caret_under(message, query, "?")
    assert "tiny" in con.db.models()  # a value is never text: nothing was run


@pytest.mark.parametrize("value, words", [
    (np.zeros((3, 16, 16)), ["BASELINE ?2 has shape 3 x 16 x 16", "does not broadcast",
                             "1 x 3 x 32 x 32"]),
    (np.zeros((2, 3, 32, 32)), ["2 x 3 x 32 x 32", "does not broadcast"]),
    (np.zeros((1, 1, 3, 32, 32)), ["does not broadcast"]),
    (float("inf"), ["NaN or infinite"]),
])
def test_baseline_parameter_errors(con, value, words):
    query = f"{OCC} ? USING MODEL tiny PATCH 8 BASELINE ?"
    message = _error(con, query, [X, value], PlanError)
    for w in words:
        assert w in message
    assert _caret_under(message, query, "BASELINE ?") or "BASELINE ?2" in message


def test_parameters_count(con):
    q = f"{OCC} ? USING MODEL tiny PATCH 8"
    assert "no value for parameter ?1" in _error(con, q, None, PlanError)
    assert "2 parameter value(s) given for 1 ?" in _error(con, q, [X, X])
    assert "2 parameter value(s) given for 0 ?" in _error(con, "SHOW MODELS", [1, 2])
    assert "wrap it" in _error(con, q, X)  # an array is not a list of values
    assert "no value for parameter ?2" in _error(con, f"{q} BASELINE ?", [X], PlanError)


def test_a_script_hands_each_statement_its_own_values(con):
    r = con.execute(f"EXPLAIN PLAN FOR {OCC} ? USING MODEL tiny PATCH 8 BASELINE ?; "
                    f"EXPLAIN PLAN FOR {OCC} ? USING MODEL tiny PATCH 8", [X, -1.0, X + 1])
    assert f"?1[1x3x32x32#" in r.message and "baseline" not in r.message


@pytest.mark.parametrize("query, words, kind", [
    (f"{OCC} TENSOR 'missing.npy' USING MODEL tiny", ["missing.npy", "does not exist"],
     PlanError),
    (f"{OCC} IMAGE 'x.npy' USING MODEL tiny", ["NumPy file", "OF TENSOR 'x.npy'"], PlanError),
    (f"{OCC} IMAGES 'nowhere/*.png' USING MODEL tiny", ["no image file matches"], PlanError),
    (f"{OCC} IMAGES ('nowhere.png', cat) USING MODEL tiny", ["nowhere.png", "does not exist"],
     PlanError),
    (f"{OCC} IMAGES (cat, dog) USING MODEL tiny", ["no image 'dog'", "^^^"], UnknownNameError),
    (f"{OCC} IMAGES TABLE nope USING MODEL tiny", ["no table 'nope'", "^^^^"],
     UnknownNameError),
    (f"{OCC} IMAGES TABLE numbers USING MODEL tiny", ["no path or name column", "n"],
     PlanError),
    (f"{OCC} IMAGES TABLE nulls USING MODEL tiny", ["row 2: the path is None"], PlanError),
    (f"{OCC} IMAGES TABLE empty USING MODEL tiny", ["no rows"], PlanError),
    (f"{OCC} IMAGES TABLE models USING MODEL tiny", ["no image 'tiny'"],
     UnknownNameError),
])
def test_input_errors(con, query, words, kind):
    con.db.put_table("numbers", pa.table({"n": [1, 2]}))
    con.db.put_table("nulls", pa.table({"path": ["a.png", None]}))
    con.db.put_table("empty", pa.table({"path": pa.array([], pa.string())}))
    message = _error(con, query, None, kind)
    for w in words:
        assert w in message


def test_images_need_a_model_that_preprocesses_images(con, tmp_path):
    from kryptondb.graph.builder import Builder
    from kryptondb.runtime.onnx_export import to_onnx

    b = Builder("gray", (1, 8, 12), seed=1)
    graph = b.build(b.linear(b.flatten(b.global_pool("input")), "fc", 2))
    (tmp_path / "gray.onnx").write_bytes(to_onnx(graph).SerializeToString())
    con.execute(f"CREATE MODEL gray FROM '{tmp_path / 'gray.onnx'}'")
    for source, at in (("IMAGE cat", "cat"), ("IMAGES (cat)", "IMAGES")):
        query = f"{OCC} {source} USING MODEL gray PATCH 4"
        message = _error(con, query, None, PlanError)
        assert "pass a 1x8x12 tensor" in message and "OF TENSOR" in message
        assert _caret_under(message, query, at)
    r = con.execute(f"{OCC} ? USING MODEL gray PATCH 4", [np.ones((1, 8, 12))])
    assert r.to_numpy().shape == (2, 3)


def test_npy_file_errors(con, tmp_path):
    bad = tmp_path / "objects.npy"
    np.save(bad, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    message = _error(con, f"{OCC} TENSOR '{bad}' USING MODEL tiny", None, PlanError)
    assert "holds object, not real numbers" in message
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((3, 8, 8)))
    assert "has shape 3 x 8 x 8" in _error(con, f"{OCC} TENSOR '{small}' USING MODEL tiny")
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((4, 3, 32, 32)))
    small_limit = tiny_connection(tmp_path)
    small_limit.limits = kryptondb.limits.resolve({"tensor_bytes": 1000})
    message = _error(small_limit, f"{OCC} TENSOR '{big}' USING MODEL tiny", None, PlanError)
    assert "over the tensor_bytes limit" in message
