"""SQL over result tables runs on a locked-down DuckDB (kryptondb/sql.py): user text is never run
as code, reaches no file, setting or extension, and every failure is a KryptonError with a caret.
The hypothesis fuzz of SQL text is in test_sql_fuzz.py."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pyarrow as pa
import pytest

import kryptondb
from kryptondb.errors import (KryptonError, PlanError, QueryError, QuerySyntaxError, SqlError,
                              UnknownNameError)
from kryptondb.sql import Sandbox, SqlLimits, connect_duckdb, relations

HEAT = pa.table({"y": pa.array([0, 0, 4, 4], pa.int32()), "x": pa.array([0, 4, 0, 4], pa.int32()),
                 "probability": pa.array([0.5, 0.2, 0.9, 0.7], pa.float32()),
                 "drop": pa.array([0.25, 0.5, -0.25, 0.0], pa.float32())})
PREDS = pa.table({"label": ["cat", "dog"], "probability": [0.9, 0.1], "x": [0, 4]})


@pytest.fixture(scope="module")
def con():
    c = kryptondb.connect()
    c.db.put_table("heat", HEAT)
    c.db.put_table("preds", PREDS)
    return c


def _fails(con, query: str, cls=KryptonError):
    with pytest.raises(cls) as info:
        con.execute(query)
    return info.value


# -- nothing a query says runs as code ----------------------------------------------------------

INJECTIONS = [  # each wrote the marker through sqlglot's Python executor (issue 11)
    """SELECT EXTRACT("a', __import__('os').system('touch {m}'), '" FROM CAST('2020-01-01' AS DATE))
       AS v FROM models""",
    """SELECT name -> '$."a'', __import__(''os'').system(''touch {m}''), ''"' AS v FROM models""",
    """SELECT JSON_EXTRACT(name, '$["a'', __import__(''os'').system(''touch {m}''), ''"]') AS v
       FROM models""",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injected_python_never_runs(con, tmp_path, payload):
    marker = tmp_path / "marker"
    try:
        con.execute(payload.format(m=marker))
    except KryptonError:
        pass
    assert not marker.exists()


# -- the sandbox: KryptonDB's relations, nothing else -------------------------------------------

@pytest.mark.parametrize("query, says", [
    ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv is not available"),
    ("SELECT * FROM read_text('/etc/hostname')", "table function read_text"),
    ("SELECT * FROM read_blob('/etc/hostname')", "table function read_blob"),
    ("SELECT * FROM read_parquet('x.parquet')", "table function read_parquet"),
    ("SELECT * FROM read_json('x.json')", "table function read_json"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "table function sniff_csv"),
    ("SELECT * FROM glob('/etc/*')", "table function glob"),
    ("SELECT * FROM query('SELECT 42')", "table function query"),
    ("SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
     "table function json_execute_serialized_sql"),
    ("SELECT * FROM duckdb_settings()", "table function duckdb_settings"),
    ("SELECT * FROM pragma_version()", "table function pragma_version"),
    ("SELECT current_setting('threads') AS t", "function current_setting is not available"),
    ("SELECT * FROM information_schema.tables", "information_schema.tables: SQL here sees"),
    ("SELECT * FROM main.heat", "main.heat: SQL here sees"),
    ("SELECT * FROM (SHOW TABLES)", "SHOW inside SQL is not available"),
    ("SELECT getenv('HOME') AS h", "getenv does not exist"),
])
def test_files_settings_and_duckdb_catalog_are_out_of_reach(con, query, says):
    err = _fails(con, query, QueryError)
    assert says in err.message


@pytest.mark.parametrize("query", [
    "SELECT * FROM '/etc/passwd'", "SELECT * FROM duckdb_tables",
    "SELECT * FROM pg_catalog.pg_class",
    # a CTE's name counts only where DuckDB sees it: not beside or above its WITH, not in its own
    # body, not in an earlier CTE, and in a recursive CTE only in the recursive part
    "SELECT * FROM (WITH pg_settings AS (SELECT 1) SELECT 1) t, pg_settings",
    "SELECT 1 WHERE EXISTS (WITH pg_tables AS (SELECT 1) SELECT 1) AND 'x' IN (FROM pg_tables)",
    "WITH pg_settings AS (SELECT * FROM pg_settings) SELECT * FROM pg_settings",
    "WITH a AS (SELECT * FROM sqlite_master), sqlite_master AS (SELECT 1) SELECT * FROM a",
    "WITH RECURSIVE pg_settings(name) AS (SELECT name FROM pg_settings UNION ALL "
    "SELECT 'x' WHERE false) SELECT * FROM pg_settings",
])
def test_a_path_or_a_system_view_is_not_a_table(con, query):
    err = _fails(con, query)
    assert "no table" in str(err) or "SQL here sees" in str(err)


def test_cte_names_are_seen_where_duckdb_sees_them(con):
    q = ("WITH RECURSIVE a AS (SELECT 1 AS v), b AS (SELECT v + 1 AS v FROM a), "
         "r(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM r WHERE v < 3) "
         "SELECT (WITH c AS (FROM b) SELECT max(v) FROM c) AS m, count(*) AS n FROM r")
    assert con.execute(q).to_arrow().to_pylist() == [{"m": 2, "n": 3}]


@pytest.mark.parametrize("statement", [
    "ATTACH '{m}' AS x", "INSTALL httpfs", "LOAD httpfs", "COPY (SELECT 1) TO '{m}'",
    "EXPORT DATABASE '{m}'", "PRAGMA version", "SET threads = 8", "RESET threads",
    "CALL pragma_version()", "CREATE TABLE t AS SELECT 1", "SET VARIABLE v = 1",
    "SELECT 1; COPY (SELECT 1) TO '{m}'", "WITH t AS (SELECT 1) INSERT INTO heat SELECT * FROM t",
    "PIVOT heat ON x",
])
def test_only_one_select_runs(tmp_path, statement):
    marker = tmp_path / "marker"
    text = statement.format(m=marker)
    with pytest.raises(SqlError, match="one SQL statement per query|only SELECT"):
        Sandbox().run(text, {"heat": HEAT})
    with pytest.raises(SqlError):
        relations(text, ["heat"])
    assert not marker.exists()


@pytest.mark.parametrize("statement", [
    "COPY (SELECT 1) TO '{m}'", "ATTACH '{m}' AS x", "EXPORT DATABASE '{m}'", "INSTALL httpfs",
    "LOAD httpfs", "SET lock_configuration = false", "SET enable_external_access = true",
    "SELECT * FROM read_text('/etc/hostname')", "SELECT * FROM glob('/*')",
])
def test_duckdb_itself_is_locked_down(tmp_path, statement):
    """Below the statement checks, DuckDB's own settings forbid files, extensions and changes,
    also on the cursors statements run on."""
    marker = tmp_path / "marker"
    db = connect_duckdb(SqlLimits())
    for con in (db, db.cursor()):
        with pytest.raises(duckdb.Error, match="disabled|locked"):
            con.execute(statement.format(m=marker)).fetchall()
    assert not marker.exists()


def test_through_kql_other_statements_are_syntax_errors(con, tmp_path):
    err = _fails(con, f"ATTACH '{tmp_path / 'marker'}' AS x", QuerySyntaxError)
    assert err.column == 1
    # COPY is KQL's own (tests/test_copy.py): without a known format it writes nothing
    err = _fails(con, f"COPY heat TO '{tmp_path / 'marker'}'", PlanError)
    assert "unknown COPY format" in str(err)
    assert not (tmp_path / "marker").exists()


# -- SQL that should work, works --------------------------------------------------------------

def test_drop_is_a_column_name(con):
    t = con.execute("SELECT y, x, drop FROM heat ORDER BY drop DESC LIMIT 5").to_arrow()
    assert t.column_names == ["y", "x", "drop"]
    assert t.column("drop").to_pylist() == [0.5, 0.25, 0.0, -0.25]


def test_with_select(con):
    t = con.execute("WITH big AS (SELECT * FROM heat WHERE drop > 0) "
                    "SELECT COUNT(*) AS n, SUM(y) AS s FROM big").to_arrow()
    assert t.to_pylist() == [{"n": 2, "s": 0}]
    assert t.schema.field("s").type == pa.int64()  # DuckDB's HUGEINT sum, as int64 where it fits


def test_recursive_cte_and_window_functions(con):
    t = con.execute("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
                    "SELECT n, SUM(n) OVER (ORDER BY n) AS running FROM r").to_arrow()
    assert t.to_pylist() == [{"n": 1, "running": 1}, {"n": 2, "running": 3},
                             {"n": 3, "running": 6}]


def test_join_keeps_every_column_with_distinct_names(con):
    t = con.execute("SELECT * FROM heat JOIN preds ON heat.x = preds.x ORDER BY y, heat.x")
    t = t.to_arrow()
    assert t.column_names == ["y", "x", "probability", "drop", "label", "probability_1", "x_1"]
    assert t.column("probability").to_pylist()[:2] == pytest.approx([0.5, 0.2])
    assert t.column("probability_1").to_pylist()[:2] == [0.9, 0.1]


def test_duplicate_names_skip_taken_ones(con):
    t = con.execute("SELECT 1 AS x, 2 AS x_1, 3 AS x, 4 AS X").to_arrow()
    assert t.column_names == ["x", "x_1", "x_2", "X_3"]


def test_semicolons_quotes_and_unicode_in_strings(con):
    t = con.execute("SELECT ';' AS s, 'it''s' AS t, 'é;ü' AS u, \"drop\" FROM heat LIMIT 1")
    assert t.to_arrow().to_pylist() == [{"s": ";", "t": "it's", "u": "é;ü", "drop": 0.25}]


def test_catalog_relations_and_names_ignore_case(con):
    assert "heat" in con.execute("SELECT name FROM TABLES").to_arrow().column("name").to_pylist()
    assert con.execute("SELECT COUNT(*) AS n FROM HEAT").to_arrow().to_pylist() == [{"n": 4}]


def test_names_differing_only_in_case_are_ambiguous():
    c = kryptondb.connect()
    c.db.put_table("heat", HEAT)
    c.db.put_table("Heat", HEAT)
    assert c.execute("SELECT COUNT(*) AS n FROM Heat").to_arrow().to_pylist() == [{"n": 4}]
    with pytest.raises(SqlError, match="differ only in case"):
        c.execute("SELECT * FROM HEAT")


def test_on_disk_tables_are_read_in_place(tmp_path):
    with kryptondb.connect(tmp_path / "db") as c:
        c.db.put_table("heat", HEAT)
    with kryptondb.connect(tmp_path / "db") as c:
        t = c.execute("SELECT y, AVG(drop) AS d FROM heat GROUP BY y ORDER BY y").to_arrow()
    assert t.to_pylist() == [{"y": 0, "d": 0.375}, {"y": 4, "d": -0.125}]


def test_only_named_relations_are_handed_over(con):
    assert relations("SELECT * FROM heat h JOIN (SELECT 1 AS one) s ON TRUE",
                     ["heat", "preds", "models"]) == ["heat"]
    assert relations("WITH preds AS (SELECT 1) SELECT * FROM preds", ["heat", "preds"]) == \
        ["preds"]  # a CTE may shadow a relation; handing it over too is harmless


# -- errors: KryptonErrors with DuckDB's message and a caret ------------------------------------

def test_typo_in_a_column_has_a_caret(con):
    err = _fails(con, "SELECT nme FROM preds", SqlError)
    assert 'Referenced column "nme" not found' in err.message
    assert (err.line, err.column, err.length) == (1, 8, 3)
    assert str(err).splitlines()[-1] == "         ^^^"


def test_values_python_cannot_hold_are_printed(con):
    """DuckDB's infinite dates, timestamps past the year 9999 and nanosecond timestamps made
    printing a result (the shell, -c) fail with OverflowError or ValueError."""
    r = con.execute("SELECT 'infinity'::DATE AS d, '294247-01-10'::TIMESTAMP AS t, "
                    "TIMESTAMP_NS '2020-01-01 00:00:00.123456789' AS ns, 1 AS n")
    text = str(r)
    assert "value out of range" in text and "2020-01-01 00:00:00.123456789" in text
    assert text.splitlines()[2].rstrip().endswith("1") and text.endswith("(1 row)")


def test_positions_count_in_the_whole_statement(con):
    err = _fails(con, "EXPLAIN PLAN ANALYZE FOR\n  SELECT 'é', nme FROM preds", SqlError)
    assert (err.line, err.column, err.length) == (2, 15, 3)
    err = _fails(con, "EXPLAIN PLAN FOR SELECT * FROM preds WHERE", QuerySyntaxError)
    assert (err.line, err.column) == (1, 38)
    err = _fails(con, "SHOW TABLES;\nSELECT * FROM nosuch", UnknownNameError)
    assert "no table 'nosuch'" in str(err) and "column 15" in str(err)


def test_unknown_table_lists_the_known_ones(con):
    err = _fails(con, "SELECT * FROM heatt", UnknownNameError)
    assert "no table 'heatt'; known: heat, images, models, preds, tables, videos, views" in str(err)


@pytest.mark.parametrize("query, says", [
    ("SELECT 1 // 0 AS v", "Division by zero"),
    ("SELECT 7 % 0 AS v", "Division by zero"),
    ("SELECT * FROM heat LIMIT -1", "LIMIT/OFFSET cannot be negative"),
    ("SELECT * FROM heat LIMIT 'a'", "Could not convert string 'a'"),
    ("SELECT * FROM heat LIMIT 99999999999999999999999999", "out of range"),
    ("SELECT label + 1 AS v FROM preds", "No function matches"),
    ("SELECT 9223372036854775807 + 1 AS v", "Overflow"),
    ("SELECT uper(label) AS v FROM preds", 'Did you mean "upper"'),
    ("SELECT * FROM heat, heat", "Ambiguous reference"),
    ("SELECT 'abc", "unterminated"),
    ("SELECT " + "(" * 2000 + "1" + ")" * 2000, "expression depth"),
    ("SELECT COLUMNS(x -> x LIKE '%') FROM heat", "lambda arrow"),
    ("SELECT st_point(1, 2) AS p", "exists in the spatial extension. Extensions are not"),
])
def test_sql_errors_are_query_errors(con, query, says):
    err = _fails(con, query, QueryError)
    assert says in err.message and err.message.startswith("SQL: ")
    # no advice the sandbox does not allow
    assert " SET " not in err.message and "INSTALL" not in err.message
    assert len(err.message) < 600  # DuckDB's list of candidate functions is cut short


# -- limits -------------------------------------------------------------------------------------

def test_row_limit():
    c = kryptondb.connect(sql_max_rows=10)
    assert c.execute("SELECT * FROM range(10)").to_arrow().num_rows == 10
    with pytest.raises(SqlError, match="more than 10 rows, the limit"):
        c.execute("SELECT * FROM range(100000000)")


def test_time_limit_and_the_next_statement():
    c = kryptondb.connect(sql_timeout_s=0.2)
    with pytest.raises(SqlError, match=r"stopped after 0.2 s, the time limit"):
        c.execute("SELECT COUNT(*) AS n FROM range(10000000000) a")
    assert c.execute("SELECT 42 AS v").to_arrow().to_pylist() == [{"v": 42}]


def test_memory_limit():
    c = kryptondb.connect(sql_memory_mb=32)
    with pytest.raises(SqlError, match="ran out of memory .the limit is 32 MB"):
        c.execute("SELECT COUNT(*) AS n FROM (SELECT i, repeat('x', 200) AS s "
                  "FROM range(2000000) t(i) ORDER BY s, i DESC)")


def test_ctrl_c_stops_a_statement_as_keyboard_interrupt():
    # a terminal's Ctrl-C: Python's own handler, also where the suite runs as a background job
    # (a shell starts those with SIGINT ignored, which the child would inherit)
    script = ("import os, signal, threading, kryptondb\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "c = kryptondb.connect(sql_timeout_s=60)\n"
              "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
              "try:\n"
              "    c.execute('SELECT COUNT(*) AS n FROM range(10000000000) a')\n"
              "except KeyboardInterrupt:\n"
              "    print(c.execute('SELECT 7 AS v').to_arrow().to_pylist())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "[{'v': 7}]", (out.returncode, out.stderr)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_duckdb_of_its_own():
    c = kryptondb.connect(sql_timeout_s=0.5)
    assert c.execute("SELECT 1 AS v").to_arrow().to_pylist() == [{"v": 1}]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            ok = c.execute("SELECT 2 AS v").to_arrow().to_pylist() == [{"v": 2}]
            try:
                c.execute("SELECT COUNT(*) AS n FROM range(10000000000) a")
            except SqlError as e:
                ok = ok and "time limit" in str(e)
            c.close()
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 2) == b"ok"
    assert os.waitpid(pid, 0)[1] == 0
    assert c.execute("SELECT 3 AS v").to_arrow().to_pylist() == [{"v": 3}]


@pytest.mark.parametrize("option", [dict(sql_max_rows=0), dict(sql_max_rows=1.5),
                                    dict(sql_timeout_s=0), dict(sql_timeout_s=float("inf")),
                                    dict(sql_memory_mb="1GB"), dict(sql_threads=True)])
def test_limit_options_are_checked(option):
    with pytest.raises(KryptonError, match="sql_"):
        kryptondb.connect(**option)
