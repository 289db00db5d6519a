"""What a database directory repairs on open, without a log.

Nothing needs rolling forward: a write puts its new data in a new file, and the atomic rename of
catalog.json is the one point of no return (layout.py). A writer that died, or a write that
failed, before that point left only files no entry names; one that died after it left the
previous version's file. Both are garbage: open removes them, with dead writers' temp files. A
statement that reported failure is therefore never rolled forward.

Only for version-1 databases, whose writers replaced a table's file in place before committing
the catalog, does open still adopt a file newer than its entry (its old data is gone either way):
each stored table carries its own catalog entry (name, kind, created, commit token, info) in its
Arrow schema metadata.

The repair runs only while it holds the writer lock (lock.py), taken without waiting: a live
writer's new file is not garbage, and a reader never waits for a writer.
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from pathlib import Path

import pyarrow as pa

from kryptondb.catalog.entries import TableEntry
from kryptondb.catalog.layout import DATA_DIRS, is_data_file, legacy_file
from kryptondb.catalog.lock import try_locked
from kryptondb.catalog.storage import clean_temp_files, read_arrow_footer, remove_quietly
from kryptondb.errors import StorageError

META_INFO = b"kryptondb"  # the caller's info, as JSON, in every stored table's schema metadata
META_ENTRY = b"kryptondb.entry"  # name, kind, created, token


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
    """(kind, name, entry, token, file) read from a version-1 ``file`` (replaced in place)
    when it is newer than the catalog's ``token``."""
    try:
        schema, rows = read_arrow_footer(file)
    except StorageError:
        return None  # reported, naming the file, when the table is read
    stamp = read_stamp(schema)
    if stamp is None or stamp["token"] == token or (stamp.get("name"), stamp.get("kind")) \
            != (name, kind):
        return None
    entry = TableEntry(name, kind, rows, tuple(schema.names), stamp["created"], stamp["info"])
    return kind, name, entry, stamp["token"], file


def remove_orphans(directory: Path, kind: str, owned: set[Path]) -> None:
    """Delete ``directory``'s data files of ``kind`` (layout.py) that are not in ``owned``."""
    for file in directory.iterdir() if directory.is_dir() else ():
        if is_data_file(file.name, kind) and file not in owned:
            remove_quietly(file)


def repair(db) -> None:
    """Remove what dead writers and failed writes left in ``db``'s directory, if no writer is
    at work now (a live writer's new file is not garbage, and opening never waits for one)."""
    if not os.access(db.path, os.W_OK):  # read-only: nothing we could repair
        return
    with try_locked(db.path) as free:
        if not free:
            return
        db._load()  # the catalog as of now, that no writer is changing
        with suppress(OSError):
            _clean(db)
        with suppress(OSError, StorageError):
            _roll_forward_legacy(db)


def _clean(db) -> None:
    """Remove dead writers' temp files and data files no entry names."""
    for kind, (sub, _) in DATA_DIRS.items():
        clean_temp_files(db.path / sub)
        owned = {f for name, e in db._entries[kind].items()
                 for f in db._owned_files(kind, name, e)}
        remove_orphans(db.path / sub, kind, owned)
    clean_temp_files(db.path)


def _roll_forward_legacy(db) -> None:
    """Version-1 writers replaced a table's file in place before committing the catalog:
    adopt such a file (its old data is gone). Token-named files are never rolled forward."""
    changes = [rolled_forward(kind, name, file, db._tokens[(kind, name)])
               for (kind, name), file in db._files.items()
               if file == legacy_file(db.path, kind, name)]
    if changes := [c for c in changes if c is not None]:
        db._commit(changes)
