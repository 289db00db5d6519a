"""What lets a database directory repair itself after a crash, without a log.

Each stored table carries its own catalog entry (name, kind, created, a random commit token and
the caller's info) in its Arrow schema metadata. When a process dies after a replaced table's new
file landed but before catalog.json was rewritten, the tokens disagree and open rolls the entry
forward from the file. A file that no entry names (a create or drop cut short) is garbage.

Writers, and the repair on open, hold an exclusive lock on ``<dir>/catalog.lock`` so that one
process's repair never mistakes another's write in progress for garbage, and so read-modify-write
of catalog.json is atomic across processes. The kernel drops the lock when a holder dies.
"""

from __future__ import annotations

import json
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from kryptondb.catalog.entries import TableEntry, is_valid_name
from kryptondb.catalog.storage import read_arrow_footer
from kryptondb.errors import StorageError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per database directory
    fcntl = None

LOCK = "catalog.lock"
META_INFO = b"kryptondb"  # the caller's info, as JSON, in every stored table's schema metadata
META_ENTRY = b"kryptondb.entry"  # name, kind, created, token


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold the database's writer lock (blocking until other processes' writes finish)."""
    with open(root / LOCK, "ab") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def stamp_table(table: pa.Table, entry: TableEntry, token: str) -> pa.Table:
    """The table with ``entry`` written into its schema metadata (other keys are kept)."""
    meta = dict(table.schema.metadata or {})
    meta[META_INFO] = json.dumps(entry.info).encode()
    meta[META_ENTRY] = json.dumps({"name": entry.name, "kind": entry.kind,
                                   "created": entry.created, "token": token}).encode()
    return table.replace_schema_metadata(meta)


def read_stamp(schema: pa.Schema) -> dict | None:
    """What stamp_table wrote (name, kind, created, token, info), or None if absent or bad."""
    meta = schema.metadata or {}
    try:
        stamp, info = json.loads(meta[META_ENTRY]), json.loads(meta.get(META_INFO, b"{}"))
        stamp["token"], stamp["created"] = str(stamp["token"]), str(stamp["created"])
    except (KeyError, TypeError, ValueError):
        return None
    return {**stamp, "info": info} if isinstance(info, dict) else None


def rolled_forward(kind: str, name: str, file: Path, token: str | None) -> tuple | None:
    """(kind, name, entry, token) read from ``file`` when it is newer than catalog ``token``."""
    try:
        schema, rows = read_arrow_footer(file)
    except StorageError:
        return None  # reported, naming the file, when the table is read
    stamp = read_stamp(schema)
    if stamp is None or stamp["token"] == token or (stamp.get("name"), stamp.get("kind")) \
            != (name, kind):
        return None
    entry = TableEntry(name, kind, rows, tuple(schema.names), stamp["created"], stamp["info"])
    return kind, name, entry, stamp["token"]


def remove_orphans(directory: Path, ext: str, owned: set[Path]) -> list[Path]:
    """Delete ``directory``'s data files (``<valid name><ext>``) that are not in ``owned``."""
    removed = []
    files = directory.iterdir() if directory.is_dir() else ()
    for file in files:
        if file.suffix == ext and is_valid_name(file.stem) and file not in owned:
            with suppress(OSError):  # best effort: a leftover is harmless
                file.unlink()
                removed.append(file)
    return removed
