"""Printing Arrow tables for people: aligned columns, numbers right-aligned, long tables cut."""

from __future__ import annotations

import pyarrow as pa


def _cell(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _rows(table: pa.Table) -> list[tuple]:
    """The rows as tuples (by position: names may repeat)."""
    return list(zip(*map(_values, table.columns))) if table.num_columns else \
        [()] * table.num_rows


def _values(column) -> list:
    """A column's values as Python objects; values Python cannot hold (DuckDB's infinite dates,
    timestamps past the year 9999 or in nanoseconds) as Arrow's text for them."""
    try:
        return column.to_pylist()
    except (OverflowError, ValueError, pa.ArrowException):
        pass
    try:
        return column.cast(pa.string()).to_pylist()
    except (OverflowError, ValueError, pa.ArrowException):
        return [f"<{column.type}>"] * len(column)


def format_table(table: pa.Table, max_rows: int = 40) -> str:
    """An aligned text rendering; tables longer than ``max_rows`` show head and tail."""
    names = table.column_names
    n = table.num_rows
    if n > max_rows:
        half = max_rows // 2
        rows = _rows(table.slice(0, half)) + [None] + _rows(table.slice(n - half))
    else:
        rows = _rows(table)
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]
    cells = [[_cell(v) for v in r] if r is not None else ["..."] * len(names) for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(names)]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
    out.append(f"({n} row{'s' if n != 1 else ''})")
    return "\n".join(out)
