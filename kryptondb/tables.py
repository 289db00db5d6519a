"""Printing Arrow tables for people and for other programs, in one of ``MODES``.

"table" and "markdown" are for reading: long tables show head and tail, wide ones the columns
that fit ``max_width`` (there, text cells over CELL_WIDTH characters are elided), and a footer
says how much was shown. "csv" and "json" (an array of row objects) are data: every row, nothing
cut. In every mode a binary cell is summarised, never
dumped: ``<float32 64x56x56>`` when its row says the tensor's dtype and shape (a view's rows
do), else ``<N bytes>``.

>>> import pyarrow as pa
>>> t = pa.table({"layer": ["conv1"], "dtype": ["float32"], "shape": [[64, 56, 56]],
...               "tensor": pa.array([b"\\0" * 802816], pa.large_binary())})
>>> print(render(t))
layer  dtype    shape         tensor
-----  -------  ------------  ------------------
conv1  float32  [64, 56, 56]  <float32 64x56x56>
(1 row)
>>> print(render(t, "json"))
[{"layer": "conv1", "dtype": "float32", "shape": [64, 56, 56], "tensor": "<float32 64x56x56>"}]
"""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.compute as pc

from kryptondb.errors import KryptonError
from kryptondb.format import shorten

MODES = ("table", "csv", "json", "markdown")
CELL_WIDTH = 48  # on a screen (max_width), a longer text cell is elided in the middle
LIST_ITEMS = 8  # longer lists print their first items and a count in "table" and "markdown"


def render(table: pa.Table, mode: str = "table", max_rows: int | None = 40,
           max_width: int | None = None) -> str:
    """``table`` as text in ``mode``; ``max_rows`` and ``max_width`` (characters) bound what
    "table" and "markdown" show (None: no bound); "csv" and "json" always hold every row."""
    if check_mode(mode) == "csv":
        return _csv(table)
    if mode == "json":
        return _json(table)
    return _text(table, mode, max_rows, max_width)


def check_mode(mode: str) -> str:
    """``mode`` when it is one of MODES, else a KryptonError naming them."""
    if mode not in MODES:
        raise KryptonError(f"unknown output mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def format_table(table: pa.Table, max_rows: int = 40) -> str:
    """An aligned text rendering; tables longer than ``max_rows`` show head and tail."""
    return render(table, "table", max_rows)


# -- cells ---------------------------------------------------------------------------------------

def _values(table: pa.Table, i: int) -> list:
    """Column ``i``'s values as Python objects: binary cells as their summary; values Python
    cannot hold (DuckDB's infinite dates, timestamps in nanoseconds) as Arrow's text for them."""
    column = table.column(i)
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type) \
            or pa.types.is_fixed_size_binary(column.type):
        return _binary_summaries(table, column)
    try:
        return column.to_pylist()
    except (OverflowError, ValueError, pa.ArrowException):
        pass
    try:
        return column.cast(pa.string()).to_pylist()
    except (OverflowError, ValueError, pa.ArrowException):
        return [f"<{column.type}>"] * len(column)


def _binary_summaries(table: pa.Table, column) -> list:
    """``<dtype AxBxC>`` where the row has a str ``dtype`` and a list ``shape`` column, else
    ``<N bytes>``; the bytes themselves are never read into Python."""
    sizes = pc.binary_length(column).to_pylist()
    names = table.column_names
    dtypes = shapes = [None] * len(sizes)
    if "dtype" in names and "shape" in names:
        d, s = table.column("dtype"), table.column("shape")
        if pa.types.is_string(d.type) and pa.types.is_list(s.type):
            dtypes, shapes = d.to_pylist(), s.to_pylist()
    return [None if n is None else
            f"<{dt} {'x'.join(map(str, sh))}>" if dt and sh is not None else f"<{n} bytes>"
            for n, dt, sh in zip(sizes, dtypes, shapes)]


def _cell(v, limit: int | None = None) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list) and len(v) > LIST_ITEMS:
        head = ", ".join(_cell(x, limit) for x in v[:LIST_ITEMS])
        return f"[{head}, … ({len(v)} items)]"
    return shorten(str(v), limit)


# -- table and markdown --------------------------------------------------------------------------

