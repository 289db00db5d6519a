"""Plain SQL (``SELECT``, ``WITH ... SELECT``) over KryptonDB's relations, run by embedded DuckDB.

The user's SQL text is only ever data: DuckDB parses it as one statement, and it is never pasted
into other SQL or into code. Two steps:

- ``relations(sql, known, text)`` (at bind time): DuckDB parses the statement; it must be one
  SELECT. Its syntax tree names the relations it reads, each resolved against the catalog, and the
  table and system functions it calls, each checked against the sandbox's rules below.
- ``Sandbox.run(sql, tables, text)`` (at run time): a DuckDB connection with no file, network or
  extension access and locked settings sees only ``tables`` (Arrow, registered without a copy) and
  runs the statement under the limits of ``SqlLimits``.

Every failure is a ``KryptonError`` whose caret points into the whole statement ``text``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass

import pyarrow as pa

from kryptondb.errors import KryptonError, QuerySyntaxError, SqlError, UnknownNameError

# What a statement may call besides KryptonDB's relations: table functions that make rows, not
# read them from elsewhere; DuckDB's own catalog and settings stay hidden.
TABLE_FUNCTIONS = ("generate_series", "range", "unnest")
HIDDEN_FUNCTIONS = frozenset({"current_setting", "json_execute_serialized_sql", "pg_sleep",
                              "query", "query_table", "sleep_ms"})
HIDDEN_PREFIXES = ("duckdb_", "pragma_")
_NO_LOCATION = 2**64 - 1  # DuckDB's "no position" in its JSON syntax tree

_LOCKED = {
    "enable_external_access": False,  # no files, network, COPY, ATTACH, INSTALL, LOAD, secrets
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "python_enable_replacements": False,  # a table name never finds a Python variable
    "temp_directory": "",  # nothing spills to disk
    "errors_as_json": True,  # error positions as data, not as a drawing to parse
}


@dataclass(frozen=True)
class SqlLimits:
    """What one SQL statement may use: result rows, seconds, DuckDB memory (MB) and threads."""

    max_rows: int = 1_000_000
    timeout_s: float = 30.0
    memory_mb: int = 1024
    threads: int = min(4, os.cpu_count() or 1)

    def __post_init__(self):
        for name in ("max_rows", "memory_mb", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise KryptonError(f"sql_{name} must be a positive integer, got {value!r}")
        t = self.timeout_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < math.inf:
            raise KryptonError(f"sql_timeout_s must be a positive number of seconds, got {t!r}")


def connect_duckdb(limits: SqlLimits):
    """A fresh in-memory DuckDB connection, locked down (its settings cannot be changed later)."""
    import duckdb

    config = {**_LOCKED, "memory_limit": f"{limits.memory_mb}MB", "threads": limits.threads,
              "lock_configuration": True}
    return duckdb.connect(":memory:", config=config)


# -- checking a statement ---------------------------------------------------------------------


def relations(sql: str, known, text: str = "") -> list[str]:
    """The catalog relations (names from ``known``) that the one SELECT in ``sql`` reads.

    >>> relations("WITH t AS (SELECT * FROM Heat) SELECT * FROM t JOIN models USING (name)",
    ...           ["heat", "models", "views"])
    ['heat', 'models']
    """
    return _checked(sql, list(known), Where(sql, text))


def _checked(sql: str, known: list[str], where: "Where") -> list[str]:
    """Parse ``sql`` (one SELECT only) and check what it reads and calls."""
    import duckdb

    try:
        tree = _syntax_tree(sql)
    except duckdb.Error as exc:
        raise translate(exc, where) from None
    except RecursionError:
        raise where.error(SqlError, "the statement nests too deeply") from None
    if isinstance(tree, str):
        raise where.error(SqlError, tree)
    if tree.get("error"):
        raise translate(tree, where)
    return _read_relations(tree, known, where)


@functools.lru_cache(maxsize=64)  # bind and run parse the same text; a parse is pure
def _syntax_tree(sql: str) -> dict | str:
    """DuckDB's syntax tree of the one SELECT in ``sql`` (JSON), or what is wrong with it."""
    import duckdb

    with _PARSER_LOCK:
        con = _parser()
        statements = con.extract_statements(sql)
        if len(statements) != 1:
            return f"one SQL statement per query, found {len(statements)}"
        if statements[0].type != duckdb.StatementType.SELECT:
            return f"only SELECT (or WITH ... SELECT) runs here, not {statements[0].type.name}"
        return json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])


