"""Operators of catalog statements and of plain SQL over result tables."""

from __future__ import annotations

import os

import pyarrow as pa

from kryptondb.approx.drilldown import DEFAULT_RATIO, DEFAULT_TARGET
from kryptondb.catalog import RELATIONS, Database, relation_names
from kryptondb.catalog.export import write_table
from kryptondb.errors import CatalogError, KryptonError, StorageError, UnknownNameError
from kryptondb.media.images import load_image, preprocess_text
from kryptondb.media.video import probe
from kryptondb.model.binding import resolve
from kryptondb.model.model import load_model
from kryptondb.model.zoo import ZOO
from kryptondb.obe import tuning
from kryptondb.orv.feature_tuning import tune_scale
from kryptondb.result import Result
from kryptondb.runtime.backends import get_backend
from kryptondb.sql import default_sandbox


def create_model(node, inputs, ctx) -> Result:
    """Register (or replace) a model. The file is imported now, so a missing, corrupt or
    unsupported one fails here; the import is cached by content digest, so the statements that
    use the model next reuse it. A zoo model's name may be taken: the registered model then
    shadows the zoo model in this database, for every spelling of the name (said here, in
    EXPLAIN and DESCRIBE); a different spelling of a zoo name is refused, as it would leave the
    zoo name bound to something else than what the user registered."""
    name = node.arg("name")
    zoo = name.lower() if name.lower() in ZOO else None
    if zoo is not None and name != zoo:
        raise CatalogError(f"model name {name!r} differs from the zoo model {zoo!r} only in case: "
                           f"name it {zoo!r} to shadow the zoo model in this database, or choose "
                           "another name")
    path = os.path.abspath(os.path.expanduser(node.arg("path")))
    load_model(path)  # validates: missing, corrupt or unsupported files fail here
    ctx.db.register_model(name, path, "onnx", node.arg("preprocess"))
    ref = resolve(ctx.db, name)
    _drop_stale_views(ctx.db, ref)
    model = ref.model
    note = (f"; it shadows the zoo model {zoo} in this database (DROP MODEL {name} to use the "
            "zoo's again)") if ref.shadows_zoo else ""
    return Result("message", message=f"created model {name} ({len(model.graph.nodes)} layers, "
                  f"input {model.input_shape}, {model.weights}; digest {ref.short_digest}; "
                  f"preprocessing {preprocessing(ref)}){note}")


def preprocessing(ref) -> str:
    """The preprocessing a bound model runs, as KQL, and whether it was declared: IMAGENET
    spelled out, since its sizes follow the model's input."""
    pre = ref.model.preprocess
    if pre is None:
        return "none: images are refused, pass tensors"
    shown = f"IMAGENET = {preprocess_text(pre, named=False)}" if pre.is_imagenet else str(pre)
    if ref.declared is not None:
        return f"{shown} (declared)"
    whose = "the zoo model's" if ref.kind == "zoo" else "the default for its input"
    return f"{shown} ({whose}; CREATE MODEL ... PREPROCESS declares another)"


def _drop_stale_views(db, ref) -> None:
    """Views of a replaced model's old weights can never be read again (their names hold the old
    digest): drop them instead of leaving them on disk. This is clean-up after the statement's
    commit (the model is replaced): a drop that fails leaves garbage that the next CREATE MODEL
    of this name drops, and never reports the statement as failed."""
    for name, entry in db.tables("view").items():
        info = entry.info or {}
        if info.get("model") == ref.entry and info.get("digest") not in (None, ref.digest):
            try:
                db.drop("view", name, if_exists=True)
            except StorageError:
                return


def load_media(node, inputs, ctx) -> Result:
    kind, name = node.arg("kind"), node.arg("name")
    path = os.path.abspath(os.path.expanduser(node.arg("path")))
    if kind == "image":
        img = load_image(path)
        info = {"width": img.size[0], "height": img.size[1]}
    else:
        info = probe(path)
    ctx.db.add_media(name, kind, path, info)
    size = f"{info['width']}x{info['height']}"
    return Result("message", message=f"loaded {kind} {name} ({size}) from {path}")


