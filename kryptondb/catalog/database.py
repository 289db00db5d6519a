"""The embedded database: a catalog of models, images, videos, tables and views.

In memory (``Database()``) or in a directory (``Database(path)``) laid out as::

    <dir>/catalog.json                  entries only (format, version, models, images, ...)
    <dir>/tables/<name>.<token>.arrow   Arrow IPC files, read through a memory map
    <dir>/views/<name>.<token>.arrow
    <dir>/models/<name>.<token>/<name>.onnx   self-contained copies of registered ONNX files
                                        (external data included): the directory can be moved
    <dir>/catalog.lock                  the writers' lock, naming its holder (lock.py)

Every change (writes.py) is all or nothing. A write puts new data in new files (layout.py) and
then replaces catalog.json atomically: that rename is the only point of no return. A write that
fails before it (disk full, file too large, read-only directory, ...) removes what it wrote and
raises StorageError saying that nothing was changed: every entry keeps its previous version, in
this object and after a reopen. After the rename the previous version's files are removed; a failure
there only leaves garbage, which the next open removes (recovery.py), as it removes what a
crashed writer left. A drop removes the entry before the file, likewise.

>>> import pyarrow as pa
>>> db = Database()
>>> db.put_table("scores", pa.table({"x": [1.0, 2.0]}), info={"model": "resnet18"}).rows
2
>>> db.names("table"), db.get_table("scores")["x"].to_pylist()
(['scores'], [1.0, 2.0])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

import pyarrow as pa

from kryptondb.catalog import layout
from kryptondb.catalog.entries import (KINDS, RELATIONS, SECTIONS, MediaEntry, ModelEntry,
                                       TableEntry, catalog_from_json, catalog_to_json, check_kind,
                                       unknown_name)
from kryptondb.catalog.layout import check_empty
from kryptondb.catalog.lock import locked
from kryptondb.catalog.recovery import repair
from kryptondb.catalog.relations import catalog_relation
from kryptondb.catalog.storage import commit_bytes, fsync_dir, read_arrow
from kryptondb.catalog.writes import Writes
from kryptondb.errors import FileError, StorageError, UnknownNameError
from kryptondb.files import open_regular

CATALOG = "catalog.json"
_READ_RETRIES = 100  # a reader looks again while writers keep replacing what it reads
_KIND_OF_RELATION = {section: kind for kind, section in SECTIONS.items()}
T = TypeVar("T")


def _stat_stamp(st: os.stat_result) -> tuple:
    """Changes whenever catalog.json is replaced (new inode) or rewritten."""
    return st.st_ino, st.st_mtime_ns, st.st_size


class Database(Writes):
    """The embedded database. ``path=None`` keeps everything in memory; a directory path stores
    it there (created if missing) and re-reads catalog.json whenever another Database object has
    committed to it. Writers in different processes take turns (catalog.lock), each waiting at
    most ``lock_timeout`` seconds (default: kryptondb.limits); readers never wait. One object is
    not thread-safe. Reading is here; changing, in its base class Writes (writes.py)."""

    def __init__(self, path: str | os.PathLike | None = None,
                 lock_timeout: float | None = None):
        self.path = None if path is None else Path(path).expanduser().absolute()
        self.lock_timeout = lock_timeout
        self._entries: dict[str, dict] = {kind: {} for kind in KINDS}
        self._tokens: dict[tuple[str, str], str] = {}  # (kind, name) -> commit id of a table
        self._files: dict[tuple[str, str], Path] = {}  # (kind, name) -> a table's data file
        self._tables: dict[tuple[str, str], tuple[str, pa.Table]] = {}  # cache, or the store
        self._stamp = None
        if self.path is not None:
            self._open()

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, **options) -> Database:
        """Same as ``Database(path)``: open (and repair after a crash) or create a database."""
        return cls(path, **options)

    def __repr__(self) -> str:
        where = "memory" if self.path is None else str(self.path)
        counts = ", ".join(f"{len(self._entries[k])} {SECTIONS[k]}" for k in KINDS)
        return f"<Database {where}: {counts}>"

    def close(self) -> None:
        """Drop cached tables (and with them their memory maps, once no one else holds them)."""
        if self.path is not None:
            self._tables.clear()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def models(self) -> dict[str, ModelEntry]:
        return self._section("model")

    def media(self, kind: str) -> dict[str, MediaEntry]:
        return self._section(check_kind(kind, ("image", "video"), "media kind"))

    def tables(self, kind: str = "table") -> dict[str, TableEntry]:
        return self._section(check_kind(kind, ("table", "view"), "table kind"))

    def names(self, kind: str) -> list[str]:
        return list(self._section(check_kind(kind, KINDS)))

    def lookup(self, kind: str, name: str) -> ModelEntry | MediaEntry | TableEntry:
        """The entry, or UnknownNameError listing the known names (with a hint for near misses)."""
        self._refresh()
        check_kind(kind, KINDS)
        try:
            return self._entries[kind][name]
        except KeyError:
            raise self._unknown(kind, name) from None

    def version(self) -> object:
        """What changes whenever any process commits to this database (None in memory)."""
        self._refresh()
        return self._stamp

    def get_table(self, name: str, kind: str = "table") -> pa.Table:
        """The stored table (zero-copy from its memory-mapped file; read once, then cached)."""
        check_kind(kind, ("table", "view"), "table kind")
        self.lookup(kind, name)
        key = (kind, name)
        cached = self._tables.get(key)
        if cached is not None and cached[0] == self._tokens[key]:
            return cached[1]

        def read() -> pa.Table:
            self.lookup(kind, name)  # the latest entry (or UnknownNameError: dropped meanwhile)
            return read_arrow(self._files[key])

        table = self.read_latest(read, f"{kind} {name!r}")
        self._tables[key] = (self._tokens[key], table)
        return table

    def read_latest(self, read: Callable[[], T], what: str) -> T:
        """``read()``, run again while it fails with a FileError because another process
        committed a newer version meanwhile (a writer removes the files of the version it
        replaced, after its commit); a failure with no newer commit is raised as it is."""
        for _ in range(_READ_RETRIES):
            version = self.version()
            try:
                return read()
            except FileError:
                if self.version() == version:  # nothing new: the file is really gone or bad
                    raise
        raise StorageError(f"{what} in {self.path} was replaced {_READ_RETRIES} times while it "
                           "was being read; try again")

    def file_of(self, kind: str, name: str) -> Path | None:
        """The data file the database holds for an entry (None in memory, and for images,
        videos and zoo models, whose files are not the database's)."""
        entry = self.lookup(kind, name)
        if not self._owned_files(kind, name, entry):
            return None
        return Path(entry.source) if kind == "model" else self._files[(kind, name)]

    def relation(self, kind: str) -> pa.Table:
        """The catalog section ``kind`` (models, images, videos, tables, views) as a table."""
        if kind not in RELATIONS:
            raise UnknownNameError("catalog relation", kind, RELATIONS)
        return catalog_relation(kind, self._section(_KIND_OF_RELATION[kind]))

    # -- helpers ---------------------------------------------------------------------------

    def _section(self, kind: str) -> dict:
        self._refresh()
        return dict(sorted(self._entries[kind].items()))

    def _owned_files(self, kind: str, name: str, entry) -> list[Path]:
        """What the database wrote for ``entry``: a file, or a model version's folder (nothing
        in memory, for referenced media or for zoo models)."""
        if self.path is None or entry is None or kind in ("image", "video"):
            return []
        if kind != "model":
            return [self._files[(kind, name)]]
        item = layout.stored_item(self.path, kind, Path(entry.source))
        return [item] if entry.kind == "onnx" and item is not None else []

    def _unknown(self, kind: str, name: str) -> UnknownNameError:
        return unknown_name(self._entries, kind, name)

    # -- the catalog file ------------------------------------------------------------------

    def _write_catalog(self, entries: dict, tokens: dict, files: dict) -> None:
        data = catalog_to_json(entries, tokens, files, self.path)
        self._stamp = _stat_stamp(commit_bytes(self.path / CATALOG, data))

    def _refresh(self) -> None:
        """Re-read catalog.json if another Database object replaced it since we last looked."""
        if self.path is None:
            return
        try:
            stamp = _stat_stamp(os.stat(self.path / CATALOG))
        except FileNotFoundError:
            raise StorageError(f"{self.path / CATALOG} is gone; was the database "
                               "directory removed?") from None
        except OSError as exc:
            raise StorageError(f"cannot read {self.path / CATALOG}: {exc.strerror}") from None
        if stamp != self._stamp:
            self._load()

    def _load(self) -> None:
        catalog = self.path / CATALOG
        with open_regular(catalog, "catalog", StorageError) as f:
            stamp, data = _stat_stamp(os.fstat(f.fileno())), f.read()
        where = f"{catalog} (nothing was changed; fix or restore this file)"
        self._entries, self._tokens, self._files = catalog_from_json(data, self.path, where)
        self._stamp = stamp

    # -- opening and repair ----------------------------------------------------------------

    def _open(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            what = "a file" if self.path.is_file() else "a special file (FIFO, device, socket)"
            raise StorageError(f"{self.path} is {what}, not a KryptonDB database directory")
        if not (self.path / CATALOG).exists():
            self._create()
        self._load()  # no lock: catalog.json is replaced atomically; raises if it is bad
        repair(self)

    def _create(self) -> None:
        """A fresh database; refuses a non-empty directory so we never adopt someone's files."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if (self.path / CATALOG).exists():  # another process created it meanwhile
                return
            check_empty(self.path)
            with locked(self.path, self._lock_timeout()):
                if (self.path / CATALOG).exists():
                    return
                check_empty(self.path)
                self._write_catalog(self._entries, self._tokens, self._files)  # marks it ours
                for sub, _ in layout.DATA_DIRS.values():
                    (self.path / sub).mkdir(exist_ok=True)
                fsync_dir(self.path)
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise StorageError(f"cannot create a database in {self.path}: "
                               f"{exc.strerror or exc}") from exc
