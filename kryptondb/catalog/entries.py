"""Catalog entries, the naming rules, and the catalog.json document they round-trip through.

Entries are small frozen records; the tensors and tables they describe live in files. The JSON
is validated on load so a hand-edited or damaged catalog fails at open with the file and entry
named, instead of surfacing later as a KeyError deep inside a query.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from kryptondb.catalog import layout
from kryptondb.errors import CatalogError, KryptonError, StorageError, UnknownNameError
from kryptondb.media.images import Preprocess, preprocess_from_json, preprocess_to_json

FORMAT, VERSION = "kryptondb", 2  # 2: each table version in its own file (layout.py)
MAX_NAME = 128  # characters: <name>.<token>.onnx.data and its temp name fit NAME_MAX (255 bytes)
KINDS = ("model", "image", "video", "table", "view")
SECTIONS = {"model": "models", "image": "images", "video": "videos", "table": "tables",
            "view": "views"}
RELATIONS = tuple(SECTIONS.values())  # reserved: SQL reads the catalog under these names
MODEL_KINDS = ("zoo", "onnx")
# kinds that share one namespace, because a query can name either in the same place
NAMESPACES = {"model": ("model",), "image": ("image", "video"), "video": ("image", "video"),
              "table": ("table", "view"), "view": ("table", "view")}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model: ``source`` is a zoo name (kind 'zoo') or an absolute .onnx path (kind 'onnx');
    ``preprocess`` the preprocessing its CREATE MODEL declared, or None for the default (a zoo
    model's own; for an ONNX file IMAGENET when its input is square and 3-channel, else NONE:
    kryptondb/model/model.py default_preprocess). Catalogs written before declarations existed
    have none."""

    name: str
    source: str
    kind: str
    preprocess: Preprocess | None = None

    def __post_init__(self):
        check_kind(self.kind, MODEL_KINDS, "model kind")
        if self.preprocess is not None and not isinstance(self.preprocess, Preprocess):
            raise CatalogError(f"model {self.name!r}: preprocess must be a Preprocess, got "
                               f"{type(self.preprocess).__name__}")


@dataclass(frozen=True, slots=True)
class MediaEntry:
    """An image or video file the database points at (not copied; the caller owns the file)."""

    name: str
    kind: str
    path: str
    info: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        check_kind(self.kind, ("image", "video"), "media kind")


@dataclass(frozen=True, slots=True)
class TableEntry:
    """A table or materialized view stored as Arrow; ``created`` is an ISO-8601 UTC time."""

    name: str
    kind: str
    rows: int
    columns: tuple[str, ...]
    created: str
    info: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        check_kind(self.kind, ("table", "view"), "table kind")


def check_kind(kind: str, allowed: tuple[str, ...], what: str = "kind") -> str:
    if kind not in allowed:
        raise CatalogError(f"unknown {what} {kind!r}; expected one of: {', '.join(allowed)}")
    return kind


def is_valid_name(name: str) -> bool:
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def check_name(name: str) -> str:
    """Names are SQL identifiers and must not shadow the catalog's own relations."""
    if not is_valid_name(name):
        raise CatalogError(f"invalid name {name!r}: names must match [A-Za-z_][A-Za-z0-9_]*")
    if len(name) > MAX_NAME:
        raise CatalogError(f"invalid name {name[:20]}... ({len(name)} characters): names are at "
                           f"most {MAX_NAME} characters, so that their files fit the file "
                           "system's name limit")
    if name.lower() in RELATIONS:
        raise CatalogError(f"invalid name {name!r}: {', '.join(RELATIONS)} are reserved for "
                           "the catalog relations")
    return name


def unknown_name(entries: dict, kind: str, name: str) -> UnknownNameError:
    """UnknownNameError listing the known names, plus a hint for a near miss."""
    known = sorted(entries[kind])
    err = UnknownNameError(kind, name, known)
    hints = [f"did you mean {k!r}? (names are case-sensitive)"
             for k in known if isinstance(name, str) and k.lower() == name.lower()]
    hints += [f"{name!r} is a {other}" for other in NAMESPACES[kind]
              if other != kind and name in entries[other]]
    if hints:
        err.args = (f"{err.args[0]}; " + "; ".join(hints),)
    return err