_PARSER_LOCK = threading.Lock()


@functools.cache
def _parser():
    """The process's DuckDB for parsing (it runs nothing but json_serialize_sql)."""
    return connect_duckdb(SqlLimits(memory_mb=64, threads=1))


def _nodes(tree):
    """Every JSON object of DuckDB's syntax tree, without recursion (trees may be deep)."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _read_relations(tree, known: list[str], where: "Where") -> list[str]:
    ctes, refs = set(), []
    for n in _nodes(tree):
        ctes.update(e["key"].lower() for e in (n.get("cte_map") or {}).get("map", ()))
        kind = n.get("type")
        if kind == "BASE_TABLE":
            refs.append(n)
        elif kind == "TABLE_FUNCTION":
            _check_table_function(n, where)
        elif kind == "SHOW_REF" and n.get("query") is None:
            raise where.error(SqlError, "SHOW inside SQL is not available; use SHOW TABLES, "
                              "SHOW VIEWS ... as statements", *_loc(n))
        if n.get("class") == "FUNCTION":
            _check_function(n, where)
    used: dict[str, str] = {}
    for ref in refs:
        name = _resolve(ref, known, ctes, where)
        if name is not None and used.setdefault(name.lower(), name) != name:
            raise where.error(SqlError, f"relations {used[name.lower()]!r} and {name!r} differ "
                              "only in case, which SQL ignores; rename one", *_loc(ref))
    return sorted(used.values())


def _resolve(ref: dict, known: list[str], ctes: set[str], where: "Where") -> str | None:
    """The catalog relation a table reference names (None for a CTE's own name)."""
    name = ref["table_name"]
    if ref.get("schema_name") or ref.get("catalog_name"):
        qualified = ".".join(p for p in (ref.get("catalog_name"), ref.get("schema_name"), name)
                             if p)
        raise where.error(SqlError, f"{qualified}: SQL here sees KryptonDB's relations only, by "
                          "plain name (result tables, views, models, images, videos, tables)",
                          *_loc(ref))
    if name in known:
        return name
    folded = [k for k in known if k.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    if len(folded) > 1:
        raise where.error(SqlError, f"{name!r} matches {', '.join(map(repr, folded))}, which "
                          "differ only in case; SQL ignores case, so rename one", *_loc(ref))
    if name.lower() in ctes:
        return None
    raise UnknownNameError("table", name, known, where.text_or_sql, where.span(*_loc(ref)))


def _check_table_function(ref: dict, where: "Where") -> None:
    name = ref["function"]["function_name"].lower()
    if name not in TABLE_FUNCTIONS:
        raise where.error(SqlError, f"table function {name} is not available: SQL here reads "
                          f"only KryptonDB's relations (allowed: {', '.join(TABLE_FUNCTIONS)})",
                          *_loc(ref))


def _check_function(fn: dict, where: "Where") -> None:
    name = fn["function_name"].lower()
    if name in HIDDEN_FUNCTIONS or name.startswith(HIDDEN_PREFIXES):
        raise where.error(SqlError, f"function {name} is not available: SQL here does not show "
                          "DuckDB's own settings, catalog or machine", *_loc(fn))


def _loc(node: dict) -> tuple[int | None, int | None]:
    pos = node.get("query_location", _NO_LOCATION)
    return (None, None) if pos == _NO_LOCATION else (pos, node.get("query_location_length"))


# -- running a statement ----------------------------------------------------------------------


class Sandbox:
    """One connection's DuckDB: created on first use, locked down; each statement runs on a cursor
    of its own that sees only the tables it reads, and is gone with them when it ends."""

    def __init__(self, limits: SqlLimits | None = None):
        self.limits = limits or SqlLimits()
        self._con = None
        self._lock = threading.Lock()

    def run(self, sql: str, tables: dict[str, pa.Table], text: str = "") -> pa.Table:
        """The result of the one SELECT ``sql`` over ``tables``; checked again before it runs."""
        where = Where(sql, text)
        _checked(sql, list(tables), where)
        with self._lock:
            if self._con is None:
                self._con = connect_duckdb(self.limits)
            cur = self._con.cursor()  # its registered tables vanish when it closes
        try:
            return _plain_names(self._execute(cur, sql, tables, where))
        finally:
            cur.close()

    def _execute(self, cur, sql: str, tables: dict[str, pa.Table], where: "Where") -> pa.Table:
        import duckdb

        fired = _WATCHDOG.arm(cur, self.limits.timeout_s)
        try:
            for name, table in tables.items():
                cur.register(name, table)  # a view over the Arrow data, not a copy
            return self._fetch(cur, sql, where)
        except Exception as exc:  # DuckDB's errors, also when they arrive through Arrow
            if fired.is_set():
                raise where.error(SqlError, f"stopped after {self.limits.timeout_s:g} s, the "
                                  "time limit (kryptondb.connect(sql_timeout_s=...))") from None
            if isinstance(exc, duckdb.InterruptException) or str(exc) == "Query interrupted":
                raise KeyboardInterrupt from None  # Ctrl-C, which DuckDB turned into an error
            if isinstance(exc, KryptonError):
                raise
            raise translate(exc, where, self.limits) from None
        finally:
            _WATCHDOG.disarm(fired)

    def _fetch(self, cur, sql: str, where: "Where") -> pa.Table:
        with warnings.catch_warnings():  # execute(), not sql(): only its errors have positions
            warnings.filterwarnings("ignore", "Arrow output on a DB-API result")
            reader = cur.execute(sql).to_arrow_reader(min(self.limits.max_rows + 1, 1 << 17))
        try:
            batches, rows = [], 0
            for batch in reader:  # streamed: a huge result stops at the limit
                rows += batch.num_rows
                if rows > self.limits.max_rows:
                    raise where.error(SqlError, f"the result has more than "
                                      f"{self.limits.max_rows:,} rows, the limit; add a LIMIT "
                                      "(or kryptondb.connect(sql_max_rows=...))")
                batches.append(batch)
            return pa.Table.from_batches(batches, reader.schema)
        finally:
            reader.close()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


@functools.cache
def default_sandbox() -> Sandbox:
    """The sandbox, with default limits, of statements run without a connection's own."""
    return Sandbox()


class _Watchdog:
    """One thread for the process that interrupts statements running past their deadline."""

    def __init__(self):
        self._cond = threading.Condition()
        self._jobs: dict[threading.Event, tuple[float, object]] = {}
        self._thread = None

    def arm(self, cur, seconds: float) -> threading.Event:
        """Interrupt ``cur`` in ``seconds`` unless disarmed first; the event says it fired."""
        fired = threading.Event()
        with self._cond:
            self._jobs[fired] = (time.monotonic() + seconds, cur)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="kryptondb-sql-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return fired

    def disarm(self, fired: threading.Event) -> None:
        with self._cond:
            self._jobs.pop(fired, None)

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for fired, (deadline, cur) in list(self._jobs.items()):
                    if deadline <= now:
                        del self._jobs[fired]
                        fired.set()
                        cur.interrupt()
                soonest = min((d for d, _ in self._jobs.values()), default=None)
                self._cond.wait(None if soonest is None else soonest - now)


_WATCHDOG = _Watchdog()


def _plain_names(table: pa.Table) -> pa.Table:
    """Distinct column names, DuckDB's way (a second ``x`` becomes ``x_1``, or ``x_2`` if ``x_1``
    is taken; case is ignored as in SQL), and HUGEINT sums as int64 where they fit."""
    names, seen = [], set()
    for name in table.column_names:
        new, k = name, 0
        while new.lower() in seen:
            k += 1
            new = f"{name}_{k}"
        seen.add(new.lower())
        names.append(new)
    if names != table.column_names:
        table = table.rename_columns(names)
    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type) and (field.type.precision, field.type.scale) == (38, 0):
            try:
                table = table.set_column(i, field.name, table.column(i).cast(pa.int64()))
            except pa.ArrowInvalid:  # does not fit: keep the decimal
                pass
    return table


# -- errors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """Where the SQL ``sql`` sits in the whole statement ``text`` (EXPLAIN PLAN FOR ..., a line
    of a script): turns DuckDB's byte positions in ``sql`` into line and column of ``text``."""

    sql: str
    text: str = ""

    @property
    def text_or_sql(self) -> str:
        return self.text if self.sql and self.sql in self.text else self.sql

    def span(self, pos: int | None = None, length: int | None = None):
        """The Span of bytes [pos, pos + length) of ``sql``; no ``pos``: its first line."""
        from kryptondb.lang.ast import Span

        raw = self.sql.encode()
        start = len(raw[:pos].decode(errors="ignore")) if pos is not None else 0
        text = self.text_or_sql
        at = max(text.rfind(self.sql), 0) + start
        line_end = text.find("\n", at)
        line_end = len(text) if line_end < 0 else line_end
        width = 1 if pos is not None else line_end - at
        if pos is not None and length:
            width = len(raw[pos:pos + length].decode(errors="ignore"))
        width = max(1, min(width, line_end - at))
        return Span(text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at), width, at)

    def error(self, cls, message: str, pos: int | None = None, length: int | None = None):
        s = self.span(pos, length)
        return cls(f"SQL: {message}", self.text_or_sql, s.line, s.column, s.length)


