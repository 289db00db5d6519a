"""A Result as data: pandas, polars, DuckDB and pyarrow read it (the Arrow PyCapsule stream), and
notebooks show it (``_repr_html_``, ``Heatmap._repr_png_``), with the values of ``to_arrow()``."""

from __future__ import annotations

import base64
import html
import re
import sys

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import kryptondb
from kryptondb.errors import KryptonError

IMAGE = kryptondb.bundled_image()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def con():
    return kryptondb.connect()


@pytest.fixture(scope="module")
def heat(con):
    """An occlusion heatmap (4x4 windows), its incremental plan's views stored as a table."""
    return con.execute(f"EXPLAIN OCCLUSION OF IMAGE '{IMAGE}' USING MODEL mobilenet_v2 "
                       "PATCH 56 STRIDE 56 INCREMENTAL")


@pytest.fixture(scope="module")
def preds(con):
    return con.execute(f"PREDICT IMAGE '{IMAGE}' USING MODEL mobilenet_v2 TOP 3")


def test_to_pandas_holds_the_arrow_values(heat, preds):
    for r in (heat, preds):
        df, t = r.to_pandas(), r.to_arrow()
        assert isinstance(df, pd.DataFrame) and list(df.columns) == t.column_names
        for name in t.column_names:
            assert df[name].tolist() == t[name].to_pylist(), name
    assert preds.to_pandas()["label"].iloc[0] == "Egyptian cat"
    np.testing.assert_array_equal(heat.to_pandas()["drop"].to_numpy().reshape(4, 4),
                                  heat.to_numpy())


def test_to_polars_holds_the_arrow_values(heat, preds):
    for r in (heat, preds):
        df = r.to_polars()
        assert isinstance(df, pl.DataFrame)
        assert df.to_dict(as_series=False) == r.to_arrow().to_pydict()


@pytest.mark.parametrize("package", ["pandas", "polars"])
def test_a_missing_optional_package_says_how_to_install_it(preds, package, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed: import raises
    with pytest.raises(KryptonError, match=f"pip install {package}"):
        getattr(preds, f"to_{package}")()


def test_duckdb_reads_a_result_by_its_variable_name(heat, preds):
    r = heat  # DuckDB's replacement scan finds the Python variable named in FROM
    assert duckdb.sql("SELECT count(*) FROM r").fetchall() == [(16,)]
    (total,), = duckdb.sql('SELECT sum("drop") FROM r').fetchall()
    assert total == pytest.approx(float(np.sum(heat.to_numpy())), rel=1e-6)
    r = preds
    assert duckdb.sql("SELECT label FROM r WHERE rank = 1").fetchall() == [("Egyptian cat",)]


def test_polars_and_pyarrow_read_a_result_as_an_arrow_stream(heat):
    expected = heat.to_polars()
    assert pl.DataFrame(heat).equals(expected)
    # polars' from_arrow turns any Arrow stream into a Series of row structs
    assert pl.from_arrow(heat).struct.unnest().equals(expected)
    t = pa.table(heat)
    assert t.equals(heat.to_arrow()) and t.schema.metadata == heat.to_arrow().schema.metadata


def test_the_stream_honours_a_requested_schema(preds):
    schema = preds.to_arrow().schema
    wanted = pa.schema([f.with_type(pa.large_string()) if f.type == pa.string() else f
                        for f in schema])
    reader = pa.RecordBatchReader.from_stream(preds, schema=wanted)
    assert reader.read_all()["label"].type == pa.large_string()


def test_a_message_result_is_a_one_row_table(con):
    r = con.execute("DROP TABLE IF EXISTS nothing_here")
    assert r.kind == "message"
    assert duckdb.sql("SELECT * FROM r").fetchall() == [(r.message,)]
    assert r.to_pandas()["message"].tolist() == [r.message]


# -- notebooks: _repr_html_ and _repr_png_ --------------------------------------------------------


def test_html_of_a_view_summarises_its_tensors_and_stays_small(con, heat):
    """`SELECT * FROM` a view printed 112 MB of raw tensor bytes; in a notebook too."""
    (view,) = con.execute("SHOW VIEWS").to_arrow().column("name").to_pylist()
    r = con.execute(f"SELECT * FROM {view}")
    t = r.to_arrow()
    assert t.nbytes > 10_000_000
    page = r._repr_html_()
    assert len(page) < 20_000
    assert page.count("<tr>") == 1 + t.num_rows  # the head and every row (fewer than 40)
    assert "&lt;float32 3x224x224&gt;" in page and "&lt;float32 " in page.split("<tbody>")[1]
    assert "\x00" not in page and "b&#x27;" not in page and f"({t.num_rows} rows)" in page


def test_html_of_a_long_table_shows_head_and_tail_with_a_footer(con):
    r = con.execute("SELECT i, '<b>' || i AS tag FROM range(100) t(i)")
    page = r._repr_html_()
    cells = [int(c) for c in re.findall(r'<td style="text-align: right">(\d+)</td>', page)]
    assert cells == list(range(20)) + list(range(80, 100))
    assert "(100 rows, 40 shown)" in page and '<td colspan="2">…</td>' in page
    assert "&lt;b&gt;7" in page and "<b>" not in page  # escaped, never markup


def test_html_of_a_heatmap_is_its_picture_then_its_message_and_table_head(heat):
    page = heat._repr_html_()
    img, rest = page.split('<img src="data:image/png;base64,', 1)[1].split('"', 1)
    assert base64.b64decode(img).startswith(PNG_MAGIC)
    assert rest.index(html.escape(heat.message.splitlines()[0])) < rest.index("<table")
    assert rest.count("<tr>") == 1 + 10 + 1 and "(16 rows, 10 shown)" in rest
    png = heat.heatmap._repr_png_()
    assert png.startswith(PNG_MAGIC) and png == base64.b64decode(img)


def test_html_of_plans_and_messages(con):
    text = con.execute("EXPLAIN PLAN FOR SHOW MODELS")
    assert text._repr_html_() == f"<pre>{html.escape(text.message)}</pre>"
    svg = con.execute("EXPLAIN PLAN FORMAT SVG FOR SHOW MODELS")._repr_html_()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    page = con.execute("EXPLAIN PLAN FORMAT HTML FOR SHOW MODELS")._repr_html_()
    assert "<svg" in page and "<pre" in page
    assert not any(tag in page for tag in ("<html", "<head", "<style", "<body"))
    msg = con.execute("DROP TABLE IF EXISTS nothing_here")
    assert msg._repr_html_() == f"<pre>{html.escape(msg.message)}</pre>"


def test_html_of_several_heatmaps_draws_each(con):
    x = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    r = con.execute("EXPLAIN OCCLUSION OF ? USING MODEL resnet18 PATCH 112 STRIDE 112", [x])
    assert r.heatmap is None and len(r.heatmaps) == 2
    page = r._repr_html_()
    assert page.count('<img src="data:image/png;base64,') == 2
    assert page.index("<img") < page.index(html.escape(r.message)) < page.index("<table")
    assert page.count("<tr>") == 1 + 8 and "(8 rows)" in page
