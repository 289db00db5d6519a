"""The catalog as Arrow relations, so SQL can read it like any table (SELECT * FROM models).

Each relation has a fixed schema, also when empty, so a query binds the same way whatever is
registered; media dimensions come from the caller-filled ``info`` and are null when absent.
"""

from __future__ import annotations

import pyarrow as pa

from kryptondb.catalog.entries import RELATIONS, MediaEntry, ModelEntry, TableEntry

_S, _I, _F = pa.string(), pa.int64(), pa.float64()
SCHEMAS = {
    "models": pa.schema([("name", _S), ("kind", _S), ("source", _S)]),
    "images": pa.schema([("name", _S), ("path", _S), ("width", _I), ("height", _I)]),
    "videos": pa.schema([("name", _S), ("path", _S), ("width", _I), ("height", _I),
                         ("frames", _I), ("fps", _F)]),
    "tables": pa.schema([("name", _S), ("rows", _I), ("columns", _S), ("created", _S)]),
}
SCHEMAS["views"] = SCHEMAS["tables"]


def relation_names(db) -> list[str]:
    """Every name SQL can read in ``db``: the catalog's own relations (``RELATIONS``, reserved
    names), then its tables and views."""
    return list(RELATIONS) + db.names("table") + db.names("view")


def _number(value, cast):
    """info values are caller-supplied: anything not a number becomes null, not a crash."""
    try:
        return None if value is None or isinstance(value, bool) else cast(value)
    except (TypeError, ValueError):
        return None


def _row(entry) -> dict:
    if isinstance(entry, ModelEntry):
        return {"name": entry.name, "kind": entry.kind, "source": entry.source}
    if isinstance(entry, MediaEntry):
        info = entry.info
        return {"name": entry.name, "path": entry.path, "width": _number(info.get("width"), int),
                "height": _number(info.get("height"), int),
                "frames": _number(info.get("frames"), int), "fps": _number(info.get("fps"), float)}
    assert isinstance(entry, TableEntry)
    return {"name": entry.name, "rows": entry.rows, "columns": ", ".join(entry.columns),
            "created": entry.created}


def catalog_relation(relation: str, entries: dict) -> pa.Table:
    """One relation (a key of SCHEMAS) from ``entries`` (name -> entry), sorted by name."""
    schema = SCHEMAS[relation]
    rows = [_row(entries[name]) for name in sorted(entries)]
    columns = {f.name: pa.array([r[f.name] for r in rows], f.type) for f in schema}
    return pa.table(columns, schema=schema)
