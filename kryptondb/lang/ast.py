"""Typed AST for KQL statements: frozen dataclasses, each with the source span it came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Span:
    """Where a piece of a query is: 1-based line/column of its start, and its length."""

    line: int = 1
    column: int = 1
    length: int = 1
    start: int = 0  # character offset in the query text


@dataclass(frozen=True, slots=True)
class Ref:
    """A name or a quoted path, as written (images, videos)."""

    value: str
    quoted: bool
    span: Span = field(default_factory=Span, compare=False)


@dataclass(frozen=True, slots=True)
class Name:
    value: str
    span: Span = field(default_factory=Span, compare=False)


@dataclass(frozen=True, slots=True)
class Param:
    """A ``?``: the ``index``-th value (from 0) given with the statement text,
    ``Connection.execute(text, [value, ...])``. Values are bound, never pasted into text."""

    index: int
    span: Span = field(default_factory=Span, compare=False)


@dataclass(frozen=True, slots=True)
class Images:
    """OF IMAGES: a quoted path or glob (``'dir/*.png'``), a list of paths and names
    (``('a.png', cat)``), or a table of them (``TABLE t``)."""

    refs: tuple[Ref, ...] = ()
    table: Name | None = None
    listed: bool = False  # written as a parenthesised list
    span: Span = field(default_factory=Span, compare=False)


@dataclass(frozen=True, slots=True)
class Videos:
    """IN VIDEOS: a quoted path or glob (``'dir/*.mp4'``), or a list of paths and names
    (``('a.mp4', clip)``)."""

    refs: tuple[Ref, ...] = ()
    listed: bool = False  # written as a parenthesised list
    span: Span = field(default_factory=Span, compare=False)


@dataclass(frozen=True, slots=True)
class TensorRef:
    """OF TENSOR '<file.npy>', OF TENSOR ? or OF ?: a tensor in the model's input space."""

    source: Ref | Param
    span: Span = field(default_factory=Span, compare=False)


@dataclass(frozen=True, slots=True)
class Classes:
    """FOR CLASSES (a, b, ...): ids or labels as written; FOR ALL CLASSES: ``every``."""

    items: tuple[int | str, ...] = ()
    every: bool = False


@dataclass(frozen=True, slots=True)
class Approximate:
    """APPROXIMATE [TAU t] [DRILLDOWN r [TARGET s]] [WITH SSIM >= q] [WITHIN n SECONDS]."""

    tau: float | None = None
    drilldown: float | None = None
    target: float | None = None
    ssim: float | None = None
    within: float | None = None
    spans: dict = field(default_factory=dict, compare=False)  # option -> Span, for errors
    span: Span = field(default_factory=Span, compare=False)

    @property
    def wants_target(self) -> bool:
        """Settings come from a target (WITH SSIM, WITHIN, or a bare APPROXIMATE = SSIM 0.9)."""
        return self.ssim is not None or self.within is not None or (
            self.tau is None and self.drilldown is None)


@dataclass(frozen=True, slots=True)
class Fill:
    """Occlusion fill: a constant pixel value in [0, 1], or 'mean', 'blur', 'gray', 'black'."""

    kind: str = "gray"
    value: float = 0.5

    @staticmethod
    def named(name: str) -> "Fill":
        name = name.lower()
        return Fill(name, 0.0 if name == "black" else 0.5)

    @property
    def text(self) -> str:
        return f"{self.value:g}" if self.kind == "constant" else self.kind


@dataclass(frozen=True, slots=True)
class Statement:
    span: Span = field(default_factory=Span, compare=False, kw_only=True)
    spans: dict = field(default_factory=dict, compare=False, kw_only=True)  # option -> Span
    params: int = field(default=0, compare=False, kw_only=True)  # how many ``?`` it holds


@dataclass(frozen=True, slots=True)
class ExplainOcclusion(Statement):
    image: Ref | Images | TensorRef  # what is explained (OF IMAGE, OF IMAGES, OF TENSOR / ?)
    model: Name
    target_class: int | str | Classes | None = None  # FOR CLASS, FOR [ALL] CLASSES
    patch: int | tuple[int, int] | None = None  # PATCH p, or PATCH h w
    stride: int | tuple[int, int] | None = None  # STRIDE s, or STRIDE sy sx
    fill: Fill | None = None
    baseline: float | Param | None = None  # BASELINE: in the model's input space
    score: str | None = None  # 'logit' | 'probability'
    grid: str | None = None  # 'cover' | 'fit'
    layout: str | None = None  # 'pixels' | 'windows'
    approximate: Approximate | None = None
    # None: the planner decides (cost model); False: NAIVE, one full inference per position;
    # True: INCREMENTAL, view maintenance forced
    incremental: bool | None = None
    batch: int | None = None
    memory_mb: int | None = None
    device: Name | None = None
    into: Name | None = None
    or_replace: bool = False  # INTO OR REPLACE: an existing table of that name is replaced


