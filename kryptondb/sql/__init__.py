"""Plain SQL (``SELECT``, ``WITH ... SELECT``) over KryptonDB's relations, run by embedded DuckDB.

The user's SQL text is only ever data: DuckDB parses it as one statement, and it is never pasted
into other SQL or into code. Two steps:

- ``relations(sql, known, text)`` (at bind time): DuckDB parses the statement; it must be one
  SELECT. Its syntax tree names the relations it reads, each resolved against the catalog, and the
  table and system functions it calls, each checked against the sandbox's rules (check.py).
- ``Sandbox.run(sql, tables, text)`` (at run time): a DuckDB connection with no file, network or
  extension access and locked settings sees only ``tables`` (Arrow, registered without a copy) and
  runs the statement under the limits of ``SqlLimits``.

Every failure is a ``KryptonError`` whose caret points into the whole statement ``text``
(errors.py). connect.py makes the locked-down DuckDB, check.py parses and checks, sandbox.py runs.
"""

from kryptondb.sql.check import HIDDEN_FUNCTIONS, HIDDEN_PREFIXES, TABLE_FUNCTIONS, relations
from kryptondb.sql.connect import SqlLimits, connect_duckdb
from kryptondb.sql.sandbox import Sandbox, default_sandbox

__all__ = ["HIDDEN_FUNCTIONS", "HIDDEN_PREFIXES", "TABLE_FUNCTIONS", "Sandbox", "SqlLimits",
           "connect_duckdb", "default_sandbox", "relations"]
