"""COPY ... TO 'file' and INTO [OR REPLACE]: results leave the database as Parquet, CSV or JSON
(a Parquet file reads back equal, metadata and tensor columns included), only ever to a regular
file in an existing folder, all or nothing; and INTO never replaces a table unless told to."""

from __future__ import annotations

import errno
import json
import os
import stat

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest

import kryptondb
from corpus_worker import make_world
from kryptondb.catalog import export
from kryptondb.errors import CatalogError, FileError, KryptonError, PlanError, UnknownNameError
from kryptondb.exec.executor import ExecContext, run
from kryptondb.lang import parse

OCC = "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL tiny PATCH 4 STRIDE 2"


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    """A tiny model's heatmap (INTO heat), its materialized views (a view with tensor columns)
    and a prediction (INTO preds)."""
    world = make_world(tmp_path_factory.mktemp("copy"))
    c = kryptondb.connect()
    c.execute(f"CREATE MODEL tiny FROM '{world.onnx}'; LOAD IMAGE '{world.img}' AS cat")
    c.execute(f"{OCC} INCREMENTAL INTO heat")
    c.execute("PREDICT IMAGE cat USING MODEL tiny INTO preds")
    assert c.db.names("view")
    return c


def _view(con) -> str:
    return con.db.names("view")[0]


def _plain(table: pa.Table) -> pa.Table:
    return table.replace_schema_metadata(None)


# -- what is written ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["heat", "view"])
def test_parquet_reads_back_equal(con, tmp_path, name):
    """Schema metadata (the catalog's stamp), list and binary tensor columns included."""
    kind = "view" if name == "view" else "table"
    name = _view(con) if name == "view" else name
    path = tmp_path / "out.parquet"
    r = con.execute(f"COPY {name} TO '{path}'")
    table = con.db.get_table(name, kind)
    assert r.kind == "message" and r.message == f"copied {table.num_rows} rows to {path}"
    back = pq.read_table(path)
    assert back.equals(table, check_metadata=True)
    assert back.schema.metadata and any(k.startswith(b"kryptondb") for k in back.schema.metadata)


def test_view_tensors_read_back_as_the_same_arrays(con, tmp_path):
    from kryptondb.ivm.views import from_arrow

    path = tmp_path / "views.pq"  # the short extension
    con.execute(f"COPY {_view(con)} TO '{path}'")
    want = from_arrow(con.db.get_table(_view(con), "view"))
    got = from_arrow(pq.read_table(path))
    assert list(got) == list(want)
    for layer in want:
        np.testing.assert_array_equal(got[layer], want[layer])


@pytest.mark.parametrize("name", ["heat", "preds"])
def test_csv_round_trip(con, tmp_path, name):
    path = tmp_path / f"{name}.csv"
    con.execute(f"COPY {name} TO '{path}'")
    table = _plain(con.db.get_table(name))
    assert path.read_text().splitlines()[0] == ",".join(f'"{c}"' for c in table.column_names)
    types = dict(zip(table.column_names, table.schema.types))
    back = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
    assert back.equals(table)


@pytest.mark.parametrize("name", ["heat", "preds"])
def test_json_round_trip(con, tmp_path, name):
    """One object per line (DuckDB's default for COPY TO json)."""
    path = tmp_path / f"{name}.json"
    con.execute(f"COPY {name} TO '{path}'")
    table = _plain(con.db.get_table(name))
    lines = path.read_text().splitlines()
    assert len(lines) == table.num_rows
    assert list(json.loads(lines[0])) == table.column_names
    back = pa_json.read_json(path, parse_options=pa_json.ParseOptions(
        explicit_schema=table.schema))
    assert back.equals(table)


def test_json_writes_nan_and_infinity_as_null(con, tmp_path):
    con.db.put_table("odd", pa.table({"v": [1.5, float("nan"), float("inf")],
                                      "s": ["a", "é", None]}))
    path = tmp_path / "odd.jsonl"
    con.execute(f"COPY odd TO '{path}'")
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == [
        {"v": 1.5, "s": "a"}, {"v": None, "s": "é"}, {"v": None, "s": None}]


