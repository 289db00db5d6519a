"""What a statement returns: a table (always, as Arrow), plus a heatmap, a plan or a message."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from kryptondb.errors import KryptonError
from kryptondb.obe.render import save_heatmap_png
from kryptondb.orv.sheet import contact_sheet
from kryptondb.tables import format_table


@dataclass(frozen=True, eq=False)
class Heatmap:
    """An occlusion heatmap: probability of ``class_id`` with the patch at each grid position."""

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

    @property
    def drop(self) -> np.ndarray:
        return self.base_probability - self.probability

    def to_arrow(self) -> pa.Table:
        rows, cols = self.probability.shape
        ii, jj = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        meta = {"kind": "heatmap", "rows": rows, "cols": cols, "patch": self.patch,
                "stride": self.stride, "class_id": self.class_id, "label": self.label,
                "base_probability": self.base_probability, "model": self.model,
                "approximate": self.approximate, "ssim": self.ssim}
        table = pa.table({
            "y": pa.array((ii * self.stride).ravel(), pa.int32()),
            "x": pa.array((jj * self.stride).ravel(), pa.int32()),
            "probability": pa.array(self.probability.ravel(), pa.float32()),
            "drop": pa.array(self.drop.ravel(), pa.float32()),
        })
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

    def to_arrow(self) -> pa.Table:
        if self.table is not None:
            return self.table
        if self.heatmap is not None:
            return self.heatmap.to_arrow()
        return pa.table({"message": [self.message]})

    def to_numpy(self) -> np.ndarray:
        """The heatmap's probability-drop grid (rows x cols) for OBE; else the table as a 2-D
        array of its numeric columns."""
        if self.heatmap is not None:
            return self.heatmap.drop
        t = self.to_arrow()
        cols = [c for c in t.column_names if pa.types.is_integer(t.schema.field(c).type)
                or pa.types.is_floating(t.schema.field(c).type)]
        return np.column_stack([t[c].to_numpy() for c in cols]) if cols else np.empty((0, 0))

    def save_png(self, path) -> str:
        """Heatmap over the image with a colour bar; returns the path written."""
        if self.heatmap is None:
            raise KryptonError(f"this result is a {self.kind}, not a heatmap: nothing to draw")
        return save_heatmap_png(self.heatmap, os.fspath(path))

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
