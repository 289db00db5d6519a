"""A Result as data: pandas, polars, DuckDB and pyarrow read it (the Arrow PyCapsule stream), and
notebooks show it (``_repr_html_``, ``Heatmap._repr_png_``), with the values of ``to_arrow()``."""

from __future__ import annotations

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