def translate(exc, where: Where, limits: SqlLimits | None = None) -> KryptonError:
    """A DuckDB error (an exception, or the error object of ``json_serialize_sql``) as a
    KryptonError with DuckDB's message and position."""
    info = exc if isinstance(exc, dict) else _error_info(str(exc))
    kind = info.get("exception_type") or info.get("error_type", "")
    message = _plain(info.get("exception_message") or info.get("error_message") or str(exc))
    if kind == "Out of Memory":
        memory = limits.memory_mb if limits else SqlLimits().memory_mb
        message = (f"ran out of memory (the limit is {memory} MB; "
                   "kryptondb.connect(sql_memory_mb=...))")
    pos, length = None, None
    if "location" in info:
        pos, length = json.loads(info["location"])
    elif "position" in info:
        pos = int(info["position"])
    cls = QuerySyntaxError if kind.lower() in ("parser", "syntax") else SqlError
    return where.error(cls, message, pos, length)


def _error_info(message: str) -> dict:
    """DuckDB's error JSON ('Binder Error: {"exception_type": ...}'), or just the message."""
    at = message.find('{"exception_type"')
    if at >= 0:
        try:
            return json.loads(message[at:])
        except ValueError:
            pass
    return {"exception_message": message}


def _plain(message: str) -> str:
    """DuckDB's message on one line, without advice the sandbox does not allow (SET ...), hints
    at DuckDB's own catalog, or more than three candidate functions."""
    message = re.sub(r",? or SET \w+\s*=\s*\w+ to [^.]*\.", ".", message)
    message = re.sub(r'\s*Use "SET [^"]*"[^.]*\.', "", message)
    lines = [s.strip() for s in message.splitlines() if s.strip()]
    lines = [s for s in lines if not _HIDDEN_HINT.match(s)]
    if "Candidate functions:" in lines:
        at = lines.index("Candidate functions:") + 4
        lines = lines[:at] + ([f"(and {len(lines) - at} more)"] if len(lines) > at else [])
    return " ".join(lines) or "SQL error"


_HIDDEN_HINT = re.compile(r'Did you mean "(pg_|duckdb_|pragma_|information_schema|sqlite_)')
