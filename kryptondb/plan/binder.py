"""Bind a statement against the catalog and build its logical plan.

Binding resolves names (models, images, videos, tables), checks option values, and fills in
defaults, so every later stage sees explicit, valid arguments.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from kryptondb.catalog import RELATIONS, relation_names
from kryptondb.catalog.export import CHOICES, check_target, format_of
from kryptondb.errors import DeviceMissingError, FileError, PlanError, UnknownNameError
from kryptondb.lang import ast
from kryptondb.model.binding import resolve
from kryptondb.obe.grid import Grid
from kryptondb.plan import option_ranges as ranges
from kryptondb.plan.inputs import (baseline, check_images, image_files, image_set, input_scan,
                                   scan_args, video_set)
from kryptondb.plan.nodes import PlanNode, node
from kryptondb.plan.preprocessing import bind_preprocess
from kryptondb.plan.ops import Op
from kryptondb.plan.values import Classes
from kryptondb.runtime.gpu import gpu_missing
from kryptondb.sql import relations

DEVICES = {"cpu": "onnxruntime", "onnxruntime": "onnxruntime", "ort": "onnxruntime",
           "numpy": "numpy", "gpu": "cupy", "cupy": "cupy"}


@dataclass(frozen=True)
class Options:
    """Statement-wide settings the rewrite rules read."""

    backend: str = "onnxruntime"
    memory_mb: int | None = None  # MEMORY; None: the default unless BATCH fixes the batch
    batch: int | None = None
    incremental: bool | None = None  # NAIVE: False, INCREMENTAL: True, None: cost model decides
    approximate: ast.Approximate | None = None  # validated settings of APPROXIMATE
    spans: dict = field(default_factory=dict, compare=False)  # option -> Span, for carets


@dataclass
class Binder:
    db: object  # kryptondb.catalog.Database
    text: str = ""
    params: tuple = ()  # the values of the statement's ``?``, in order

    def param(self, p: ast.Param):
        """The value given for the ``?`` ``p``."""
        if p.index >= len(self.params):
            raise self.fail(f"no value for parameter ?{p.index + 1}: give one per ? in "
                            f"execute(text, [value, ...]) ({len(self.params)} given)", p.span)
        return self.params[p.index]

    # -- errors ---------------------------------------------------------------------------
    def fail(self, message: str, span: ast.Span | None, expected=()) -> PlanError:
        span = span or ast.Span()
        return PlanError(message, self.text, span.line, span.column, span.length, tuple(expected))

    # -- names ----------------------------------------------------------------------------
    def model(self, name: ast.Name):
        """Bind a model name once (kryptondb/model/binding.py): the ModelRef every later stage
        uses. A registered model first, then the zoo."""
        try:
            return resolve(self.db, name.value)
        except UnknownNameError as exc:
            raise UnknownNameError(exc.kind, exc.name, exc.known, self.text, name.span) from None

    def media_path(self, ref: ast.Ref, kind: str) -> str:
        if ref.quoted:
            path = os.path.abspath(os.path.expanduser(ref.value))
            if not os.path.exists(path):
                raise self.fail(f"{kind} file {ref.value!r} does not exist", ref.span)
            return path
        media = self.db.media(kind)
        if ref.value not in media:
            raise UnknownNameError(kind, ref.value, sorted(media), self.text, ref.span)
        return media[ref.value].path

    def _on_span(self, span: ast.Span) -> tuple[int, int, int]:
        """(line, column, length) of ``ON <device>``: the device name's span widened to the ON
        before it on its line."""
        lines = self.text.split("\n")
        before = lines[span.line - 1][:span.column - 1].rstrip() if span.line <= len(lines) else ""
        if not before.upper().endswith("ON"):
            return span.line, span.column, span.length
        start = len(before) - 1
        return span.line, start, span.column + span.length - start

    def options(self, stmt) -> Options:
        device = getattr(stmt, "device", None)
        backend = "onnxruntime"
        if device is not None:
            if device.value not in DEVICES:
                raise self.fail(f"unknown device {device.value!r}", device.span,
                                ("CPU", "GPU", "NUMPY", "ONNXRUNTIME"))
            backend = DEVICES[device.value]
            why = gpu_missing() if backend == "cupy" else None
            if why is not None:
                raise DeviceMissingError(f"ON {device.value.upper()} cannot run here: {why}",
                                         self.text, *self._on_span(device.span))
        return Options(backend, getattr(stmt, "memory_mb", None), getattr(stmt, "batch", None),
                       getattr(stmt, "incremental", None), getattr(stmt, "approximate", None),
                       stmt.spans)


# ---------------------------------------------------------------------------------------------
# Statement -> logical plan


def plan_occlusion(b: Binder, s: ast.ExplainOcclusion) -> tuple[PlanNode, Options]:
    model = b.model(s.model)
    pre, count, images = input_scan(b, s, model)  # they must exist before anything is planned
    window, strides, fill = ranges.check_occlusion(b, s, model)
    _, h, w = model.input_shape
    # the positions, computed once: every later stage reads them
    grid = Grid(h, w, window, strides, "cut" if s.grid == "cover" else "fit")
    score = "logit" if s.score == "logit" else None  # the default, probability, goes unsaid
    several = not isinstance(s.image, ast.Ref)
    base = node(Op.INFERENCE, pre, **_given(model=model, score=score))
    target = _target(b, model, s)
    cls = node(Op.CHOOSE_CLASS, base, target=target)
    occ = node(Op.OCCLUDE, pre, **_given(grid=grid, fill=fill, inputs=count if several else None,
                                         baseline=baseline(b, s, (count, *model.input_shape))))
    prob = node(Op.CLASS_PROBABILITY, node(Op.INFERENCE, occ, model=model), cls,
                **_given(score=score))
    keys = ("image",) * several + ("class",) * (several or not isinstance(target, (int, str))
                                                or target == "all")
    root = node(Op.HEATMAP, prob, base, cls, **_given(
        rows=grid.rows, cols=grid.cols, keys=keys or None, images=images,
        layout="pixels" if s.layout == "pixels" else None))
    return _into(b, s, root), b.options(s)


def _given(**args) -> dict:
    """The arguments that are set: a default is left unsaid, so plans show what was asked."""
    return {k: v for k, v in args.items() if v is not None}


def _target(b: Binder, model, s: ast.ExplainOcclusion):
    """'top1' (each input's own top class), a class id, Classes, or 'all'."""
    t = s.target_class
    if t is None:
        return "top1"
    if not isinstance(t, ast.Classes):
        return _class_id(b, model, s, t)
    if t.every:
        return "all"
    ids = tuple(_class_id(b, model, s, item) for item in t.items)
    twice = [c for i, c in enumerate(ids) if c in ids[:i]]
    if twice:
        raise b.fail(f"FOR CLASSES names class {twice[0]} twice", ranges.where(s, "target_class"))
    return Classes(ids)


def _class_id(b: Binder, model, s: ast.ExplainOcclusion, t: int | str) -> int:
    if isinstance(t, int):
        classes = math.prod(model.graph[model.graph.output].shape)
        if not 0 <= t < classes:
            raise b.fail(f"class {t} is out of range: {model.name} has {classes} classes "
                         "(numbered from 0)", ranges.where(s, "target_class"))
        return t
    labels = [lab.lower() for lab in model.labels or ()]
    if t.lower() in labels:
        return labels.index(t.lower())
    close = [lab for lab in model.labels or () if t.lower() in lab.lower()][:8]
    raise b.fail(f"no class labelled {t!r} in {model.name}", ranges.where(s, "target_class"),
                 tuple(close) or ("a class id",))


def _into(b: Binder, s, root: PlanNode) -> PlanNode:
    """Store the result as table ``s.into``: refused now, before the query runs, when the name
    is a catalog relation's or a view's, or a table's without OR REPLACE."""
    if s.into is None:
        return root
    name = s.into.value
    if name.lower() in RELATIONS:
        raise b.fail(f"{name!r} is the name of a catalog relation; choose another table name",
                     s.into.span)
    if name in b.db.names("view"):
        raise b.fail(f"view {name!r} exists, and tables and views share one namespace; choose "
                     "another table name", s.into.span)
    if name in b.db.names("table") and not s.or_replace:
        raise b.fail(f"table {name!r} exists; use INTO OR REPLACE {name}", s.into.span)
    return node(Op.STORE, root, table=name, **_given(or_replace=s.or_replace or None))


def plan_predict(b: Binder, s: ast.Predict) -> tuple[PlanNode, Options]:
    model = b.model(s.model)
    if isinstance(s.image, ast.Images):  # PREDICT IMAGES: resolved now, errors at the set
        scan = {"images": image_set(b, s.image)}
    else:
        b.media_path(s.image, "image")  # a name or file that is not there fails here
        scan = scan_args(s.image)
    check_images(b, model, s.image.span, "explain it with a tensor (EXPLAIN OCCLUSION OF ?)")
    k = ranges.check_top(b, s, model)
    img = node(Op.IMAGE_SCAN, **scan)
    pre = node(Op.PREPROCESS, img, model=model, shape=tuple(model.input_shape))
    top = node(Op.TOP_K, node(Op.INFERENCE, pre, model=model), k=k, model=model)
    return _into(b, s, top), b.options(s)


def plan_recognize(b: Binder, s: ast.RecognizeObjects) -> tuple[PlanNode, Options]:
    model = b.model(s.model)
    if isinstance(s.video, ast.Videos):  # IN VIDEOS: resolved now, errors at the set
        source = {"videos": video_set(b, s.video)}
    else:
        b.media_path(s.video, "video")
        source = scan_args(s.video)
    k = ranges.check_top(b, s, model)
    ranges.check_video(b, s)
    first, last = s.frames or (0, None)
    scan = node(Op.VIDEO_SCAN, **source, first=first, last=last, every=s.every or 1)
    pre = node(Op.PREPROCESS, scan, model=model, shape=tuple(model.input_shape))
    inference = node(Op.INFERENCE, pre, model=model, **_video_settings(b, s))
    top = node(Op.TOP_K, inference, k=k, model=model)
    return _into(b, s, node(Op.FRAME_LABELS, top, **source)), b.options(s)


def _video_settings(b: Binder, s: ast.RecognizeObjects) -> dict:
    """Incremental video settings (checked by ranges.check_video): what the
    maintain_video_views rule reads."""
    tau = s.approximate.tau if s.approximate is not None else None
    return _given(threshold=s.threshold, feature_scale=s.feature_scale, tau=tau, keyframe_every=s.keyframe_every,
                  keyframe_area=s.keyframe_area, max_boxes=s.max_boxes,
                  agreement=s.agreement or None)


def plan_tune(b: Binder, s: ast.Tune) -> tuple[PlanNode, Options]:
    """TUNE: image references resolve now (catalog names, files, globs), so a typo fails here."""
    model = b.model(s.model)
    window, strides = ranges.check_window(b, s, model)
    fill = ranges.check_fill(b, s)
    paths, _ = image_files(b, s.images)
    _, h, w = model.input_shape
    return node(Op.TUNE, model=model, grid=Grid(h, w, window, strides), fill=fill,
                images=tuple(paths)), b.options(s)


def plan_tune_video(b: Binder, s: ast.TuneVideo) -> tuple[PlanNode, Options]:
    """TUNE ... ON VIDEO: the video's first frames (FRAMES a TO b; default the first
    TUNE_FRAMES) through the model's preprocessing into the tuning of FEATURE THRESHOLD."""
    model = b.model(s.model)
    b.media_path(s.video, "video")
    ranges.check_tune_video(b, s)
    first, last = s.frames or (0, ranges.TUNE_FRAMES - 1)
    scan = node(Op.VIDEO_SCAN, **scan_args(s.video), first=first, last=last, every=1)
    pre = node(Op.PREPROCESS, scan, model=model, shape=tuple(model.input_shape))
    return node(Op.TUNE_VIDEO, pre, model=model, agreement=s.agreement or ranges.TUNE_TARGET,
                keyframe_every=s.keyframe_every), b.options(s)


def plan_catalog(b: Binder, s) -> tuple[PlanNode, Options]:
    if isinstance(s, ast.CreateModel):
        return node(Op.CREATE_MODEL, name=s.name.value, path=s.path.value,
                    preprocess=bind_preprocess(b, s)), Options()
    if isinstance(s, ast.LoadMedia):
        return node(Op.LOAD_MEDIA, kind=s.kind, path=s.path.value, name=s.name.value), Options()
    if isinstance(s, ast.Show):
        return node(Op.SHOW_CATALOG, what=s.what), Options()
    if isinstance(s, ast.Describe):
        return node(Op.DESCRIBE_MODEL, model=b.model(s.model)), Options()
    if isinstance(s, ast.Drop):
        return node(Op.DROP, kind=s.kind, name=s.name.value, if_exists=s.if_exists), Options()
    assert isinstance(s, ast.Select)
    return node(Op.SQL, sql=s.sql, tables=tuple(_sql_tables(b, s.sql))), Options()


def plan_copy(b: Binder, s: ast.Copy) -> tuple[PlanNode, Options]:
    """COPY: the format and the target are checked now, so a typo never waits for the query."""
    fmt = format_of(s.path.value, s.format.value if s.format is not None else None)
    if fmt is None:
        where = s.format or s.path
        what = f"format {where.value!r}" if s.format else f"the extension of {s.path.value!r}"
        raise b.fail(f"unknown COPY format: {what}", where.span,
                     (f"{CHOICES}; or (FORMAT parquet | csv | json) after the path",))
    try:
        target = check_target(s.path.value)
    except FileError as exc:
        raise b.fail(str(exc), s.path.span) from None
    home = None if b.db.path is None else os.path.realpath(b.db.path)
    if home is not None and os.path.commonpath([os.path.realpath(target), home]) == home:
        raise b.fail(f"cannot write COPY file {target!r}: it is inside the database directory "
                     f"{str(b.db.path)!r}, whose files are the database's own", s.path.span)
    if isinstance(s.source, ast.Select):
        source = node(Op.SQL, sql=s.source.sql, tables=tuple(_sql_tables(b, s.source.sql)))
    else:
        source = node(Op.TABLE_SCAN, table=_relation_name(b, s.source))
    return node(Op.COPY, source, path=s.path.value, format=fmt), Options()


def _relation_name(b: Binder, name: ast.Name) -> str:
    """A table, view or catalog relation (any case, like SQL's ``FROM models``) by name."""
    if name.value.lower() in RELATIONS:
        return name.value.lower()
    if name.value in b.db.names("table") or name.value in b.db.names("view"):
        return name.value
    raise UnknownNameError("table", name.value, relation_names(b.db), b.text, name.span)


def _sql_tables(b: Binder, sql_text: str) -> list[str]:
    """The relations a SELECT reads, each checked against the catalog (kryptondb.sql)."""
    return relations(sql_text, relation_names(b.db), b.text)


def bind(db, stmt: ast.Statement, text: str = "", params=()) -> tuple[PlanNode, Options]:
    """The logical plan of ``stmt`` and its options; ``params`` are the values of its ``?``."""
    b = Binder(db, text, tuple(params))
    if isinstance(stmt, ast.ExplainOcclusion):
        return plan_occlusion(b, stmt)
    if isinstance(stmt, ast.Tune):
        return plan_tune(b, stmt)
    if isinstance(stmt, ast.TuneVideo):
        return plan_tune_video(b, stmt)
    if isinstance(stmt, ast.Predict):
        return plan_predict(b, stmt)
    if isinstance(stmt, ast.RecognizeObjects):
        return plan_recognize(b, stmt)
    if isinstance(stmt, ast.Copy):
        return plan_copy(b, stmt)
    return plan_catalog(b, stmt)