def tune(node, inputs, ctx) -> Result:
    """Tune approximate occlusion for a model on sample images; the result is a catalog table.
    The heatmaps are computed in a scratch in-memory database (no views left behind) bound to
    the same weights."""
    images, grid = list(node.arg("images")), node.arg("grid")
    ref, (patch, _), (stride, _) = node.arg("model"), grid.window, grid.strides
    scratch = _Scratch(ctx, ref, f"USING MODEL {ref.entry} PATCH {patch} STRIDE {stride} "
                                 f"FILL {node.arg('fill').text}")
    t = tuning.tune(ref, images, scratch.occlude, patch, stride)
    name = tuning.table_name(t.model, t.patch, t.stride)
    ctx.db.put_table(name, t.table, info=t.info() | {"digest": ref.digest})
    lines = [f"tuned {t.model} at patch {t.patch}, stride {t.stride} on {len(images)} image(s); "
             f"stored as table {name}"]
    for q in (0.95, 0.9, 0.8):
        c = t.for_ssim(q)
        lines.append(f"  SSIM >= {q:g}: {c.why}")
    ctx.stats(node).update(rows=len(images))
    return Result("message", message="\n".join(lines))


def tune_video(node, inputs, ctx) -> Result:
    """TUNE ... ON VIDEO: the FEATURE THRESHOLD scale that keeps the target top-1 agreement on
    the video's first frames (kryptondb/orv/feature_tuning.py); the curve is a catalog table."""
    ref, (chunks,) = node.arg("model"), inputs
    model = ctx.model(ref)
    frames = [x for _, x in chunks]
    t = tune_scale(model, get_backend("onnxruntime"), frames, node.arg("agreement"),
                   node.arg("keyframe_every"))
    name = f"tuning_{ref.name}_video"
    ctx.db.put_table(name, t.table(), info={"model": ref.name, "digest": ref.digest,
                                            "target": t.target, "scale": t.scale})
    best = next(c for c in t.candidates if c.scale == t.scale)
    lines = [f"tuned FEATURE THRESHOLD for {ref.name} on {t.frames} frame(s): scale "
             f"{t.scale:g} keeps {best.agreement:.1%} top-1 agreement (target {t.target:g}), "
             f"{best.flops_share:.0%} of the FLOPs; stored as table {name}",
             "  per-layer thresholds: " + ", ".join(f"{g} {v:.3g}" for g, v in t.thresholds)]
    ctx.stats(node).update(rows=t.frames)
    return Result("message", message="\n".join(lines))


class _Scratch:
    """TUNE's occlusion queries, each through bind, rewrite, lower and run in a scratch
    in-memory database whose model name binds to ``ref``'s weights; one image's views at a
    time."""

    def __init__(self, ctx, ref, using: str):
        self.db = Database()
        if ref.registered:  # the scratch database must bind the name to the same model
            self.db.register_model(ref.entry, ref.source, ref.kind, ref.declared)
        if resolve(self.db, ref.entry).digest != ref.digest:
            raise KryptonError(f"model {ref.name} changed while TUNE started; run it again")
        self.ctx, self.using, self.memo, self.image = ctx, using, {}, None

    def occlude(self, image: str, tau: float | None, drill: bool):
        """The heatmap of ``image``: exact (``tau`` None) or approximate at ``tau``."""
        if image != self.image:  # the last image's views are not needed again
            for view in self.db.names("view"):
                self.db.drop("view", view)
            self.image = image
        how = "INCREMENTAL" if tau is None else f"APPROXIMATE TAU {tau}" + (
            f" DRILLDOWN {DEFAULT_RATIO} TARGET {DEFAULT_TARGET}" if drill else "")
        quoted = "'" + image.replace("'", "''") + "'"
        return self.run(f"EXPLAIN OCCLUSION OF IMAGE {quoted} {self.using} {how}").probability

    def run(self, text: str):
        return self.ctx.subquery(self.db, text, self.memo)


