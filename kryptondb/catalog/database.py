"""The embedded database: a catalog of models, images, videos, tables and views.

In memory (``Database()``) or in a directory (``Database(path)``) laid out as::

    <dir>/catalog.json          entries only (format, version, models, images, videos, ...)
    <dir>/tables/<name>.arrow   Arrow IPC files, read through a memory map
    <dir>/views/<name>.arrow
    <dir>/models/<name>.onnx    copies of registered ONNX files: the directory is self-contained
    <dir>/catalog.lock          writers' advisory lock (see recovery.py)

Crash safety comes from ordering, not from a log: a data file is written whole (temp + fsync +
rename) before the catalog.json that refers to it, and a drop removes the entry before the file.
After a crash the catalog therefore never names a partial file. Leftovers are repaired on open
(recovery.py): dead writers' temp files and files no entry names are removed, and a replaced table
whose new file landed but whose catalog write did not is rolled forward from the file's metadata.

>>> import pyarrow as pa
>>> db = Database()
>>> db.put_table("scores", pa.table({"x": [1.0, 2.0]}), info={"model": "resnet18"}).rows
2
>>> db.names("table"), db.get_table("scores")["x"].to_pylist()
(['scores'], [1.0, 2.0])
"""

from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from kryptondb.catalog.entries import (KINDS, MODEL_KINDS, NAMESPACES, RELATIONS, SECTIONS,
                                       MediaEntry, ModelEntry, TableEntry, catalog_from_json,
                                       catalog_to_json, check_info, check_kind, check_name)
from kryptondb.catalog.recovery import locked, remove_orphans, rolled_forward, stamp_table
from kryptondb.catalog.relations import catalog_relation
from kryptondb.catalog.storage import (atomic_write, atomic_write_bytes, clean_temp_files,
                                       fsync_dir, is_temp_name, read_arrow, write_arrow)
from kryptondb.errors import (CatalogError, FileError, ImageError, StorageError,
                              UnknownNameError)

CATALOG = "catalog.json"
DATA_DIRS = {"table": ("tables", ".arrow"), "view": ("views", ".arrow"),
             "model": ("models", ".onnx")}
