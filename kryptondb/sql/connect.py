"""The embedded DuckDB SQL runs on: in memory, no file, network or extension access, settings
locked; and the limits of one statement."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

from kryptondb.errors import KryptonError

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
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise KryptonError(f"sql_{name} must be a positive integer, got {value!r}")
        t = self.timeout_s
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t < math.inf:
            raise KryptonError(f"sql_timeout_s must be a positive number of seconds, got {t!r}")


def connect_duckdb(limits: SqlLimits):
    """A fresh in-memory DuckDB connection, locked down (its settings cannot be changed later)."""
    import duckdb  # ~60 ms to import: only SQL statements need it

    config = {**_LOCKED, "memory_limit": f"{limits.memory_mb}MB", "threads": limits.threads,
              "lock_configuration": True}
    return duckdb.connect(":memory:", config=config)


FORKED: list = []  # DuckDB objects a forked child inherited; never closed there (it would crash)
