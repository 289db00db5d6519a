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

from kryptondb.errors import CatalogError, StorageError

FORMAT, VERSION = "kryptondb", 1
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
    """A model: ``source`` is a zoo name (kind 'zoo') or an absolute .onnx path (kind 'onnx')."""

    name: str
    source: str
    kind: str

    def __post_init__(self):
        check_kind(self.kind, MODEL_KINDS, "model kind")


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
    if name.lower() in RELATIONS:
        raise CatalogError(f"invalid name {name!r}: {', '.join(RELATIONS)} are reserved for "
                           "the catalog relations")
    return name


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
    if e.kind == "onnx" and Path(source).parent == root / "models":
        source = f"models/{Path(source).name}"  # relative, so the directory can be moved
    return {"kind": e.kind, "source": source}


def entry_to_json(entry, token: str | None, root: Path) -> dict:
    if isinstance(entry, ModelEntry):
        return _model_to_json(entry, root)
    if isinstance(entry, MediaEntry):
        return {"path": entry.path, "info": entry.info}
    return {"rows": entry.rows, "columns": list(entry.columns), "created": entry.created,
            "info": entry.info, "token": token}


def entry_from_json(kind: str, name: str, d: dict, root: Path):
    """(entry, token) from one catalog.json record; token is None except for tables/views."""
    check_name(name)
    if kind == "model":
        source = d["source"]
        if d["kind"] == "onnx" and not Path(source).is_absolute():
            source = str(root / source)
        return ModelEntry(name, source, d["kind"]), None
    if kind in ("image", "video"):
        return MediaEntry(name, kind, str(d["path"]), dict(d["info"])), None
    entry = TableEntry(name, kind, int(d["rows"]), tuple(map(str, d["columns"])),
                       str(d["created"]), dict(d["info"]))
    return entry, str(d["token"])


def catalog_to_json(entries: dict, tokens: dict, root: Path) -> bytes:
    doc = {"format": FORMAT, "version": VERSION}
    for kind, section in SECTIONS.items():
        doc[section] = {name: entry_to_json(e, tokens.get((kind, name)), root)
                        for name, e in sorted(entries[kind].items())}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def _check_header(doc, where: str) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StorageError(f"{where} is not a KryptonDB catalog (no \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise StorageError(f"{where} has catalog version {version!r}; this KryptonDB reads "
                           f"versions up to {VERSION} (was it written by a newer release?)")


def catalog_from_json(data: bytes, root: Path, where: str) -> tuple[dict, dict]:
    """(entries by kind, tokens by (kind, name)); StorageError naming ``where`` if malformed."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise StorageError(f"corrupt catalog {where}: {e}") from e
    _check_header(doc, where)
    entries, tokens = {k: {} for k in KINDS}, {}
    for kind, section in SECTIONS.items():
        records = doc.get(section, {})
        if not isinstance(records, dict):
            raise StorageError(f"corrupt catalog {where}: {section!r} is not an object")
        for name, record in records.items():
            try:
                entries[kind][name], token = entry_from_json(kind, name, record, root)
            except (KeyError, TypeError, ValueError, AttributeError, CatalogError) as e:
                raise StorageError(f"corrupt catalog {where}: bad entry "
                                   f"{section}[{name!r}]: {type(e).__name__}: {e}") from e
            if token is not None:
                tokens[(kind, name)] = token
    return entries, tokens
