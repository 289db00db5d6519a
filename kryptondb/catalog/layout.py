"""Where a database directory keeps each entry's data: one file per version, named by a token.

::

    tables/<name>.<token>.arrow           views/<name>.<token>.arrow
    models/<name>.<token>/<name>.onnx     a folder per model version, so the file keeps the
                                          model's name; plus <name>.onnx.data beside it for a
                                          model whose weights do not fit in one protobuf

A new version is written to a new file, so a write never touches the file the catalog names;
the rename of catalog.json is the commit, and the old file is removed after it. A file that no
entry names is garbage the next open removes. Version-1 databases named their files
``<name>.arrow`` and ``<name>.onnx``; those are still read, and replaced by token-named files the
next time each entry is written.

>>> data_file(Path("/db"), "view", "heat", "0123456789abcdef")
PosixPath('/db/views/heat.0123456789abcdef.arrow')
>>> data_file(Path("/db"), "model", "net", "0123456789abcdef")
PosixPath('/db/models/net.0123456789abcdef/net.onnx')
>>> is_data_file("heat.0123456789abcdef.arrow", "view"), is_data_file(".x.tmp", "view")
(True, False)
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path, PurePosixPath

from kryptondb.catalog.storage import is_temp_name
from kryptondb.errors import StorageError

DATA_DIRS = {"table": ("tables", ".arrow"), "view": ("views", ".arrow"),
             "model": ("models", ".onnx")}
EXTERNAL_SUFFIX = ".data"  # a model's external weights: <model file>.data
_NAME, _TOKEN = r"[A-Za-z_][A-Za-z0-9_]*", r"\.[0-9a-f]{16}"
_FILE_RE = {"table": re.compile(rf"{_NAME}({_TOKEN})?\.arrow"),
            "view": re.compile(rf"{_NAME}({_TOKEN})?\.arrow"),
            "model": re.compile(rf"{_NAME}(\.onnx|{_TOKEN})")}  # a v1 file, or a version folder


def new_token() -> str:
    """A random commit token: names a version's file and tells cached versions apart."""
    return secrets.token_hex(8)


def data_file(root: Path, kind: str, name: str, token: str) -> Path:
    sub, ext = DATA_DIRS[kind]
    if kind == "model":
        return root / sub / f"{name}.{token}" / f"{name}{ext}"
    return root / sub / f"{name}.{token}{ext}"


def legacy_file(root: Path, kind: str, name: str) -> Path:
    """Where a version-1 database kept the entry's data."""
    sub, ext = DATA_DIRS[kind]
    return root / sub / f"{name}{ext}"


def external_file(model_file: Path) -> Path:
    return model_file.with_name(model_file.name + EXTERNAL_SUFFIX)


def stored_item(root: Path, kind: str, file: Path) -> Path | None:
    """What to remove to remove ``file``'s version: the file, or a model version's folder;
    None for a file that is not the database's (a model registered in memory, say)."""
    sub = root / DATA_DIRS[kind][0]
    item = file.parent if kind == "model" and file.parent.parent == sub else file
    return item if item.parent == sub and is_data_file(item.name, kind) else None


def is_data_file(filename: str, kind: str) -> bool:
    """Whether an entry of the kind's folder holds a version of some entry's data."""
    return _FILE_RE[kind].fullmatch(filename) is not None


def to_json(root: Path, file: Path) -> str:
    """The file's path relative to the database, so the directory can be moved."""
    return file.relative_to(root).as_posix()


def from_json(root: Path, kind: str, text: str) -> Path:
    """The data file a catalog record names; ValueError unless it is one of the kind's data
    files (a damaged or hand-edited catalog must not point the database outside itself)."""
    rel = PurePosixPath(text)
    file = root.joinpath(*rel.parts)
    if ".." in rel.parts or rel.is_absolute() or stored_item(root, kind, file) is None \
            or file.suffix != DATA_DIRS[kind][1]:
        raise ValueError(f"{text!r} is not a {kind} data file of this database")
    return file


def check_empty(root: Path) -> None:
    """A new database goes only into an empty directory, so it never adopts someone's files."""
    others = sorted(e for e in os.listdir(root) if not is_temp_name(e) and e != "catalog.lock")
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise StorageError(f"{root} is not a KryptonDB database: it holds {shown} but no "
                           "catalog.json; use an empty or new directory")
