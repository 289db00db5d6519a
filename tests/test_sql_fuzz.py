"""A hypothesis fuzz of SQL text: SELECT skeletons, SQL fragments and hostile payloads (quotes,
comments, ';', unicode, huge literals, shell and COPY/ATTACH/INSTALL that would write a marker
file, Python that would run os.system). Whatever comes out, nothing runs (the marker never
appears) and every failure is a KryptonError. ~300 derandomized examples by default; more under
the ``slow`` marker."""

from __future__ import annotations

import os
import shutil
import tempfile

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kryptondb
from kryptondb.errors import KryptonError

MARKER_DIR = os.path.join(tempfile.gettempdir(), f"kryptondb-sql-fuzz-{os.getpid()}")
MARKER = os.path.join(MARKER_DIR, "marker")
HEAT = pa.table({"y": pa.array([0, 0, 4], pa.int32()), "x": pa.array([0, 4, 0], pa.int32()),
                 "probability": pa.array([0.5, 0.2, 0.9], pa.float32()),
                 "drop": pa.array([0.1, 0.4, -0.3], pa.float32())})

SKELETONS = [
    "SELECT {} FROM heat", "SELECT y, x, drop FROM heat WHERE {}", "SELECT * FROM heat ORDER BY {}",
    "WITH t AS (SELECT {} FROM heat) SELECT * FROM t", "SELECT {} FROM models",
    "SELECT EXTRACT({} FROM CAST('2020-01-01' AS DATE)) AS v", "SELECT name -> '{}' FROM models",
    "SELECT JSON_EXTRACT(name, '{}') FROM models", "SELECT {} AS v FROM heat GROUP BY y",
    "SELECT * FROM heat h JOIN models m ON {}", "SELECT '{}' AS v", 'SELECT "{}" FROM heat',
    "SELECT * FROM {}", "EXPLAIN PLAN FOR SELECT {} FROM heat", "{}",
]
FRAGMENTS = [
    "y", "x", "drop", "probability", "name", "*", "COUNT(*)", "AVG(drop)", "y + x", "1 // 0",
    "drop DESC", "LIMIT 3", "OFFSET 1", "WHERE", "GROUP BY y", "ORDER BY", "UNION ALL SELECT 1",
    "rank() OVER (ORDER BY drop)", "CAST(y AS VARCHAR)", "NULL", "TRUE", "'a'", "''", "\"\"",
    "(", ")", ",", ".", "::", "->", "$.a", "$$", "--", "/*", "*/", ";", "\\", "\\'", "\n", "\t",
    "é", "名", "\u202e", "\x00", "9" * 400, "1e999", "-9223372036854775809",
    "'" + "x" * 5000 + "'",
    "information_schema.tables", "duckdb_settings()", "main.heat", "range(3)", "unnest([1, 2])",
    "read_csv('/etc/passwd')", "glob('/*')", "current_setting('threads')", "query('SELECT 1')",
]
PAYLOADS = [
    "'); COPY heat TO '{m}'; --", "' || (SELECT 1); COPY (SELECT 1) TO '{m}' --",
    "'; ATTACH '{m}' AS x; --", "'; EXPORT DATABASE '{m}'; --", "'; INSTALL '{m}'; --",
    "a', __import__('os').system('touch {m}'), '", "a') or __import__('os').system('touch {m}')#",
    "\"a', __import__('os').system('touch {m}'), '\"", "$.\"a'', __import__(''os'').system("
    "''touch {m}''), ''\"", "'; SET enable_external_access = true; COPY heat TO '{m}'; --",
    "1); SELECT * FROM read_csv('{m}'); --", "`touch {m}`", "$(touch {m})", "; .shell touch {m}",
    "; ! touch {m}", "' UNION SELECT * FROM query('COPY heat TO ''{m}''') --",
    "*/ COPY heat TO '{m}' /*", "$$; COPY heat TO '{m}'; $$",
]


FRAGMENT = st.sampled_from(FRAGMENTS)
PAYLOAD = st.sampled_from(PAYLOADS).map(lambda p: p.format(m=MARKER))
# one piece often (so many statements are valid and run), or a few pieces and random text
PIECES = st.one_of(FRAGMENT.map(lambda f: [f]), PAYLOAD.map(lambda p: [p]),
                   st.lists(st.one_of(FRAGMENT, FRAGMENT, PAYLOAD, st.text(max_size=12)),
                            min_size=1, max_size=5))
SQL_TEXT = st.builds(lambda skeleton, parts: skeleton.format(" ".join(parts)),
                     st.sampled_from(SKELETONS), PIECES)


@pytest.fixture(scope="module")
def con():
    os.makedirs(MARKER_DIR, exist_ok=True)
    c = kryptondb.connect(sql_timeout_s=5, sql_max_rows=10_000)
    c.db.put_table("heat", HEAT)
    yield c
    c.close()
    shutil.rmtree(MARKER_DIR, ignore_errors=True)


def _check(con, text: str) -> None:
    if "heat" not in con.db.names("table"):  # a fuzzed script may DROP it
        con.db.put_table("heat", HEAT)
    try:
        con.execute(text)
    except KryptonError:
        pass
    except Exception as exc:  # pragma: no cover - the failure this test exists to catch
        pytest.fail(f"{type(exc).__name__} from {text!r}: {exc}")
    assert not os.listdir(MARKER_DIR), f"{text!r} wrote {os.listdir(MARKER_DIR)}"


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=SQL_TEXT)
def test_fuzzed_sql_runs_nothing_and_fails_cleanly(con, text):
    _check(con, text)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=SQL_TEXT)
def test_fuzzed_sql_runs_nothing_many(con, text):
    _check(con, text)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_payload_in_every_skeleton(con, payload):
    for skeleton in SKELETONS:
        _check(con, skeleton.format(payload.format(m=MARKER)))
