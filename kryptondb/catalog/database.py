"""The embedded database: a catalog of models, images, videos, tables and views.

In memory (``Database()``) or in a directory (``Database(path)``) laid out as::

    <dir>/catalog.json                  entries only (format, version, models, images, ...)
    <dir>/tables/<name>.<token>.arrow   Arrow IPC files, read through a memory map
    <dir>/views/<name>.<token>.arrow
    <dir>/models/<name>.<token>/<name>.onnx   self-contained copies of registered ONNX files
                                        (external data included): the directory can be moved
    <dir>/catalog.lock                  the writers' lock, naming its holder (lock.py)

Every change is all or nothing. A write puts new data in new files (layout.py) and then
replaces catalog.json atomically: that rename is the only point of no return. A write that fails
before it (disk full, file too large, read-only directory, ...) removes what it wrote and raises
StorageError saying that nothing was changed: every entry keeps its previous version, in this
object and after a reopen. After the rename the previous version's files are removed; a failure
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
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pyarrow as pa

from kryptondb.catalog import layout
from kryptondb.catalog.entries import (KINDS, MODEL_KINDS, NAMESPACES, RELATIONS, SECTIONS,
                                       MediaEntry, ModelEntry, TableEntry, catalog_from_json,
                                       catalog_to_json, check_info, check_kind, check_name,
                                       unknown_name)
from kryptondb.catalog.layout import check_empty
from kryptondb.catalog.lock import locked
from kryptondb.catalog.recovery import repair, stamp_table
from kryptondb.catalog.relations import catalog_relation
from kryptondb.catalog.storage import (atomic_write, atomic_write_bytes, commit_bytes,
                                       fsync_dir, read_arrow, remove_quietly, write_arrow)
from kryptondb.errors import (CatalogError, FileError, ImageError, StorageError,
                              UnknownNameError)
from kryptondb.files import check_regular, open_regular

CATALOG = "catalog.json"
_READ_RETRIES = 100  # a reader looks again while writers keep replacing what it reads
_KIND_OF_RELATION = {section: kind for kind, section in SECTIONS.items()}
T = TypeVar("T")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _stat_stamp(st: os.stat_result) -> tuple:
    """Changes whenever catalog.json is replaced (new inode) or rewritten."""
    return st.st_ino, st.st_mtime_ns, st.st_size


class Database:
    """The embedded database. ``path=None`` keeps everything in memory; a directory path stores
    it there (created if missing) and re-reads catalog.json whenever another Database object has
    committed to it. Writers in different processes take turns (catalog.lock), each waiting at
    most ``lock_timeout`` seconds (default: kryptondb.limits); readers never wait. One object is
    not thread-safe."""

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

    # -- changing --------------------------------------------------------------------------

    def register_model(self, name: str, source: str | os.PathLike, kind: str) -> ModelEntry:
        """Add or replace a model. An 'onnx' file is copied into an on-disk database, with its
        external data (see kryptondb.model.onnx_files.portable_copy)."""
        check_kind(kind, MODEL_KINDS, "model kind")
        check_name(name)
        if kind == "zoo" and (not isinstance(source, str) or not source):
            raise CatalogError(f"zoo model {name!r} needs a zoo name as source, got {source!r}")
        copy = None
        if kind == "onnx":
            source = Path(source).expanduser().absolute()
            check_regular(source, f"ONNX file (for model {name!r})")
            if self.path is not None:  # read and checked before taking the lock
                from kryptondb.model.onnx_files import portable_copy

                copy = portable_copy(source, f"{name}.onnx{layout.EXTERNAL_SUFFIX}")
        with self._writing(f"register model {name!r}"):
            self._check_free("model", name)
            old = self._owned_files("model", name, self._entries["model"].get(name))
            written: list[Path] = []
            try:
                if copy is not None:
                    source = self._store_onnx(name, *copy, written)
                entry = ModelEntry(name, str(source), kind)
                self._commit([("model", name, entry, None, None)])
            except BaseException:
                self._remove_files(written)
                raise
            self._remove_files(old)
        return entry

    def add_media(self, name: str, kind: str, path: str | os.PathLike,
                  info: dict | None = None) -> MediaEntry:
        """Add or replace an image or video. The file is referenced by absolute path, not copied."""
        check_kind(kind, ("image", "video"), "media kind")
        file = Path(path).expanduser().absolute()
        error = ImageError if kind == "image" else FileError
        if not file.exists():
            raise error(f"no {kind} file {file} (for {kind} {name!r})")
        check_regular(file, f"{kind} file (for {kind} {name!r})", error)
        entry = MediaEntry(check_name(name), kind, str(file), check_info(info, f"{kind} {name!r}"))
        with self._writing(f"add {kind} {name!r}"):
            self._check_free(kind, name)
            self._commit([(kind, name, entry, None, None)])
        return entry

    def put_table(self, name: str, table: pa.Table, kind: str = "table",
                  info: dict | None = None) -> TableEntry:
        """Store or atomically replace a table or view; ``info`` goes to the catalog entry and to
        the schema metadata under b'kryptondb'."""
        check_kind(kind, ("table", "view"), "table kind")
        if not isinstance(table, pa.Table):
            raise CatalogError(f"{kind} {name!r} must be a pyarrow.Table, got "
                               f"{type(table).__name__}")
        entry = TableEntry(check_name(name), kind, table.num_rows, tuple(table.column_names),
                           _now(), check_info(info, f"{kind} {name!r}"))
        token = layout.new_token()
        table = stamp_table(table, entry, token)
        with self._writing(f"store {kind} {name!r}"):
            self._check_free(kind, name)
            old = self._owned_files(kind, name, self._entries[kind].get(name))
            file = None
            try:
                if self.path is not None:
                    self._data_dir(kind)
                    file = layout.data_file(self.path, kind, name, token)
                    write_arrow(file, table)  # a new file: the stored version is untouched
                self._commit([(kind, name, entry, token, file)])
            except BaseException:
                self._remove_files([file])
                raise
            self._remove_files(old)
            self._tables.pop((kind, name), None)
        if self.path is None:
            self._tables[(kind, name)] = (token, table)
        return entry

    def drop(self, kind: str, name: str, if_exists: bool = False) -> bool:
        """Remove an entry (and the file the database owns for it); False if absent and
        ``if_exists``. Image and video files belong to the caller and are left alone."""
        check_kind(kind, KINDS)
        with self._writing(f"drop {kind} {name!r}"):
            entry = self._entries[kind].get(name)
            if entry is None:
                if if_exists:
                    return False
                raise self._unknown(kind, name)
            owned = self._owned_files(kind, name, entry)
            self._commit([(kind, name, None, None, None)])  # entry first: a crash leaves garbage
            self._tables.pop((kind, name), None)
            self._remove_files(owned)
        return True

    # -- helpers ---------------------------------------------------------------------------

    def _section(self, kind: str) -> dict:
        self._refresh()
        return dict(sorted(self._entries[kind].items()))

    def _data_dir(self, kind: str) -> Path:
        """The kind's folder, recreated if someone removed it."""
        directory = self.path / layout.DATA_DIRS[kind][0]
        if not directory.is_dir():
            directory.mkdir()
            fsync_dir(self.path)
        return directory

    def _owned_files(self, kind: str, name: str, entry) -> list[Path]:
        """What the database wrote for ``entry``: a file, or a model version's folder (nothing
        in memory, for referenced media or for zoo models)."""
        if self.path is None or entry is None or kind in ("image", "video"):
            return []
        if kind != "model":
            return [self._files[(kind, name)]]
        item = layout.stored_item(self.path, kind, Path(entry.source))
        return [item] if entry.kind == "onnx" and item is not None else []

    @staticmethod
    def _remove_files(files: list[Path | None]) -> None:
        """Best effort: leftovers are garbage the next open removes."""
        for file in files:
            remove_quietly(file)

    def _store_onnx(self, name: str, model: bytes, data: list[bytes], written: list) -> Path:
        """Write a model version's folder in models/ (appending it to ``written``)."""
        target = layout.data_file(self.path, "model", name, layout.new_token())
        self._data_dir("model")
        written.append(target.parent)
        target.parent.mkdir()
        fsync_dir(target.parent.parent)
        if data:
            atomic_write(layout.external_file(target), lambda f: [f.write(c) for c in data])
        atomic_write_bytes(target, model)
        return target

    def _check_free(self, kind: str, name: str) -> None:
        for other in NAMESPACES[kind]:
            if other != kind and name in self._entries[other]:
                raise CatalogError(f"name {name!r} is taken by a {other}: {kind}s and {other}s "
                                   f"share one namespace (drop the {other} first)")

    def _unknown(self, kind: str, name: str) -> UnknownNameError:
        return unknown_name(self._entries, kind, name)

    # -- the catalog file ------------------------------------------------------------------

    def _lock_timeout(self) -> float:
        from kryptondb.limits import current

        return current().lock_timeout if self.lock_timeout is None else self.lock_timeout

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Hold the writer lock and start from the latest catalog, so read-modify-write of
        catalog.json is atomic across processes. An OSError inside comes before the commit
        (after it, nothing raises): it becomes StorageError saying nothing was changed."""
        if self.path is None:
            yield
            return
        try:
            with locked(self.path, self._lock_timeout()):
                self._refresh()
                yield
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise StorageError(f"could not {what} in {self.path}: {exc.strerror or exc}{where}; "
                               "nothing was changed (every entry keeps its previous "
                               "version)") from exc

    def _commit(self, changes: list[tuple]) -> None:
        """Apply (kind, name, entry or None, token, file) changes: catalog.json first, then
        memory, so a failed write leaves this object agreeing with the disk."""
        entries = {kind: dict(section) for kind, section in self._entries.items()}
        tokens, files = dict(self._tokens), dict(self._files)
        for kind, name, entry, token, file in changes:
            tokens.pop((kind, name), None)
            files.pop((kind, name), None)
            if entry is None:
                entries[kind].pop(name, None)
                continue
            entries[kind][name] = entry
            if token is not None:
                tokens[(kind, name)], files[(kind, name)] = token, file
        if self.path is not None:
            self._write_catalog(entries, tokens, files)
        self._entries, self._tokens, self._files = entries, tokens, files

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
