"""Parse a statement with DuckDB (one SELECT only) and check what it reads and calls: the
relations it names, resolved against the catalog, and the sandbox's rules for functions."""

from __future__ import annotations

import functools
import json
import os
import threading

from kryptondb.errors import SqlError, UnknownNameError
from kryptondb.sql.connect import FORKED, SqlLimits, connect_duckdb
from kryptondb.sql.errors import Where, translate

# What a statement may call besides KryptonDB's relations: table functions that make rows, not
# read them from elsewhere; DuckDB's own catalog and settings stay hidden.
TABLE_FUNCTIONS = ("generate_series", "range", "unnest")
HIDDEN_FUNCTIONS = frozenset({"current_setting", "json_execute_serialized_sql", "pg_sleep",
                              "query", "query_table", "sleep_ms"})
HIDDEN_PREFIXES = ("duckdb_", "pragma_")
_NO_LOCATION = 2**64 - 1  # DuckDB's "no position" in its JSON syntax tree


def relations(sql: str, known, text: str = "") -> list[str]:
    """The catalog relations (names from ``known``) that the one SELECT in ``sql`` reads.

    >>> relations("WITH t AS (SELECT * FROM Heat) SELECT * FROM t JOIN models USING (name)",
    ...           ["heat", "models", "views"])
    ['heat', 'models']
    """
    return checked(sql, list(known), Where(sql, text))


def checked(sql: str, known: list[str], where: Where) -> list[str]:
    """Parse ``sql`` (one SELECT only) and check what it reads and calls."""
    import duckdb  # ~60 ms to import: only SQL statements need it

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


def _syntax_tree(sql: str) -> dict | str:
    """DuckDB's syntax tree of the one SELECT in ``sql`` (JSON), or what is wrong with it.
    Bind and run parse the same text, so short statements' trees are kept for a while."""
    return _cached_tree(sql) if len(sql) <= 10_000 else _parse_tree(sql)


def _parse_tree(sql: str) -> dict | str:
    import duckdb  # ~60 ms to import: only SQL statements need it

    with _PARSER_LOCK:
        con = _parser()
        statements = con.extract_statements(sql)
        if len(statements) != 1:
            return f"one SQL statement per query, found {len(statements)}"
        if statements[0].type != duckdb.StatementType.SELECT:
            return f"only SELECT (or WITH ... SELECT) runs here, not {statements[0].type.name}"
        return json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])


_cached_tree = functools.lru_cache(maxsize=64)(_parse_tree)  # a parse is pure
_PARSER_LOCK = threading.Lock()


@functools.cache
def _parser():
    """The process's DuckDB for parsing (it runs nothing but json_serialize_sql)."""
    return connect_duckdb(SqlLimits(memory_mb=64, threads=1))


def _scoped_nodes(tree):
    """Every JSON object of DuckDB's syntax tree with the CTE names visible where it stands,
    without recursion (trees may be deep). DuckDB's scoping: a WITH's names are seen below it; a
    CTE's body sees only the CTEs written before it, and its own name only in the recursive part
    of a recursive CTE (elsewhere the name means a catalog table, as in ``WITH t AS (FROM t)``)."""
    stack = [(tree, frozenset())]
    while stack:
        item, seen = stack.pop()
        if isinstance(item, list):
            stack.extend((x, seen) for x in item)
        elif isinstance(item, dict):
            yield item, seen
            for e in (item.get("cte_map") or {}).get("map", ()):
                stack.append((e["value"], seen))
                seen = seen | {e["key"].lower()}
            recursive = item.get("type") == "RECURSIVE_CTE_NODE"
            for key, value in item.items():
                if key == "right" and recursive:
                    stack.append((value, seen | {item["cte_name"].lower()}))
                elif key != "cte_map":
                    stack.append((value, seen))


def _read_relations(tree, known: list[str], where: Where) -> list[str]:
    refs = []
    for n, ctes in _scoped_nodes(tree):
        kind = n.get("type")
        if kind == "BASE_TABLE":
            refs.append((n, ctes))
        elif kind == "TABLE_FUNCTION":
            _check_table_function(n, where)
        elif kind == "SHOW_REF" and n.get("query") is None:
            raise where.error(SqlError, "SHOW inside SQL is not available; use SHOW TABLES, "
                              "SHOW VIEWS ... as statements", *_loc(n))
        if n.get("class") == "FUNCTION":
            _check_function(n, where)
    used: dict[str, str] = {}
    for ref, ctes in refs:
        name = _resolve(ref, known, ctes, where)
        if name is not None and used.setdefault(name.lower(), name) != name:
            raise where.error(SqlError, f"relations {used[name.lower()]!r} and {name!r} differ "
                              "only in case, which SQL ignores; rename one", *_loc(ref))
    return sorted(used.values())


def _resolve(ref: dict, known: list[str], ctes: frozenset[str], where: Where) -> str | None:
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


def _check_table_function(ref: dict, where: Where) -> None:
    name = ref["function"]["function_name"].lower()
    if name not in TABLE_FUNCTIONS:
        raise where.error(SqlError, f"table function {name} is not available: SQL here reads "
                          f"only KryptonDB's relations (allowed: {', '.join(TABLE_FUNCTIONS)})",
                          *_loc(ref))


def _check_function(fn: dict, where: Where) -> None:
    name = fn["function_name"].lower()
    if name in HIDDEN_FUNCTIONS or name.startswith(HIDDEN_PREFIXES):
        raise where.error(SqlError, f"function {name} is not available: SQL here does not show "
                          "DuckDB's own settings, catalog or machine", *_loc(fn))


def _loc(node: dict) -> tuple[int | None, int | None]:
    pos = node.get("query_location", _NO_LOCATION)
    return (None, None) if pos == _NO_LOCATION else (pos, node.get("query_location_length"))


def _after_fork() -> None:
    """A forked child parses with a DuckDB of its own (the parent's is kept, never closed)."""
    global _PARSER_LOCK
    _PARSER_LOCK = threading.Lock()
    if _parser.cache_info().currsize:
        FORKED.append(_parser())
    _parser.cache_clear()
    _cached_tree.cache_clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