def test_copy_of_a_select(con, tmp_path):
    query = "SELECT y, x, drop FROM heat WHERE drop > 0 ORDER BY drop DESC, y, x"
    path = tmp_path / "sel.csv"
    r = con.execute(f"COPY (\n  {query}\n) TO '{path}'")
    want = con.execute(query).to_arrow()
    assert r.message == f"copied {want.num_rows} rows to {path}"
    types = dict(zip(want.column_names, want.schema.types))
    back = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
    assert back.equals(_plain(want))


def test_copy_of_a_select_drops_the_tensor_column(con, tmp_path):
    path = tmp_path / "layers.json"
    con.execute(f"COPY (WITH v AS (SELECT layer, shape FROM {_view(con)}) SELECT * FROM v) "
                f"TO '{path}'")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    view = con.db.get_table(_view(con), "view").select(["layer", "shape"])
    assert rows == view.to_pylist() and rows[0]["shape"] == [3, 16, 16]


@pytest.mark.parametrize("clause, fmt", [("(FORMAT json)", "json"), ("WITH (FORMAT 'CSV')", "csv"),
                                         ("(format Parquet)", "parquet")])
def test_format_names_the_format_whatever_the_extension(con, tmp_path, clause, fmt):
    path = tmp_path / "out.data"
    con.execute(f"COPY preds TO '{path}' {clause}")
    data = path.read_bytes()
    if fmt == "parquet":
        assert data[:4] == b"PAR1"
    else:
        first = data.decode().splitlines()[0]
        assert first.startswith("{" if fmt == "json" else '"rank"')


