"""Run one checked SELECT on a cursor of the connection's DuckDB that sees only the tables it
reads, under the row and time limits (a watchdog thread interrupts it)."""

from __future__ import annotations

import functools
import os
import threading
import time
import warnings

import pyarrow as pa

from kryptondb.errors import KryptonError, SqlError
from kryptondb.sql.check import checked
from kryptondb.sql.connect import FORKED, SqlLimits, connect_duckdb
from kryptondb.sql.errors import Where, translate


class Sandbox:
    """One connection's DuckDB: created on first use, locked down; each statement runs on a cursor
    of its own that sees only the tables it reads, and is gone with them when it ends."""

    def __init__(self, limits: SqlLimits | None = None):
        self.limits = limits or SqlLimits()
        self._con, self._pid = None, os.getpid()
        self._lock = threading.Lock()

    def run(self, sql: str, tables: dict[str, pa.Table], text: str = "") -> pa.Table:
        """The result of the one SELECT ``sql`` over ``tables``; checked again before it runs."""
        where = Where(sql, text)
        checked(sql, list(tables), where)
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's DuckDB is not usable
                FORKED.append(self._con)
                self._con, self._pid = None, os.getpid()
            if self._con is None:
                self._con = connect_duckdb(self.limits)
            cur = self._con.cursor()  # its registered tables vanish when it closes
        try:
            return _plain_names(self._execute(cur, sql, tables, where))
        finally:
            cur.close()

    def _execute(self, cur, sql: str, tables: dict[str, pa.Table], where: Where) -> pa.Table:
        import duckdb  # ~60 ms to import: only SQL statements need it

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

    def _fetch(self, cur, sql: str, where: Where) -> pa.Table:
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
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            elif self._con is not None:
                FORKED.append(self._con)
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
            if self._thread is None or not self._thread.is_alive():  # none yet, or forked
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
                self._cond.wait(None if soonest is None else min(soonest - now, 3600.0))


_WATCHDOG = _Watchdog()


def _after_fork() -> None:
    global _WATCHDOG
    _WATCHDOG = _Watchdog()  # the parent's thread and lock are not the child's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


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