def show_catalog(node, inputs, ctx) -> Result:
    return Result("table", table=catalog_relation(ctx.db, node.arg("what")))


def catalog_relation(db, what: str) -> pa.Table:
    """A catalog relation; ``models`` also lists the zoo, usable without registration."""
    table = db.relation(what)
    if what != "models":
        return table
    registered = set(table.column("name").to_pylist())
    zoo = [{"name": n, "kind": "zoo", "source": n} for n in ZOO if n not in registered]
    return pa.concat_tables([table, pa.Table.from_pylist(zoo, schema=table.schema)])


def describe_model(node, inputs, ctx) -> Result:
    ref = node.arg("model")
    model = ctx.model(ref)
    d = model.describe()
    table = pa.table({
        "layer": [r.layer for r in d.rows], "op": [r.op for r in d.rows],
        "shape": ["x".join(map(str, r.shape)) for r in d.rows],
        "params": pa.array([r.params for r in d.rows], pa.int64()),
        "flops": pa.array([r.flops for r in d.rows], pa.int64()),
    })
    msg = (f"model {model.name}: {d.total_params:,} parameters, {d.total_flops / 1e9:.2f} GFLOPs "
           f"per image, input {'x'.join(map(str, model.input_shape))}; weights: {model.weights}; "
           f"{_origin(ref)}, digest {ref.short_digest}; preprocessing {preprocessing(ref)}")
    return Result("table", table=table, message=msg)


def _origin(ref) -> str:
    """Which model a name ran: a registered file or zoo entry, or the zoo itself."""
    if not ref.registered:
        return "zoo model"
    where = f"registered ONNX file {os.path.basename(ref.source)}" if ref.kind == "onnx" else \
        f"registered as zoo model {ref.source}"
    return where + (", which shadows the zoo model of that name" if ref.shadows_zoo else "")


def drop(node, inputs, ctx) -> Result:
    kind, name = node.arg("kind"), node.arg("name")
    existed = name in ctx.db.names(kind)
    ctx.db.drop(kind, name, if_exists=node.arg("if_exists"))
    return Result("message", message=f"dropped {kind} {name}" if existed else
                  f"no {kind} {name}; nothing dropped")


# -- SQL ------------------------------------------------------------------------------------------


def sql(node, inputs, ctx) -> pa.Table:
    """A SELECT over the relations the binder found in it, run by the connection's DuckDB."""
    tables = {name: _relation(ctx, name) for name in node.arg("tables")}
    sandbox = ctx.sql or default_sandbox()
    table = sandbox.run(node.arg("sql"), tables, ctx.text)
    ctx.stats(node).update(rows=table.num_rows)
    return table


def table_scan(node, inputs, ctx) -> pa.Table:
    """A table, view or catalog relation, whole (COPY's source)."""
    table = _relation(ctx, node.arg("table"))
    ctx.stats(node).update(rows=table.num_rows)
    return table


def copy(node, inputs, ctx) -> Result:
    """COPY: the input table written to the file (kryptondb/catalog/export.py)."""
    (table,) = inputs
    path = write_table(table, node.arg("path"), node.arg("format"))
    ctx.stats(node).update(rows=table.num_rows, bytes=os.path.getsize(path))
    rows = "1 row" if table.num_rows == 1 else f"{table.num_rows} rows"
    return Result("message", message=f"copied {rows} to {path}")


def _relation(ctx, name: str) -> pa.Table:
    if name.lower() in RELATIONS:
        return catalog_relation(ctx.db, name.lower())
    for kind in ("table", "view"):
        if name in ctx.db.names(kind):
            return ctx.db.get_table(name, kind)
    raise UnknownNameError("table", name, relation_names(ctx.db))
