"""Printing results: every mode, truncation with a footer, binary and tensor cells summarised."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

import kryptondb
from kryptondb.errors import KryptonError
from kryptondb.repl import run_script
from kryptondb.tables import MODES, render

FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=32)


def _table(rows: int, cols: int) -> pa.Table:
    return pa.table({f"col{i}": np.arange(rows, dtype=np.int64) * (i + 1) for i in range(cols)})


@given(st.lists(st.tuples(st.integers(-10**12, 10**12), FLOATS,
                          st.text(max_size=20) | st.none()), max_size=30))
@settings(max_examples=60, deadline=None)
def test_csv_and_json_hold_every_row_exactly(rows):
    t = pa.table({"i": pa.array([r[0] for r in rows], pa.int64()),
                  "f": pa.array([r[1] for r in rows], pa.float64()),
                  "s": pa.array([r[2] for r in rows], pa.string())})
    back = list(csv.reader(io.StringIO(render(t, "csv"))))
    assert back[0] == ["i", "f", "s"] and len(back) == len(rows) + 1
    for (i, f, s), line in zip(rows, back[1:]):
        assert int(line[0]) == i and float(line[1]) == f and line[2] == ("" if s is None else s)
    assert json.loads(render(t, "json")) == [{"i": i, "f": f, "s": s} for i, f, s in rows]


@pytest.mark.parametrize("mode", ["table", "markdown"])
def test_long_and_wide_tables_are_cut_with_a_footer(mode):
    text = render(_table(1000, 40), mode, max_rows=10, max_width=100)
    lines = text.splitlines()
    assert len(lines) == 2 + 10 + 1 + 1  # header, rule, head and tail, the elision row, footer
    assert max(len(line) for line in lines[:-1]) <= 100
    shown = len(lines[0].split("|" if mode == "markdown" else None)) - 1 - 2 * (mode == "markdown")
    assert lines[-1] == f"(1000 rows, 10 shown; 40 columns, {shown} shown)"
    assert "col0" in lines[0] and "col39" not in lines[0] and "…" in lines[0]
    assert render(_table(3, 2), mode).splitlines()[-1] == "(3 rows)"


def test_binary_cells_are_summarised_never_dumped():
    blob = bytes(range(256)) * 4096  # 1 MiB that would print as escapes
    t = pa.table({"layer": ["a", "b"], "shape": pa.array([[4, 256, 256], None],
                                                         pa.list_(pa.int32())),
                  "dtype": ["float32", "float32"],
                  "tensor": pa.array([blob, blob], pa.large_binary())})
    for mode in MODES:
        text = render(t, mode)
        assert len(text) < 500, mode
        assert "<float32 4x256x256>" in text and "<1048576 bytes>" in text
    plain = pa.table({"payload": pa.array([blob], pa.binary())})
    assert "<1048576 bytes>" in render(plain)


def test_long_lists_and_text_are_shortened_in_the_table_mode_only():
    t = pa.table({"xs": [list(range(1000))], "s": ["x" * 500]})
    line = render(t, max_width=200).splitlines()[2]  # a screen: text cells cut to fit
    assert "… (1000 items)" in line and len(line) < 150
    assert "x" * 500 in render(t)  # a pipe: text whole (a path must stay copyable)
    assert json.loads(render(t, "json"))[0] == {"xs": list(range(1000)), "s": "x" * 500}


def test_json_has_no_nan():
    t = pa.table({"f": [float("nan"), float("inf"), 1.0]})
    assert json.loads(render(t, "json")) == [{"f": None}, {"f": None}, {"f": 1.0}]


def test_unknown_mode_names_the_choices():
    with pytest.raises(KryptonError, match="unknown output mode 'xml'; choose one of table, csv"):
        render(_table(1, 1), "xml")


def test_select_star_from_a_view_prints_under_100_lines(tmp_path):
    """The issue's case: a view's rows hold whole feature maps (tens of MB)."""
    con = kryptondb.connect(tmp_path / "db")
    con.execute(f"EXPLAIN OCCLUSION OF IMAGE '{kryptondb.bundled_image()}' USING MODEL "
                "mobilenet_v2 PATCH 56 STRIDE 56 INCREMENTAL")
    view = con.execute("SHOW VIEWS").to_arrow().column("name")[0].as_py()
    assert con.db.get_table(view, "view").nbytes > 10_000_000
    for mode in MODES:
        out = io.StringIO()
        assert run_script(con, f'SELECT * FROM "{view}";', stdout=out, mode=mode) == 0
        text = out.getvalue()
        assert len(text.splitlines()) < 100 or mode in ("csv", "json"), mode
        assert len(text) < 100_000 and "<float32 " in text, mode
