"""The catalog and storage layer: models, images, videos, tables and views, in memory or in a
crash-safe database directory (see database.py for the layout and the recovery rules)."""

from kryptondb.catalog.database import Database
from kryptondb.catalog.entries import RELATIONS, MediaEntry, ModelEntry, TableEntry
from kryptondb.catalog.relations import relation_names
from kryptondb.catalog.storage import atomic_write, atomic_write_bytes, read_arrow, write_arrow

__all__ = ["RELATIONS", "Database", "MediaEntry", "ModelEntry", "TableEntry", "atomic_write",
           "atomic_write_bytes", "read_arrow", "relation_names", "write_arrow"]