def _shown_rows(table: pa.Table, max_rows: int | None) -> list[tuple | None]:
    """The rows to show, as tuples; None where the middle of a long table is left out."""
    n = table.num_rows
    if max_rows is not None and n > max_rows:
        half = max(1, max_rows // 2)
        return _rows(table.slice(0, half)) + [None] + _rows(table.slice(n - half))
    return _rows(table)


def _rows(table: pa.Table) -> list[tuple]:
    """The rows as tuples (by position: names may repeat)."""
    if not table.num_columns:
        return [()] * table.num_rows
    return list(zip(*(_values(table, i) for i in range(table.num_columns))))


def _text(table: pa.Table, mode: str, max_rows: int | None, max_width: int | None) -> str:
    names = table.column_names
    rows = _shown_rows(table, max_rows)
    limit = CELL_WIDTH if max_width is not None else None  # paths stay whole in a pipe
    cells = [[_cell(v, limit) for v in r] if r is not None else ["…"] * len(names)
             for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(names)]
    keep = _fitting_columns(widths, max_width, 3 if mode == "markdown" else 2)
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]
    lines = (_markdown if mode == "markdown" else _aligned)(
        [names[i] for i in keep], [[r[i] for i in keep] for r in cells],
        [widths[i] for i in keep], [numeric[i] for i in keep], len(keep) < len(names))
    lines.append(_footer(table, len(rows) - (None in rows), len(keep)))
    return "\n".join(lines)


def _fitting_columns(widths: list[int], max_width: int | None, gap: int) -> list[int]:
    """The leftmost columns whose joined width (with room for an elision column) fits."""
    if max_width is None or sum(widths) + gap * len(widths) <= max_width + gap:
        return list(range(len(widths)))
    keep, used = [], 1 + gap  # the "…" column
    for i, w in enumerate(widths):
        if keep and used + w + gap > max_width:
            break
        keep.append(i)
        used += w + gap
    return keep


def _aligned(names, cells, widths, numeric, cut: bool) -> list[str]:
    def line(values, fill=""):
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts + ([fill] if cut else [])).rstrip()

    return [line(names, "…"), line(["-" * w for w in widths], "-" if cut else "")] \
        + [line(r, "…") for r in cells]


def _markdown(names, cells, widths, numeric, cut: bool) -> list[str]:
    widths = [max(3, w) for w in widths]

    def line(values):
        parts = [v.replace("|", "\\|") for v in values]
        parts = [p.rjust(w) if num else p.ljust(w) for p, w, num in zip(parts, widths, numeric)]
        return "| " + " | ".join(parts + (["…"] if cut else [])) + " |"

    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric)]
    return [line(names), line(rule)] + [line(r) for r in cells]


def _footer(table: pa.Table, rows_shown: int, columns_shown: int) -> str:
    n, m = table.num_rows, table.num_columns
    text = f"({n} row{'s' if n != 1 else ''}"
    if rows_shown < n:
        text += f", {rows_shown} shown"
    if columns_shown < m:
        text += f"; {m} columns, {columns_shown} shown"
    return text + ")"


# -- csv and json --------------------------------------------------------------------------------

def _plain(v):
    """A value for CSV/JSON: lists and dicts as they are, dates and decimals as text."""
    if v is None or isinstance(v, (bool, int, float, str, list, dict)):
        return v
    return str(v)


def _csv(table: pa.Table) -> str:
    """RFC 4180 fields ("" around a field holding a comma, quote or line break), lines ended by
    \\n; NULL is the empty field, lists and dicts their JSON."""
    lines = [",".join(map(_csv_field, table.column_names))]
    lines += [",".join(_csv_field("" if v is None else json.dumps(v)
                                  if isinstance(v, (list, dict)) else v)
                       for v in map(_plain, r)) for r in _rows(table)]
    return "\n".join(lines)


def _csv_field(v) -> str:
    s = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return f'"{s.replace(chr(34), chr(34) * 2)}"' if any(c in s for c in ',"\r\n') else s


def _json(table: pa.Table) -> str:
    names = table.column_names
    rows = [dict(zip(names, map(_json_value, r))) for r in _rows(table)]
    return "[" + ",\n ".join(json.dumps(r, default=str) for r in rows) + "]"


def _json_value(v):
    """JSON has no NaN or infinity: those become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return _plain(v)
