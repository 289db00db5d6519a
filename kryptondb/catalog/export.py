"""Tables written to a user's file: ``COPY ... TO 'out.parquet' | 'out.csv' | 'out.json'``.

The target is checked before any work (``check_target``, called by the binder and again just
before writing): ``~`` is expanded, its folder must exist and be writable, and nothing but a
regular file may stand at the path: a directory, FIFO, socket or device is refused, and so is a
symbolic link (dangling or not), which would send the bytes somewhere the statement does not
name. The file is written the way the catalog writes its own (storage.atomic_write): into a temp
file beside it, fsynced, then renamed over it, so a write that fails leaves a file already
there as it was. Arrow writes every byte (pyarrow.parquet, pyarrow.csv, JSON lines through
Python's json): the SQL sandbox never touches the file system.

Parquet keeps the whole Arrow schema (its metadata, binary tensor columns): the table read back
equals the one written. CSV (with a header) and JSON (one object per line, DuckDB's default for
COPY TO json; NaN and infinities as null) hold text: binary columns are refused there, and
nested ones (lists, structs) in CSV.
"""

from __future__ import annotations

import json
import os
from typing import BinaryIO, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from kryptondb.catalog.storage import atomic_write
from kryptondb.errors import FileError, KryptonError
from kryptondb.files import user_path, writable_file

FORMATS = {"parquet": (".parquet", ".pq"), "csv": (".csv",),
           "json": (".json", ".ndjson", ".jsonl")}
CHOICES = "; ".join(f"{name} ({', '.join(ext)})" for name, ext in FORMATS.items())
WHAT = "COPY file"


def format_of(path: str, given: str | None = None) -> str | None:
    """The format named by ``given`` (FORMAT ...), else by the path's extension; None if it is
    none of FORMATS.

    >>> format_of("heat.PQ"), format_of("x.csv", "JSON"), format_of("x.txt")
    ('parquet', 'json', None)
    """
    if given is not None:
        return given.lower() if given.lower() in FORMATS else None
    ext = os.path.splitext(path)[1].lower()
    return next((name for name, exts in FORMATS.items() if ext in exts), None)


def check_target(path) -> str:
    """The absolute path COPY may write ``path`` to (``~`` expanded), else FileError naming
    what stands in the way (see the module docstring)."""
    full = os.path.abspath(os.path.expanduser(user_path(path, WHAT)))
    if os.path.islink(full):
        raise FileError(f"cannot write {WHAT} {full!r}: it is a symbolic link (to "
                        f"{os.readlink(full)!r}); COPY does not write through links: give the "
                        "file's own path")
    writable_file(full, WHAT)
    folder = os.path.dirname(full)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileError(f"cannot write {WHAT} {full!r}: folder {folder!r} is not writable")
    return full


def check_columns(schema: pa.Schema, fmt: str) -> None:
    """KryptonError naming the first column that ``fmt`` cannot hold (binary data in CSV or
    JSON, nested values in CSV), and what to do instead."""
    if fmt == "parquet":
        return
    for field in schema:
        if _holds_binary(field.type):
            raise KryptonError(
                f"column {field.name!r} holds binary data ({field.type}), which {fmt.upper()} "
                "cannot hold: COPY to Parquet ('.parquet' or (FORMAT parquet)) keeps it, or "
                f"leave the column out: COPY (SELECT ... FROM ...) TO ...")
    for field in schema:
        if fmt == "csv" and pa.types.is_nested(field.type):
            raise KryptonError(
                f"column {field.name!r} holds nested values ({field.type}), which CSV cannot "
                "hold: COPY to JSON or Parquet keeps them")


def _holds_binary(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _holds_binary(t.value_type)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) \
            or getattr(pa.types, "is_binary_view", lambda _: False)(t):
        return True
    return any(_holds_binary(t.field(i).type) for i in range(t.num_fields))


def write_table(table: pa.Table, path, fmt: str) -> str:
    """Write ``table`` to ``path`` as ``fmt`` (a key of FORMATS), all or nothing; the absolute
    path written. Every failure is a KryptonError, and leaves a file already there intact."""
    full = check_target(path)
    check_columns(table.schema, fmt)
    try:
        atomic_write(full, WRITERS[fmt](table))
    except OSError as exc:
        raise FileError(f"cannot write {WHAT} {full!r}: {exc.strerror or exc}; nothing was "
                        "written") from None
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise KryptonError(f"cannot write {WHAT} {full!r} as {fmt}: {exc}; nothing was "
                           "written") from None
    return full


def _parquet(table: pa.Table) -> Callable[[BinaryIO], None]:
    """List items keep their Arrow name ("item", not Parquet's "element"): reads back equal."""
    return lambda f: pq.write_table(table, f, use_compliant_nested_type=False)


def _csv(table: pa.Table) -> Callable[[BinaryIO], None]:
    return lambda f: pa_csv.write_csv(table, f)


def _json(table: pa.Table) -> Callable[[BinaryIO], None]:
    def write(f: BinaryIO) -> None:
        for batch in table.to_batches(max_chunksize=8192):
            for row in _finite(batch).to_pylist():
                f.write(json.dumps(row, ensure_ascii=False, default=_text).encode() + b"\n")

    return write


def _finite(batch: pa.RecordBatch) -> pa.RecordBatch:
    """NaN and infinities as nulls: JSON has no spelling for them."""
    columns = [pc.if_else(pc.is_finite(c), c, pa.scalar(None, c.type))
               if pa.types.is_floating(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _text(value) -> str:
    """Values json does not know (dates, times, decimals) as text: ISO dates, exact digits."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


WRITERS = {"parquet": _parquet, "csv": _csv, "json": _json}