def test_catalog_relations_and_home_paths(con, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    r = con.execute("COPY MODELS TO '~/models.csv'")
    assert r.message == f"copied 7 rows to {tmp_path / 'models.csv'}"  # tiny and the zoo
    assert "tiny" in (tmp_path / "models.csv").read_text()


def test_an_existing_file_is_replaced(con, tmp_path):
    path = tmp_path / "preds.csv"
    path.write_text("old\n")
    con.execute(f"COPY preds TO '{path}'")
    assert path.read_text().startswith('"rank"')
    assert os.listdir(tmp_path) == ["preds.csv"]  # no temp file left


def test_explain_plan_writes_nothing(con, tmp_path):
    path = tmp_path / "heat.parquet"
    text = con.execute(f"EXPLAIN PLAN FOR COPY heat TO '{path}'").message
    assert "Copy format=parquet" in text and "TableScan table=heat" in text
    assert not path.exists()


# -- what is refused ------------------------------------------------------------------------


def _refused(con, text: str, error=KryptonError) -> str:
    with pytest.raises(error) as info:
        con.execute(text)
    return str(info.value)


def test_binary_columns_are_refused_in_csv_and_json_and_the_file_is_kept(con, tmp_path):
    for ext in ("csv", "json"):
        path = tmp_path / f"views.{ext}"
        path.write_text("precious\n")
        message = _refused(con, f"COPY {_view(con)} TO '{path}'")
        assert "'tensor'" in message and "Parquet" in message and ext.upper() in message
        assert path.read_text() == "precious\n"
    assert sorted(os.listdir(tmp_path)) == ["views.csv", "views.json"]


def test_nested_columns_are_refused_in_csv(con, tmp_path):
    message = _refused(con, f"COPY (SELECT layer, shape FROM {_view(con)}) TO "
                            f"'{tmp_path / 'v.csv'}'")
    assert "'shape'" in message and "JSON or Parquet" in message


def test_a_failed_write_leaves_the_file_intact(con, tmp_path, monkeypatch):
    """A disk that fills up halfway: the old file stays, no temp file is left, the error says
    why."""
    path = tmp_path / "heat.parquet"
    path.write_bytes(b"old")

    def full(table, f, **kw):
        f.write(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export.pq, "write_table", full)
    message = _refused(con, f"COPY heat TO '{path}'", FileError)
    assert "No space left on device" in message and str(path) in message
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["heat.parquet"]


def _special(tmp_path):
    """name -> (the target as written, what the message must say)."""
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    (tmp_path / "real.csv").write_text("kept\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    (tmp_path / "file").write_text("")
    null = "/dev/null"  # as root, a device of its own: a broken check must not replace /dev/null
    if os.geteuid() == 0:
        null = str(tmp_path / "null.csv")
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return {
        "directory": (str(folder), "a folder, not a regular file"),
        "FIFO": (str(fifo), "a FIFO (named pipe), not a regular file"),
        "device": (null, "a character device, not a regular file"),
        "missing folder": (str(tmp_path / "no" / "x.csv"), "does not exist"),
        "folder is a file": (str(tmp_path / "file" / "x.csv"), "Not a directory"),
        "symlink": (str(tmp_path / "link.csv"), "symbolic link"),
        "dangling symlink": (str(tmp_path / "dangling.csv"), "symbolic link"),
        "NUL byte": (str(tmp_path / "a\x00b.csv"), "embedded null byte"),
        "unknown extension": (str(tmp_path / "x.xlsx"), "unknown COPY format"),
        "no extension": (str(tmp_path / "x"), "unknown COPY format"),
    }


def test_targets_that_are_not_a_new_or_regular_file_are_refused(con, tmp_path):
    for name, (target, said) in _special(tmp_path).items():
        clause = "" if "extension" in name else " (FORMAT csv)"
        with pytest.raises(PlanError) as info:
            con.execute(f"COPY preds TO '{target}'{clause}")
        message = str(info.value)
        assert said in message, (name, message)
        assert info.value.column == len("COPY preds TO ") + 1, name  # the caret: the path
    assert (tmp_path / "real.csv").read_text() == "kept\n"
    assert not (tmp_path / "nowhere.csv").exists()


def test_refused_before_the_query_runs(con, tmp_path, monkeypatch):
    """A bad target of a COPY (SELECT ...) fails at bind time: the SELECT never runs."""
    from kryptondb.exec import catalog_ops

    monkeypatch.setattr(catalog_ops, "sql", lambda *a: pytest.fail("the query ran"))
    _refused(con, f"COPY (SELECT * FROM heat) TO '{tmp_path / 'no' / 'x.csv'}'", PlanError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(con, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert "is not writable" in _refused(con, f"COPY preds TO '{folder / 'x.csv'}'")
    finally:
        folder.chmod(stat.S_IRWXU)


def test_a_folder_said_read_only_is_refused_before_the_query(con, tmp_path, monkeypatch):
    """What a user who is not root sees at bind time (root may write anywhere)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path)
                        else real_access(p, mode))
    message = _refused(con, f"COPY preds TO '{tmp_path / 'x.csv'}'", PlanError)
    assert f"folder '{tmp_path}' is not writable" in message


def test_a_folder_the_write_is_denied_in_is_refused(con, tmp_path, monkeypatch):
    """The same as root sees it: the OS refuses the write (EACCES) even where os.access did
    not say so; the existing file stays."""
    path = tmp_path / "x.csv"
    path.write_text("kept\n")
    real_open = os.open

    def denied(file, flags, *args, **kw):
        if str(file).startswith(str(tmp_path)) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", file)
        return real_open(file, flags, *args, **kw)

    monkeypatch.setattr(os, "open", denied)
    assert "Permission denied" in _refused(con, f"COPY preds TO '{path}'", FileError)
    assert path.read_text() == "kept\n"


def test_the_database_directory_is_refused(tmp_path):
    """COPY over catalog.json (or into tables/) would break the database it reads from."""
    db = kryptondb.connect(tmp_path / "db")
    db.db.put_table("p", pa.table({"x": [1, 2]}))
    before = (tmp_path / "db" / "catalog.json").read_bytes()
    for target in ("catalog.json' (FORMAT json)", "tables/x.parquet'"):
        message = _refused(db, f"COPY p TO '{tmp_path / 'db' / target}", PlanError)
        assert "inside the database directory" in message
    assert (tmp_path / "db" / "catalog.json").read_bytes() == before
    db.execute(f"COPY p TO '{tmp_path / 'p.parquet'}'")  # beside it is fine


def test_unknown_table_and_format(con, tmp_path):
    message = _refused(con, f"COPY nope TO '{tmp_path / 'x.csv'}'", UnknownNameError)
    assert "no table 'nope'" in message and "heat" in message and "column 6" in message
    message = _refused(con, f"COPY heat TO '{tmp_path / 'x.csv'}' (FORMAT xlsx)", PlanError)
    assert "format 'xlsx'" in message and "parquet" in message and "csv" in message


@pytest.mark.parametrize("text", [
    "COPY (SELECT * FROM read_csv('/etc/passwd')) TO '{d}/x.csv'",  # the sandbox's rules
    "COPY (COPY heat TO '{d}/y.csv') TO '{d}/x.csv'",  # DuckDB's COPY is never handed on
    "COPY heat TO '{d}/x.csv' (FORMAT csv, HEADER false)",  # only FORMAT
    "COPY (SELECT 1; SELECT 2) TO '{d}/x.csv'",
])
def test_sql_that_is_not_one_plain_select_is_refused(con, tmp_path, text):
    _refused(con, text.replace("{d}", str(tmp_path)))
    assert os.listdir(tmp_path) == []


# -- INTO [OR REPLACE] ----------------------------------------------------------------------


def test_into_an_existing_table_fails_before_running_and_keeps_it(con):
    con.execute("PREDICT IMAGE cat USING MODEL tiny TOP 3 INTO top3")
    first = con.db.get_table("top3")
    text = f"{OCC} INTO top3"
    with pytest.raises(PlanError) as info:
        con.execute(text)
    assert "table 'top3' exists; use INTO OR REPLACE top3" in str(info.value)
    assert info.value.column == text.index("top3") + 1
    assert con.db.get_table("top3").equals(first)
    with pytest.raises(PlanError):  # binding fails: nothing to explain either
        con.execute(f"EXPLAIN PLAN FOR {text}")


def test_into_or_replace_replaces(con):
    con.execute("PREDICT IMAGE cat USING MODEL tiny TOP 3 INTO OR REPLACE top2")  # new: fine
    r = con.execute("PREDICT IMAGE cat USING MODEL tiny TOP 2 INTO OR REPLACE top2")
    assert con.db.get_table("top2").num_rows == 2
    assert "Store or_replace=True table=top2" in r.plan.text()


def test_into_a_view_name_or_a_catalog_relation_is_refused(con):
    message = _refused(con, f"PREDICT IMAGE cat USING MODEL tiny INTO OR REPLACE {_view(con)}",
                       PlanError)
    assert "view" in message and "share one namespace" in message
    assert "catalog relation" in _refused(con, "PREDICT IMAGE cat USING MODEL tiny INTO tables")


def test_a_table_made_after_binding_is_not_replaced(con):
    """Another connection stores the name between bind and store: the store refuses."""
    text = "PREDICT IMAGE cat USING MODEL tiny TOP 1 INTO late"
    dag = con.plan(parse(text), text).dag
    con.db.put_table("late", pa.table({"x": [1]}))
    with pytest.raises(CatalogError, match="table 'late' exists"):
        run(dag, ExecContext(con.db, text))
    assert con.db.get_table("late").column_names == ["x"]


def test_into_twice_in_a_statement_is_a_syntax_error(con):
    from kryptondb.errors import QuerySyntaxError

    message = _refused(con, "PREDICT IMAGE cat USING MODEL tiny INTO a INTO OR REPLACE b",
                       QuerySyntaxError)
    assert "INTO OR REPLACE and INTO exclude each other" in message
