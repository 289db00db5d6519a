"""Bind a statement against the catalog and build its logical plan.

Binding resolves names (models, images, videos, tables), checks option values, and fills in
defaults, so every later stage sees explicit, valid arguments.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from kryptondb.errors import PlanError, UnknownNameError
from kryptondb.lang import ast
from kryptondb.plan.nodes import PlanNode, node

DEFAULT_PATCH, DEFAULT_STRIDE, DEFAULT_TOP = 16, 4, 5
DEFAULT_MEMORY_MB = 512
DEVICES = {"cpu": "onnxruntime", "onnxruntime": "onnxruntime", "ort": "onnxruntime",
           "numpy": "numpy", "gpu": "cupy", "cupy": "cupy"}


@dataclass(frozen=True)
class Options:
    """Statement-wide settings the rewrite rules read."""

    backend: str = "onnxruntime"
    memory_mb: int | None = None  # MEMORY; None: DEFAULT_MEMORY_MB unless BATCH fixes the batch
    batch: int | None = None
    incremental: bool | None = None  # NAIVE: False, INCREMENTAL: True, None: cost model decides
    approximate: ast.Approximate | None = None  # validated settings of APPROXIMATE


@dataclass
class Binder:
    db: object  # kryptondb.catalog.Database
    text: str = ""

    # -- errors ---------------------------------------------------------------------------
    def fail(self, message: str, span: ast.Span | None, expected=()) -> PlanError:
        span = span or ast.Span()
        return PlanError(message, self.text, span.line, span.column, span.length, tuple(expected))

    # -- names ----------------------------------------------------------------------------
    def model(self, name: ast.Name):
        """The Model a name refers to: a registered model first, then the zoo."""
        from kryptondb.model.model import load_model
        from kryptondb.model.zoo import ZOO

        models = self.db.models()
        if name.value in models:
            return load_model(models[name.value].source)
        if name.value.lower() in ZOO:
            return load_model(name.value.lower())
        raise UnknownNameError("model", name.value, sorted(set(models) | set(ZOO)), self.text,
                               name.span)

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

    def options(self, stmt) -> Options:
        device = getattr(stmt, "device", None)
        backend = "onnxruntime"
        if device is not None:
            if device.value not in DEVICES:
                raise self.fail(f"unknown device {device.value!r}", device.span,
                                ("CPU", "GPU", "NUMPY", "ONNXRUNTIME"))
            backend = DEVICES[device.value]
        return Options(backend, getattr(stmt, "memory_mb", None), getattr(stmt, "batch", None),
                       getattr(stmt, "incremental", None), getattr(stmt, "approximate", None))


# ---------------------------------------------------------------------------------------------
# Statement -> logical plan


def _positive(binder: Binder, value, what: str, span) -> None:
    if value is not None and value <= 0:
        raise binder.fail(f"{what} must be a positive integer, got {value}", span)


def plan_occlusion(b: Binder, s: ast.ExplainOcclusion) -> tuple[PlanNode, Options]:
    model = b.model(s.model)
    b.media_path(s.image, "image")  # the image must exist before anything is planned
    patch, stride = s.patch or DEFAULT_PATCH, s.stride or DEFAULT_STRIDE
    for value, what in ((s.patch, "PATCH"), (s.stride, "STRIDE"), (s.batch, "BATCH"),
                        (s.memory_mb, "MEMORY")):
        _positive(b, value, what, s.span)
    _, h, w = model.input_shape
    if patch > min(h, w):
        raise b.fail(f"PATCH {patch} is larger than the model's {h}x{w} input", s.span)
    if s.approximate is not None:
        _check_approximate(b, s, model.name, patch, stride, min(h, w))
    fill = s.fill or ast.Fill()
    if fill.kind not in ("constant", "gray", "black", "mean", "blur"):
        raise b.fail(f"unknown FILL {fill.kind.upper()!r}", s.span,
                     ("a number in [0, 1]", "GRAY", "BLACK", "MEAN", "BLUR"))
    img = node("ImageScan", **_scan_args(s.image))
    pre = node("Preprocess", img, model=model.name, shape=_shape(model.input_shape))
    base = node("Inference", pre, model=model.name)
    cls = node("ChooseClass", base, target=_target(b, model, s))
    rows, cols = (h - patch) // stride + 1, (w - patch) // stride + 1
    occ = node("Occlude", pre, patch=patch, stride=stride, fill=fill.text,
               positions=f"{rows}x{cols}")
    prob = node("ClassProbability", node("Inference", occ, model=model.name), cls)
    root = node("Heatmap", prob, base, cls, rows=rows, cols=cols)
    return _into(b, s, root), b.options(s)


def _check_tau(b: Binder, a: ast.Approximate) -> None:
    if a.tau is not None and not 0 < a.tau <= 1:
        raise b.fail(f"TAU must be in (0, 1], got {a.tau:g}", a.spans.get("tau"))


def _check_approximate(b: Binder, s: ast.ExplainOcclusion, model: str, patch: int,
                       stride: int, side: int) -> None:
    """Valid ranges for every approximate setting, and a tuning to read for accuracy targets."""
    from kryptondb.approx import drilldown as D
    from kryptondb.approx.tuning import lookup

    a = s.approximate
    where = a.spans.get
    if s.incremental is False:
        raise b.fail("NAIVE and APPROXIMATE exclude each other (approximate plans are "
                     "incremental)", a.span)
    _check_tau(b, a)
    if a.drilldown is not None:
        if not 0 < a.drilldown < 1:
            raise b.fail(f"DRILLDOWN fraction must be in (0, 1), got {a.drilldown:g}",
                         where("drilldown"))
        bound = 1 / a.drilldown
        if a.target is not None and not 1 <= a.target < bound:
            raise b.fail(f"TARGET speedup must be in [1, {bound:g}) for DRILLDOWN "
                         f"{a.drilldown:g} (drill-down speedup stays below 1/r), got "
                         f"{a.target:g}", where("drilldown"))
        if D.coarse_stride(stride, a.drilldown, a.target or D.default_target(a.drilldown)) \
                > side - patch:
            raise b.fail("DRILLDOWN: the first stage's stride leaves a single position; use a "
                         "smaller TARGET or a smaller PATCH", where("drilldown"))
    if a.ssim is not None and not 0 < a.ssim <= 1:
        raise b.fail(f"SSIM target must be in (0, 1], got {a.ssim:g}", where("ssim"))
    if a.within is not None and a.within <= 0:
        raise b.fail(f"WITHIN needs a positive number of seconds, got {a.within:g}",
                     where("within"))
    if a.tau is not None and (a.ssim is not None or a.within is not None):
        raise b.fail("give either TAU or an accuracy/time target (WITH SSIM, WITHIN), not both: "
                     "the planner picks tau for a target", where("tau"))
    if a.ssim is not None and a.within is not None:
        raise b.fail("give either WITH SSIM or WITHIN, not both", where("within"))
    if a.wants_target and lookup(b.db, model, patch, stride) is None:
        goal = "WITHIN" if a.within is not None else "an SSIM target"
        raise b.fail(f"{goal} needs a tuning of {model} at PATCH {patch} STRIDE {stride}, and "
                     f"there is none: run TUNE MODEL {model} PATCH {patch} STRIDE {stride} ON "
                     "IMAGES '<image files>' first, or give TAU", a.span)


def _target(b: Binder, model, s: ast.ExplainOcclusion):
    t = s.target_class
    if t is None:
        return "top1"
    if isinstance(t, int):
        classes = math.prod(model.graph[model.graph.output].shape)
        if not 0 <= t < classes:
            raise b.fail(f"class {t} is out of range: {model.name} has {classes} classes "
                         "(numbered from 0)", s.span)
        return t
    labels = [lab.lower() for lab in model.labels or ()]
    if t.lower() in labels:
        return labels.index(t.lower())
    close = [lab for lab in model.labels or () if t.lower() in lab.lower()][:8]
    raise b.fail(f"no class labelled {t!r} in {model.name}", s.span,
                 tuple(close) or ("a class id",))


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def _scan_args(ref: ast.Ref) -> dict:
    """How a scan names its media in plans: as written (stable across machines)."""
    return {"source": ref.value, "catalog": not ref.quoted}


def _into(b: Binder, s, root: PlanNode) -> PlanNode:
    if s.into is None:
        return root
    name = s.into.value
    if name.lower() in ("models", "images", "videos", "tables", "views"):
        raise b.fail(f"{name!r} is the name of a catalog relation; choose another table name",
                     s.into.span)
    return node("Store", root, table=name)


def plan_predict(b: Binder, s: ast.Predict) -> tuple[PlanNode, Options]:
    model = b.model(s.model)
    _positive(b, s.top, "TOP", s.span)
    img = node("ImageScan", **_scan_args(s.image))
    pre = node("Preprocess", img, model=model.name, shape=_shape(model.input_shape))
    top = node("TopK", node("Inference", pre, model=model.name), k=s.top or DEFAULT_TOP,
               model=model.name)
    return _into(b, s, top), b.options(s)


def plan_recognize(b: Binder, s: ast.RecognizeObjects) -> tuple[PlanNode, Options]:
    model = b.model(s.model)
    b.media_path(s.video, "video")
    _positive(b, s.top, "TOP", s.span)
    _positive(b, s.every, "EVERY", s.span)
    if s.frames is not None and s.frames[1] < s.frames[0]:
        raise b.fail(f"FRAMES {s.frames[0]} TO {s.frames[1]}: the range is empty", s.span)
    first, last = s.frames or (0, None)
    scan = node("VideoScan", **_scan_args(s.video), first=first, last=last, every=s.every or 1)
    pre = node("Preprocess", scan, model=model.name, shape=_shape(model.input_shape))
    inference = node("Inference", pre, model=model.name, **_video_settings(b, s))
    top = node("TopK", inference, k=s.top or DEFAULT_TOP, model=model.name)
    return _into(b, s, node("FrameLabels", top, **_scan_args(s.video))), b.options(s)


def _video_settings(b: Binder, s: ast.RecognizeObjects) -> dict:
    """Incremental video settings, checked: what the maintain_video_views rule reads."""
    a = s.approximate
    tau = a.tau if a is not None else None
    if a is not None and (a.drilldown, a.ssim, a.within) != (None, None, None):
        raise b.fail("video recognition takes APPROXIMATE TAU only", a.span)
    if a is not None:
        _check_tau(b, a)
    if s.threshold is not None and not 0 <= s.threshold <= 1:
        raise b.fail(f"THRESHOLD is a pixel difference in [0, 1] (e.g. 0.03 for 8 grey levels), "
                     f"got {s.threshold:g}", s.span)
    if s.keyframe_area is not None and not 0 < s.keyframe_area <= 1:
        raise b.fail(f"KEYFRAME AREA must be a share of the frame in (0, 1], got "
                     f"{s.keyframe_area:g}", s.span)
    for value, what in ((s.keyframe_every, "KEYFRAME EVERY"), (s.max_boxes, "BOXES")):
        _positive(b, value, what, s.span)
    settings = {"threshold": s.threshold, "tau": tau, "keyframe_every": s.keyframe_every,
                "keyframe_area": s.keyframe_area, "max_boxes": s.max_boxes,
                "agreement": s.agreement or None}
    if s.incremental is False and any(v is not None for k, v in settings.items()
                                      if k != "agreement"):
        raise b.fail("NAIVE runs full inference per frame: THRESHOLD, APPROXIMATE, KEYFRAME and "
                     "BOXES need the incremental plan", s.span)
    return {k: v for k, v in settings.items() if v is not None}


def plan_tune(b: Binder, s: ast.Tune) -> tuple[PlanNode, Options]:
    """TUNE: image references resolve now (catalog names, files, globs), so a typo fails here."""
    import glob

    model = b.model(s.model)
    for value, what in ((s.patch, "PATCH"), (s.stride, "STRIDE")):
        _positive(b, value, what, s.span)
    paths: list[str] = []
    for ref in s.images:
        if ref.quoted and any(c in ref.value for c in "*?["):
            found = sorted(glob.glob(os.path.expanduser(ref.value)))
            if not found:
                raise b.fail(f"no image file matches {ref.value!r}", ref.span)
            paths += [os.path.abspath(f) for f in found]
        else:
            paths.append(b.media_path(ref, "image"))
    fill = s.fill or ast.Fill()
    return node("Tune", model=model.name, patch=s.patch or DEFAULT_PATCH,
                stride=s.stride or DEFAULT_STRIDE, fill=fill.text,
                images="\n".join(paths)), b.options(s)


def plan_catalog(b: Binder, s) -> tuple[PlanNode, Options]:
    if isinstance(s, ast.CreateModel):
        return node("CreateModel", name=s.name.value, path=s.path.value), Options()
    if isinstance(s, ast.LoadMedia):
        return node("LoadMedia", kind=s.kind, path=s.path.value, name=s.name.value), Options()
    if isinstance(s, ast.Show):
        return node("ShowCatalog", what=s.what), Options()
    if isinstance(s, ast.Describe):
        b.model(s.model)
        return node("DescribeModel", model=s.model.value), Options()
    if isinstance(s, ast.Drop):
        return node("Drop", kind=s.kind, name=s.name.value, if_exists=s.if_exists), Options()
    assert isinstance(s, ast.Select)
    return node("Sql", sql=s.sql, tables=" ".join(_sql_tables(b, s.sql))), Options()


def _sql_tables(b: Binder, sql_text: str) -> list[str]:
    """The relations a SELECT reads, each checked against the catalog."""
    from kryptondb.engine.catalog_ops import parse_sql, relation_names

    names = []
    for t in parse_sql(sql_text, b.text).find_all(__import__("sqlglot").exp.Table):
        known = relation_names(b.db)
        if t.name not in known and t.name.lower() not in known:
            raise UnknownNameError("table", t.name, known)
        names.append(t.name)
    return sorted(set(names))


def bind(db, stmt: ast.Statement, text: str = "") -> tuple[PlanNode, Options]:
    """The logical plan of ``stmt`` and its options."""
    b = Binder(db, text)
    if isinstance(stmt, ast.ExplainOcclusion):
        return plan_occlusion(b, stmt)
    if isinstance(stmt, ast.Tune):
        return plan_tune(b, stmt)
    if isinstance(stmt, ast.Predict):
        return plan_predict(b, stmt)
    if isinstance(stmt, ast.RecognizeObjects):
        return plan_recognize(b, stmt)
    return plan_catalog(b, stmt)
