"""What a statement returns: a table (always, as Arrow), plus a heatmap, a plan or a message."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from kryptondb.errors import KryptonError
from kryptondb.format import shorten
from kryptondb.obe.grid import Grid
from kryptondb.obe.layout import pixels
from kryptondb.obe.render import save_heatmap_png
from kryptondb.orv.sheet import contact_sheet
from kryptondb.tables import CELL_WIDTH, LIST_ITEMS, format_table, render

HTML_ROWS = 40  # rows a notebook shows of a long table (head and tail), as the text printer
HTML_HEATMAP_ROWS = 10  # a heatmap's table rows under its picture; the whole grid is the table
HTML_PICTURES = 4  # heatmap pictures drawn for a statement that made several


@dataclass(frozen=True, eq=False)
class Heatmap:
    """An occlusion heatmap: ``probability`` is the score of ``class_id`` (its probability, or
    its logit with SCORE LOGIT) with the window at each grid position; ``drop`` is the base
    score minus it. ``layout`` says what its table holds: a row per window (its corner) or per
    pixel (the mean drop of the windows covering it)."""

    probability: np.ndarray  # (rows, cols)
    base_probability: float
    class_id: int
    label: str
    patch: int
    stride: int
    image: np.ndarray  # (H, W, 3) in [0, 1]: the model's input, for overlays
    model: str = ""
    approximate: dict | None = None  # tau, drill-down, predicted SSIM ... of an approximate plan
    ssim: float | None = None  # against the exact heatmap, when one was at hand
    grid: Grid | None = None  # the windows; None: square ``patch``, one ``stride``, fit
    score: str = "probability"  # or 'logit'
    layout: str = "windows"  # or 'pixels'
    source: str | int | None = None  # which input: a path or name, or an index in a batch

    @property
    def drop(self) -> np.ndarray:
        return self.base_probability - self.probability

    @property
    def windows(self) -> Grid:
        if self.grid is not None:
            return self.grid
        return Grid(*self.image.shape[:2], self.patch, self.stride)

    def pixels(self) -> np.ndarray:
        """(H, W): each pixel the mean drop of the windows covering it."""
        return pixels(self.drop, self.windows)

    def values(self) -> np.ndarray:
        """The drops as the layout has them: (rows, cols) per window, or (H, W) per pixel."""
        return self.pixels() if self.layout == "pixels" else self.drop

    def columns(self) -> dict[str, pa.Array]:
        """(y, x, score, drop) per window (its corner), or (y, x, drop) per pixel."""
        if self.layout == "pixels":
            drop = self.pixels()
            ii, jj = np.meshgrid(np.arange(drop.shape[0]), np.arange(drop.shape[1]),
                                 indexing="ij")
            return {"y": pa.array(ii.ravel(), pa.int32()), "x": pa.array(jj.ravel(), pa.int32()),
                    "drop": pa.array(drop.ravel(), pa.float32())}
        corners = self.windows.corners()
        return {"y": pa.array(corners[:, 0], pa.int32()), "x": pa.array(corners[:, 1], pa.int32()),
                self.score: pa.array(self.probability.ravel(), pa.float32()),
                "drop": pa.array(self.drop.ravel(), pa.float32())}

    def meta(self) -> dict:
        g = self.windows
        return {"kind": "heatmap", "rows": g.rows, "cols": g.cols, "patch": self.patch,
                "stride": self.stride, "window": list(g.window), "strides": list(g.strides),
                "border": g.border, "score": self.score, "layout": self.layout,
                "class_id": self.class_id, "label": self.label,
                "base_probability": self.base_probability, "model": self.model,
                "approximate": self.approximate, "ssim": self.ssim}

    def to_arrow(self) -> pa.Table:
        return _with_meta(pa.table(self.columns()), self.meta())

    def save_png(self, path) -> str:
        """The drop over the image with a colour bar; returns the path written."""
        return save_heatmap_png(self, os.fspath(path))

    def _repr_png_(self) -> bytes:
        """The save_png picture, for notebooks."""
        with tempfile.TemporaryDirectory() as folder:
            with open(self.save_png(os.path.join(folder, "heatmap.png")), "rb") as f:
                return f.read()


@dataclass(frozen=True, eq=False)
class Heatmaps:
    """The heatmaps of one statement, one per input and class, as one table whose ``keys``
    columns ('image': a path, a name or an index; 'class') say which map a row is of."""

    maps: tuple[Heatmap, ...]
    keys: tuple[str, ...]

    def to_arrow(self) -> pa.Table:
        parts = [m.columns() for m in self.maps]
        rows = [len(p["y"]) for p in parts]
        cols: dict[str, pa.Array] = {}
        if "image" in self.keys:
            sources = [m.source for m in self.maps]
            kind = pa.int32() if all(isinstance(v, int) for v in sources) else pa.string()
            cols["image"] = pa.array(np.repeat(np.asarray(sources, object), rows), kind)
        if "class" in self.keys:
            cols["class"] = pa.array(np.repeat([m.class_id for m in self.maps], rows), pa.int32())
        for name in parts[0]:
            cols[name] = pa.concat_arrays([p[name] for p in parts])
        meta = self.maps[0].meta() | {"kind": "heatmaps", "maps": len(self.maps),
                                      "keys": list(self.keys)}
        for key in ("class_id", "label", "base_probability"):
            meta.pop(key)
        return _with_meta(pa.table(cols), meta)


def _optional(name: str):
    """The optional package ``name`` (pandas or polars), or a KryptonError saying how to get it."""
    try:
        if name == "pandas":
            import pandas as module  # optional: only Result.to_pandas() needs it
        else:
            import polars as module  # optional: only Result.to_polars() needs it
    except ImportError:
        raise KryptonError(f"{name} is not installed: pip install {name} "
                           f"(or pip install 'kryptondb[{name}]')") from None
    return module


def _with_meta(table: pa.Table, meta: dict) -> pa.Table:
    return table.replace_schema_metadata({b"kryptondb": json.dumps(meta).encode()})


class Later:
    """A table made on first read: ``Result(kind, table=Later(heatmap.to_arrow))`` converts a
    heatmap to Arrow only when someone reads it (a caller that reads ``heatmap`` never does: a
    third of a small model's query outside inference, before)."""

    def __init__(self, make):
        self.make = make


class _Table:
    """``Result.table``'s descriptor: a ``Later`` given for it is made on first read, then
    kept; anything else is the table (or None)."""

    def __set_name__(self, owner, name):
        self.slot = f"_{name}"

    def __get__(self, obj, owner=None):
        if obj is None:
            return None  # the dataclass field's default
        value = obj.__dict__.get(self.slot)
        if isinstance(value, Later):
            value = obj.__dict__[self.slot] = value.make()
        return value

    def __set__(self, obj, value):
        obj.__dict__[self.slot] = value


@dataclass(eq=False)
class Result:
    """``kind`` is 'table', 'heatmap', 'plan' or 'message'. Every result has a table."""

    kind: str
    table: pa.Table | None = _Table()  # type: ignore[assignment]  # a Later is made when read
    heatmap: Heatmap | None = None
    message: str = ""
    plan: object = None  # kryptondb.plan.explain.Explained for EXPLAIN PLAN, else the executed plan
    extra: dict = field(default_factory=dict)
    profile: object = None  # kryptondb.exec.profile.Profile: what the run measured per plan node
    heatmaps: tuple = ()  # every heatmap of an occlusion (``heatmap``: the one, when one)

    def to_arrow(self) -> pa.Table:
        if self.table is not None:
            return self.table
        if self.heatmap is not None:
            return self.heatmap.to_arrow()
        return pa.table({"message": [self.message]})

    def to_pandas(self):
        """The table (``to_arrow()``) as a pandas DataFrame; needs pandas."""
        _optional("pandas")
        return self.to_arrow().to_pandas()

    def to_polars(self):
        """The table (``to_arrow()``) as a polars DataFrame; needs polars."""
        pl = _optional("polars")
        return pl.from_arrow(self.to_arrow())

    def __arrow_c_stream__(self, requested_schema=None):
        """The Arrow PyCapsule stream of ``to_arrow()``: DuckDB (``duckdb.sql("SELECT ... FROM
        r")``), polars (``pl.DataFrame(r)``) and pyarrow (``pa.table(r)``) read a Result as a
        table without a copy."""
        return self.to_arrow().__arrow_c_stream__(requested_schema)

    def to_numpy(self) -> np.ndarray:
        """The heatmap's drop grid (rows x cols; H x W with LAYOUT PIXELS) for OBE, stacked
        in table order when there are several; else the table as a 2-D array of its numeric
        columns."""
        if self.heatmap is not None:
            return self.heatmap.values()
        if self.heatmaps:
            return np.stack([m.values() for m in self.heatmaps])
        t = self.to_arrow()
        cols = [c for c in t.column_names if pa.types.is_integer(t.schema.field(c).type)
                or pa.types.is_floating(t.schema.field(c).type)]
        return np.column_stack([t[c].to_numpy() for c in cols]) if cols else np.empty((0, 0))

    def save_png(self, path) -> str:
        """Heatmap over the image with a colour bar; returns the path written."""
        if self.heatmap is None:
            several = f" of {len(self.heatmaps)} heatmaps: draw one with " \
                "result.heatmaps[i].save_png(path)" if self.heatmaps else \
                ", not a heatmap: nothing to draw"
            raise KryptonError(f"this result is a {self.kind}{several}")
        return self.heatmap.save_png(path)

    def save_contact_sheet(self, path, frames: int = 24, columns: int = 6) -> str:
        """RECOGNIZE OBJECTS results: a PNG grid of up to ``frames`` frames (evenly spaced), each
        captioned with its top-1 label; returns the path written."""
        if self.table is None:
            raise KryptonError(f"this result is a {self.kind}, not video frames: nothing to draw")
        return contact_sheet(self.table, os.fspath(path), frames, columns)

    def _repr_html_(self) -> str:
        """A notebook's view: the table cut as the text printer cuts it (binary and tensor cells
        summarised); a heatmap's picture above its message and table head; a plan's text, or
        its SVG/HTML body."""
        if self.kind == "plan":
            return _plan_html(self.message, self.extra.get("format"))
        if self.kind == "message" and self.table is None:
            return f"<pre>{html.escape(self.message)}</pre>"
        maps = (self.heatmap,) if self.heatmap is not None else self.heatmaps
        parts = [_png_html(m._repr_png_()) for m in maps[:HTML_PICTURES]]
        if len(maps) > HTML_PICTURES:
            parts.append(f"<p>({HTML_PICTURES} of {len(maps)} heatmaps drawn: "
                         "result.heatmaps[i] draws any)</p>")
        if self.message:
            parts.append(f'<pre style="white-space: pre-wrap">{html.escape(self.message)}</pre>')
        parts.append(_table_html(self.to_arrow(), HTML_HEATMAP_ROWS if maps else HTML_ROWS,
                                 tail=not maps))
        return '<div class="kryptondb-result">\n' + "\n".join(parts) + "\n</div>"

    def __str__(self) -> str:
        if self.kind == "plan" or (self.kind == "message" and self.table is None):
            return self.message
        text = format_table(self.to_arrow())
        return f"{self.message}\n{text}" if self.message else text

    def __repr__(self) -> str:
        t = self.to_arrow()
        return f"<Result {self.kind}: {t.num_rows} rows x {t.num_columns} columns>"


def _plan_html(text: str, fmt: str | None) -> str:
    """FORMAT SVG as it is; FORMAT HTML's body (its page styles stay out of the notebook);
    a text plan in <pre>."""
    if fmt == "svg":
        return text
    if fmt == "html":
        body = re.search(r"<body[^>]*>(.*)</body>", text, re.S)
        return body.group(1) if body else text
    return f"<pre>{html.escape(text)}</pre>"


def _png_html(png: bytes) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="heatmap">'


def _table_html(table: pa.Table, max_rows: int, tail: bool = True) -> str:
    """An HTML table of at most ``max_rows`` rows (head and tail, or the head only) and a
    footer; cells are what kryptondb.tables.render shows (tensors as ``<float32 64x56x56>``)."""
    n = table.num_rows
    half = max_rows // 2 if tail else max_rows
    pieces = [table] if n <= max_rows else \
        [table.slice(0, half)] + ([None, table.slice(n - half)] if tail else [None])
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]
    right = ['' if not num else ' style="text-align: right"' for num in numeric]
    rows = []
    for piece in pieces:
        if piece is None:
            rows.append(f'<tr><td colspan="{max(1, table.num_columns)}">…</td></tr>')
            continue
        for values in json.loads(render(piece, "json"), object_pairs_hook=_Pairs):
            rows.append("<tr>" + "".join(f"<td{r}>{html.escape(_html_cell(v))}</td>"
                                         for r, (_, v) in zip(right, values)) + "</tr>")
    shown = sum(p.num_rows for p in pieces if p is not None)
    head = "".join(f"<th>{html.escape(name)}</th>" for name in table.column_names)
    footer = f"{n} row{'s' if n != 1 else ''}" + (f", {shown} shown" if shown < n else "")
    return (f'<table class="dataframe">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + f"\n</tbody>\n</table>\n<p>({footer})</p>")


class _Pairs(list):
    """A JSON object as its (name, value) pairs: a row's names may repeat."""


def _html_cell(v) -> str:
    """A value as the text printer shows it: NULL, 6 significant digits, long lists and texts
    cut."""
    if isinstance(v, _Pairs):  # a struct's value
        v = dict(v)
    if v is None:
        return "NULL"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list) and len(v) > LIST_ITEMS:
        return f"[{', '.join(map(_html_cell, v[:LIST_ITEMS]))}, … ({len(v)} items)]"
    return shorten(str(v), CELL_WIDTH)
