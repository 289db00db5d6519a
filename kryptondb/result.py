"""What a statement returns: a table (always, as Arrow), plus a heatmap, a plan or a message."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from kryptondb.errors import KryptonError
from kryptondb.obe.grid import Grid
from kryptondb.obe.layout import pixels
from kryptondb.obe.render import save_heatmap_png
from kryptondb.orv.sheet import contact_sheet
from kryptondb.tables import format_table


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


@dataclass(eq=False)
class Result:
    """``kind`` is 'table', 'heatmap', 'plan' or 'message'. Every result has a table."""

    kind: str
    table: pa.Table | None = None
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

    def __str__(self) -> str:
        if self.kind == "plan" or (self.kind == "message" and self.table is None):
            return self.message
        text = format_table(self.to_arrow())
        return f"{self.message}\n{text}" if self.message else text

    def __repr__(self) -> str:
        t = self.to_arrow()
        return f"<Result {self.kind}: {t.num_rows} rows x {t.num_columns} columns>"
