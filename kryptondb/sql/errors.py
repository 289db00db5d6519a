"""DuckDB's errors as KryptonErrors: its message, and its byte position in the SQL turned into a
line and column of the whole statement."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from kryptondb.errors import KryptonError, QuerySyntaxError, SqlError
from kryptondb.lang.ast import Span
from kryptondb.sql.connect import SqlLimits


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
    message = re.sub(r"\s*Use SET \S+ to [^.]*\.", "", message)
    message = re.sub(r"Please try installing and loading the \w+ extension:[^;]*;[^;]*;",
                     "Extensions are not available here.", message)
    lines = [s.strip() for s in message.splitlines() if s.strip()]
    lines = [s for s in lines if not _HIDDEN_HINT.match(s)]
    if "Candidate functions:" in lines:
        at = lines.index("Candidate functions:") + 4
        lines = lines[:at] + ([f"(and {len(lines) - at} more)"] if len(lines) > at else [])
    return " ".join(lines) or "SQL error"


_HIDDEN_HINT = re.compile(r'Did you mean "(pg_|duckdb_|pragma_|information_schema|sqlite_)')