def check_info(info: dict | None, owner: str) -> dict:
    """A JSON-able dict (round-tripped, so what is stored equals what a reopen returns)."""
    info = {} if info is None else info
    if not isinstance(info, dict):
        raise CatalogError(f"info for {owner} must be a dict, got {type(info).__name__}")
    try:
        return json.loads(json.dumps(info, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise CatalogError(f"info for {owner} is not JSON-serializable: {e}") from e


# -- catalog.json ------------------------------------------------------------------------------

def _model_to_json(e: ModelEntry, root: Path) -> dict:
    source = e.source
    if e.kind == "onnx" and layout.stored_item(root, "model", Path(source)) is not None:
        source = layout.to_json(root, Path(source))  # relative: the directory can be moved
    record = {"kind": e.kind, "source": source}
    if e.preprocess is not None:  # absent: the default (older releases ignore the key)
        record["preprocess"] = preprocess_to_json(e.preprocess)
    return record


def entry_to_json(entry, token: str | None, file: Path | None, root: Path) -> dict:
    if isinstance(entry, ModelEntry):
        return _model_to_json(entry, root)
    if isinstance(entry, MediaEntry):
        return {"path": entry.path, "info": entry.info}
    return {"rows": entry.rows, "columns": list(entry.columns), "created": entry.created,
            "info": entry.info, "token": token, "file": layout.to_json(root, file)}


def entry_from_json(kind: str, name: str, d: dict, root: Path):
    """(entry, token, data file) from one catalog.json record; token and file are None except
    for tables and views (a version-1 record names no file: it is ``<name>.arrow``)."""
    check_name(name)
    if kind == "model":
        source = d["source"]
        if d["kind"] == "onnx" and not Path(source).is_absolute():
            source = str(layout.from_json(root, "model", source))
        return ModelEntry(name, source, d["kind"], _preprocess(d.get("preprocess"))), None, None
    if kind in ("image", "video"):
        return MediaEntry(name, kind, str(d["path"]), dict(d["info"])), None, None
    entry = TableEntry(name, kind, int(d["rows"]), tuple(map(str, d["columns"])),
                       str(d["created"]), dict(d["info"]))
    file = layout.from_json(root, kind, d["file"]) if "file" in d \
        else layout.legacy_file(root, kind, name)
    return entry, str(d["token"]), file


def _preprocess(record) -> Preprocess | None:
    try:
        return None if record is None else preprocess_from_json(record)
    except KryptonError as e:  # CatalogError: catalog_from_json names the entry
        raise CatalogError(f"bad preprocess {record!r}: {e}") from None


def catalog_to_json(entries: dict, tokens: dict, files: dict, root: Path) -> bytes:
    doc = {"format": FORMAT, "version": VERSION}
    for kind, section in SECTIONS.items():
        doc[section] = {name: entry_to_json(e, tokens.get((kind, name)), files.get((kind, name)),
                                            root)
                        for name, e in sorted(entries[kind].items())}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def _check_header(doc, where: str) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StorageError(f"{where} is not a KryptonDB catalog (no \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise StorageError(f"{where} has catalog version {version!r}; this KryptonDB reads "
                           f"versions up to {VERSION} (was it written by a newer release?)")


def catalog_from_json(data: bytes, root: Path, where: str) -> tuple[dict, dict, dict]:
    """(entries by kind, tokens and data files by (kind, name)); StorageError naming ``where``
    if malformed."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise StorageError(f"corrupt catalog {where}: {e}") from e
    _check_header(doc, where)
    entries, tokens, files = {k: {} for k in KINDS}, {}, {}
    for kind, section in SECTIONS.items():
        records = doc.get(section, {})
        if not isinstance(records, dict):
            raise StorageError(f"corrupt catalog {where}: {section!r} is not an object")
        for name, record in records.items():
            try:
                entries[kind][name], token, file = entry_from_json(kind, name, record, root)
            except (KeyError, TypeError, ValueError, AttributeError, CatalogError) as e:
                raise StorageError(f"corrupt catalog {where}: bad entry "
                                   f"{section}[{name!r}]: {type(e).__name__}: {e}") from e
            if token is not None:
                tokens[(kind, name)], files[(kind, name)] = token, file
    return entries, tokens, files
