"""Golden files: a query, a separator line, and the text it must produce. One loader for every
golden test; ``KRYPTON_UPDATE_GOLDEN=1 pytest ...`` rewrites the files from what the code prints
now (review the diff before committing it)."""

from __future__ import annotations

import os
import pathlib

UPDATE = bool(os.environ.get("KRYPTON_UPDATE_GOLDEN"))


def cases(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(folder.glob("*.kql"))


def read(path: pathlib.Path, separator: str) -> tuple[str, str]:
    """(query, expected text) of a golden file."""
    query, found, expected = path.read_text().partition(separator)
    assert found, f"{path}: no {separator.strip()!r} line"
    return query.strip(), expected


def check(path: pathlib.Path, separator: str, actual: str) -> None:
    """Assert ``actual`` equals the file's expected text (or rewrite it, with UPDATE)."""
    query, expected = read(path, separator)
    actual = actual.rstrip() + "\n"
    if UPDATE:
        path.write_text(query + separator + actual)
        expected = actual
    assert actual == expected, f"{path.name}: plan differs from the golden file"