_KIND_OF_RELATION = {section: kind for kind, section in SECTIONS.items()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _stat_stamp(st: os.stat_result) -> tuple:
    """Changes whenever catalog.json is replaced (new inode) or rewritten."""
    return st.st_ino, st.st_mtime_ns, st.st_size


class Database:
    """The embedded database. ``path=None`` keeps everything in memory; a directory path stores
    it there (created if missing) and re-reads catalog.json whenever another Database object has
    committed to it. Writers in different processes take turns (catalog.lock); one object is
    not thread-safe."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = None if path is None else Path(path).expanduser().absolute()
        self._entries: dict[str, dict] = {kind: {} for kind in KINDS}
        self._tokens: dict[tuple[str, str], str] = {}  # (kind, name) -> commit id of a table
        self._tables: dict[tuple[str, str], tuple[str, pa.Table]] = {}  # cache, or the store
        self._stamp = None
        if self.path is not None:
            self._open()

    @classmethod
    def open(cls, path: str | os.PathLike | None = None) -> Database:
        """Same as ``Database(path)``: open (and repair after a crash) or create a database."""
        return cls(path)

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

    def get_table(self, name: str, kind: str = "table") -> pa.Table:
        """The stored table (zero-copy from its memory-mapped file; read once, then cached)."""
        check_kind(kind, ("table", "view"), "table kind")
        self.lookup(kind, name)
        token = self._tokens[(kind, name)]
        cached = self._tables.get((kind, name))
        if cached is not None and cached[0] == token:
            return cached[1]
        table = read_arrow(self._file(kind, name))
        self._tables[(kind, name)] = (token, table)
        return table

    def relation(self, kind: str) -> pa.Table:
        """The catalog section ``kind`` (models, images, videos, tables, views) as a table."""
        if kind not in RELATIONS:
            raise UnknownNameError("catalog relation", kind, RELATIONS)
        return catalog_relation(kind, self._section(_KIND_OF_RELATION[kind]))

    # -- changing --------------------------------------------------------------------------

    def register_model(self, name: str, source: str | os.PathLike, kind: str) -> ModelEntry:
        """Add or replace a model. An 'onnx' file is copied into an on-disk database."""
        check_kind(kind, MODEL_KINDS, "model kind")
        check_name(name)
        if kind == "zoo" and (not isinstance(source, str) or not source):
            raise CatalogError(f"zoo model {name!r} needs a zoo name as source, got {source!r}")
        with self._writing():
            self._check_free("model", name)
            if kind == "onnx":
                source = str(self._onnx_source(name, Path(source)))
            old, entry = self._entries["model"].get(name), ModelEntry(name, source, kind)
            stale = self._owned_file("model", old) if old is not None else None
            self._commit([("model", name, entry, None)])
            if stale != self._owned_file("model", entry):  # an onnx copy replaced by a zoo model
                self._remove_file(stale)
        return entry

    def add_media(self, name: str, kind: str, path: str | os.PathLike,
                  info: dict | None = None) -> MediaEntry:
        """Add or replace an image or video. The file is referenced by absolute path, not copied."""
        check_kind(kind, ("image", "video"), "media kind")
        file = Path(path).expanduser().absolute()
        if not file.exists():
            error = ImageError if kind == "image" else FileError
            raise error(f"no {kind} file {file} (for {kind} {name!r})")
        entry = MediaEntry(check_name(name), kind, str(file), check_info(info, f"{kind} {name!r}"))
        with self._writing():
            self._check_free(kind, name)
            self._commit([(kind, name, entry, None)])
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
        token = secrets.token_hex(8)
        table = stamp_table(table, entry, token)
        with self._writing():
            self._check_free(kind, name)
            self._tables.pop((kind, name), None)
            if self.path is not None:
                write_arrow(self._data_dir(kind) / f"{name}.arrow", table)  # data, then catalog
            self._commit([(kind, name, entry, token)])
        if self.path is None:
            self._tables[(kind, name)] = (token, table)
        return entry

    def drop(self, kind: str, name: str, if_exists: bool = False) -> bool:
        """Remove an entry (and the file the database owns for it); False if absent and
        ``if_exists``. Image and video files belong to the caller and are left alone."""
        check_kind(kind, KINDS)
        with self._writing():
            entry = self._entries[kind].get(name)
            if entry is None:
                if if_exists:
                    return False
                raise self._unknown(kind, name)
            self._commit([(kind, name, None, None)])  # entry first: a crash leaves only garbage
            self._tables.pop((kind, name), None)
            self._remove_file(self._owned_file(kind, entry))
        return True

    # -- helpers ---------------------------------------------------------------------------

    def _section(self, kind: str) -> dict:
        self._refresh()
        return dict(sorted(self._entries[kind].items()))

    def _file(self, kind: str, name: str) -> Path:
        sub, ext = DATA_DIRS[kind]
        return self.path / sub / f"{name}{ext}"

    def _data_dir(self, kind: str) -> Path:
        """The kind's folder, recreated if someone removed it."""
        directory = self.path / DATA_DIRS[kind][0]
        if not directory.is_dir():
            directory.mkdir()
            fsync_dir(self.path)
        return directory

    def _owned_file(self, kind: str, entry) -> Path | None:
        """The file the database wrote for ``entry`` (None for in-memory and referenced files)."""
        if self.path is None or kind in ("image", "video"):
            return None
        if kind == "model":
            source = Path(entry.source)
            owned = entry.kind == "onnx" and source.parent == self.path / "models"
            return source if owned else None
        return self._file(kind, entry.name)

    @staticmethod
    def _remove_file(file: Path | None) -> None:
        if file is not None:
            with suppress(OSError):  # leftovers are garbage the next open removes
                file.unlink()

    def _onnx_source(self, name: str, source: Path) -> Path:
        """Where the model's ONNX file lives: copied into an on-disk database, else as given."""
        source = source.expanduser().absolute()
        if not source.is_file():
            raise FileError(f"no ONNX file {source} (for model {name!r})")
        if self.path is None:
            return source
        target = self._data_dir("model") / f"{name}.onnx"
        if target.exists() and os.path.samefile(source, target):
            return target
        with open(source, "rb") as f:
            atomic_write(target, lambda out: shutil.copyfileobj(f, out, 1 << 20))
        return target

    def _check_free(self, kind: str, name: str) -> None:
        for other in NAMESPACES[kind]:
            if other != kind and name in self._entries[other]:
                raise CatalogError(f"name {name!r} is taken by a {other}: {kind}s and {other}s "
                                   f"share one namespace (drop the {other} first)")

    def _unknown(self, kind: str, name: str) -> UnknownNameError:
        """UnknownNameError listing the known names, plus a hint for a near miss."""
        known = sorted(self._entries[kind])
        err = UnknownNameError(kind, name, known)
        hints = [f"did you mean {k!r}? (names are case-sensitive)"
                 for k in known if isinstance(name, str) and k.lower() == name.lower()]
        hints += [f"{name!r} is a {other}" for other in NAMESPACES[kind]
                  if other != kind and name in self._entries[other]]
        if hints:
            err.args = (f"{err.args[0]}; " + "; ".join(hints),)
        return err

    # -- the catalog file ------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the writer lock and start from the latest catalog, so read-modify-write of
        catalog.json is atomic across processes."""
        if self.path is None:
            yield
            return
        with locked(self.path):
            self._refresh()
            yield

    def _commit(self, changes: list[tuple]) -> None:
        """Apply (kind, name, entry or None, token) changes: catalog.json first, then memory,
        so a failed write leaves this object agreeing with the disk."""
        entries = {kind: dict(section) for kind, section in self._entries.items()}
        tokens = dict(self._tokens)
        for kind, name, entry, token in changes:
            tokens.pop((kind, name), None)
            if entry is None:
                entries[kind].pop(name, None)
                continue
            entries[kind][name] = entry
            if token is not None:
                tokens[(kind, name)] = token
        if self.path is not None:
            self._write_catalog(entries, tokens)
        self._entries, self._tokens = entries, tokens

    def _write_catalog(self, entries: dict, tokens: dict) -> None:
        catalog = self.path / CATALOG
        atomic_write_bytes(catalog, catalog_to_json(entries, tokens, self.path))
        self._stamp = _stat_stamp(os.stat(catalog))

    def _refresh(self) -> None:
        """Re-read catalog.json if another Database object replaced it since we last looked."""
        if self.path is None:
            return
        try:
            stamp = _stat_stamp(os.stat(self.path / CATALOG))
        except FileNotFoundError:
            raise StorageError(f"{self.path / CATALOG} is gone; was the database "
                               "directory removed?") from None
        if stamp != self._stamp:
            self._load()

    def _load(self) -> None:
        catalog = self.path / CATALOG
        with open(catalog, "rb") as f:
            stamp, data = _stat_stamp(os.fstat(f.fileno())), f.read()
        where = f"{catalog} (nothing was changed; fix or restore this file)"
        self._entries, self._tokens = catalog_from_json(data, self.path, where)
        self._stamp = stamp

    # -- opening and repair ----------------------------------------------------------------

    def _open(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise StorageError(f"{self.path} is a file, not a KryptonDB database directory")
        if not (self.path / CATALOG).exists():
            self._create()
        if not os.access(self.path, os.W_OK):  # read-only: nothing we could repair
            return self._load()
        with locked(self.path):  # a live writer's files are not garbage: wait for it
            self._load()  # raises on a bad catalog before anything below may delete files
            self._clean()
            self._reconcile()

    def _create(self) -> None:
        """A fresh database; refuses a non-empty directory so we never adopt someone's files."""
        self.path.mkdir(parents=True, exist_ok=True)
        others = sorted(e for e in os.listdir(self.path) if not is_temp_name(e))
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise StorageError(f"{self.path} is not a KryptonDB database: it holds {shown} but "
                               f"no {CATALOG}; use an empty or new directory")
        self._write_catalog(self._entries, self._tokens)  # catalog first: it marks the dir ours
        for sub, _ in DATA_DIRS.values():
            (self.path / sub).mkdir(exist_ok=True)
        fsync_dir(self.path)
        fsync_dir(self.path.parent)

    def _clean(self) -> None:
        """Remove what a killed writer left: dead temp files and data files no entry names."""
        for kind, (sub, ext) in DATA_DIRS.items():
            with suppress(OSError):
                clean_temp_files(self.path / sub)
            owned = {self._owned_file(kind, e) for e in self._entries[kind].values()}
            remove_orphans(self.path / sub, ext, owned)
        with suppress(OSError):
            clean_temp_files(self.path)

    def _reconcile(self) -> None:
        """Roll forward replaces whose new data file landed but whose catalog write did not."""
        changes = [rolled_forward(kind, name, self._file(kind, name), self._tokens[(kind, name)])
                   for kind in ("table", "view") for name in self._entries[kind]]
        if changes := [c for c in changes if c is not None]:
            self._commit(changes)
