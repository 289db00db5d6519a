"""Changing the database: models, media, tables and views added, replaced or dropped, each
change all or nothing (see database.py). ``Writes`` is the writing half of ``Database``: its
methods keep the catalog state (``_entries``, ``_tokens``, ``_files``, ``_tables``) and write
catalog.json through the reading half's ``_refresh`` and ``_write_catalog``."""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from kryptondb.catalog import layout
from kryptondb.catalog.entries import (KINDS, MODEL_KINDS, NAMESPACES, MediaEntry, ModelEntry,
                                       TableEntry, check_info, check_kind, check_name)
from kryptondb.catalog.lock import locked
from kryptondb.catalog.recovery import stamp_table
from kryptondb.catalog.storage import (atomic_write, atomic_write_bytes, fsync_dir,
                                       remove_quietly, write_arrow)
from kryptondb.errors import CatalogError, FileError, ImageError, StorageError
from kryptondb.files import check_regular
from kryptondb.limits import current
from kryptondb.media.images import Preprocess
from kryptondb.model.onnx_files import portable_copy


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Writes:
    """The changes a Database makes (a mixin: Database defines the state it changes)."""

    # -- changing --------------------------------------------------------------------------

    def register_model(self, name: str, source: str | os.PathLike, kind: str,
                       preprocess: Preprocess | None = None) -> ModelEntry:
        """Add or replace a model. An 'onnx' file is copied into an on-disk database, with its
        external data (see kryptondb.model.onnx_files.portable_copy); ``preprocess`` is its
        declared preprocessing (None: the default, see ModelEntry)."""
        check_kind(kind, MODEL_KINDS, "model kind")
        check_name(name)
        if kind == "zoo" and (not isinstance(source, str) or not source):
            raise CatalogError(f"zoo model {name!r} needs a zoo name as source, got {source!r}")
        copy = None
        if kind == "onnx":
            source = Path(source).expanduser().absolute()
            check_regular(source, f"ONNX file (for model {name!r})")
            if self.path is not None:  # read and checked before taking the lock
                copy = portable_copy(source, f"{name}.onnx{layout.EXTERNAL_SUFFIX}")
        with self._writing(f"register model {name!r}"):
            self._check_free("model", name)
            old = self._owned_files("model", name, self._entries["model"].get(name))
            written: list[Path] = []
            try:
                if copy is not None:
                    source = self._store_onnx(name, *copy, written)
                entry = ModelEntry(name, str(source), kind, preprocess)
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

    def _lock_timeout(self) -> float:
        return current().lock_timeout if self.lock_timeout is None else self.lock_timeout

    def _check_free(self, kind: str, name: str) -> None:
        for other in NAMESPACES[kind]:
            if other != kind and name in self._entries[other]:
                raise CatalogError(f"name {name!r} is taken by a {other}: {kind}s and {other}s "
                                   f"share one namespace (drop the {other} first)")

    def _data_dir(self, kind: str) -> Path:
        """The kind's folder, recreated if someone removed it."""
        directory = self.path / layout.DATA_DIRS[kind][0]
        if not directory.is_dir():
            directory.mkdir()
            fsync_dir(self.path)
        return directory

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