@dataclass(frozen=True, slots=True)
class RecognizeObjects(Statement):
    video: Ref | Videos  # IN VIDEO v, or IN VIDEOS ...: one result table with a video column
    model: Name
    top: int | None = None
    frames: tuple[int, int] | None = None
    every: int | None = None
    threshold: float | None = None  # pixel units in [0, 1]; 0: exact
    feature_scale: float | None = None  # FEATURE THRESHOLD: scale of per-layer thresholds
    approximate: Approximate | None = None
    incremental: bool | None = None  # NAIVE: False; default: incremental over the last frame
    keyframe_every: int | None = None
    keyframe_area: float | None = None
    max_boxes: int | None = None
    agreement: bool = False
    device: Name | None = None
    into: Name | None = None
    or_replace: bool = False  # INTO OR REPLACE: an existing table of that name is replaced


@dataclass(frozen=True, slots=True)
class Predict(Statement):
    image: Ref | Images  # IMAGE i, or IMAGES ...: one result table with an image column
    model: Name
    top: int | None = None
    device: Name | None = None
    into: Name | None = None
    or_replace: bool = False  # INTO OR REPLACE: an existing table of that name is replaced


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """PREPROCESS NONE | IMAGENET | [(] [RESIZE r | RESIZE h w] [CROP c | CROP h w] [SCALE k]
    [MEAN (m, ...)] [STD (s, ...)] [)], as written (checked and made a Preprocess by the
    binder, plan/preprocessing.py). ``spans``: each step's, and each MEAN/STD value's
    (``"std.0"``, ...)."""

    kind: str  # 'none' | 'imagenet' | 'steps'
    resize: tuple[int, ...] | None = None  # (r,): the shorter side; (h, w): exactly
    crop: tuple[int, ...] | None = None    # (c,): square; (h, w)
    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    spans: dict = field(default_factory=dict, compare=False)
    span: Span = field(default_factory=Span, compare=False)


@dataclass(frozen=True, slots=True)
class CreateModel(Statement):
    name: Name
    path: Ref
    preprocess: Preprocessing | None = None  # None: not declared (the default)


@dataclass(frozen=True, slots=True)
class LoadMedia(Statement):
    kind: str  # 'image' | 'video'
    path: Ref
    name: Name


@dataclass(frozen=True, slots=True)
class Show(Statement):
    what: str  # models | images | videos | views | tables


@dataclass(frozen=True, slots=True)
class Describe(Statement):
    model: Name


@dataclass(frozen=True, slots=True)
class Drop(Statement):
    kind: str  # model | image | video | view | table
    name: Name
    if_exists: bool = False


@dataclass(frozen=True, slots=True)
class TuneVideo(Statement):
    """TUNE MODEL m ON VIDEO v [FRAMES a TO b] [KEYFRAME EVERY n] [FOR AGREEMENT q]."""

    model: Name
    video: Ref
    frames: tuple[int, int] | None = None
    keyframe_every: int | None = None
    agreement: float | None = None


@dataclass(frozen=True, slots=True)
class Tune(Statement):
    """TUNE MODEL m [PATCH p] [STRIDE s] [FILL f] ON IMAGES 'a.jpg', img2, 'dir/*.png'."""

    model: Name
    images: tuple[Ref, ...]
    patch: int | None = None
    stride: int | None = None
    fill: Fill | None = None


@dataclass(frozen=True, slots=True)
class ExplainPlan(Statement):
    statement: Statement
    analyze: bool = False
    verbose: bool = False
    format: str = "text"


@dataclass(frozen=True, slots=True)
class Select(Statement):
    sql: str


@dataclass(frozen=True, slots=True)
class Copy(Statement):
    """COPY <table> TO '<path>' [(FORMAT parquet | csv | json)], or COPY (<SELECT ...>) TO ...:
    a table, view or catalog relation, or a SELECT's result, written to a file."""

    source: Name | Select
    path: Ref
    format: Name | None = None  # as written; None: from the path's extension
