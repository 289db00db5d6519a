"""Text -> AST. The lark parser is built once from grammar/kql.lark (LALR, positions kept)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedInput, VisitError

from kryptondb.errors import QuerySyntaxError
from kryptondb.lang import ast
from kryptondb.lang.statements import split_statements
from kryptondb.lang.syntax import syntax_error
from kryptondb.lang.tokens import (_Reject, _int, _ints, _lower, _meta_span, _num, _signed,
                                   _span, _unquote)

try:
    import kryptondb.grammar as _installed_grammar  # installed: grammar/ is kryptondb.grammar
except ImportError:  # a source checkout used without installing: grammar/ is beside us
    _installed_grammar = None


def grammar_path() -> str:
    """Where grammar/kql.lark is: in the installed package, or beside a source checkout."""
    if _installed_grammar is not None:
        return os.path.join(os.path.dirname(_installed_grammar.__file__), "kql.lark")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, "grammar", "kql.lark")


@functools.cache
def _parser() -> Lark:
    with open(grammar_path(), encoding="utf-8") as f:
        return Lark(f.read(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


@dataclass(frozen=True, slots=True)
class _Opt:
    """One option as written: the statement field it sets, its keyword, its value, where."""

    key: str
    word: str
    value: object
    span: ast.Span


def _option(key: str, word: str, convert=None):
    """The transformer callback of an option: an _Opt with its value and span."""

    @v_args(meta=True)
    def build(self, meta, children):
        value = convert(*children) if convert else (children[0] if children else True)
        return _Opt(key, word, value, _meta_span(meta))

    return build


def _media_set(cls, listed: bool):
    """The callback of IMAGES / VIDEOS followed by a pattern (a STRING) or a list (of refs)."""

    @v_args(meta=True)
    def build(self, meta, children):
        refs = tuple(c if isinstance(c, ast.Ref) else _ref(c) for c in children)
        return cls(refs, listed=listed, span=_meta_span(meta))
    return build


def _merge(opts) -> tuple[dict, dict]:
    """Options -> (field values, field spans); a field set twice is an error at the second.
    INTO's (name, replace) sets two fields: ``into`` and ``or_replace``."""
    values: dict = {}
    spans: dict = {}
    words: dict = {}
    for o in opts:
        if o.key in values:
            first = spans[o.key]
            what = f"{o.word} is given twice" if o.word == words[o.key] else \
                f"{o.word} and {words[o.key]} exclude each other"
            raise _Reject(f"{what} (first at line {first.line}, column {first.column})", o.span)
        values[o.key], spans[o.key], words[o.key] = o.value, o.span, o.word
    if "into" in values:
        values["into"], values["or_replace"] = values["into"]
    return values, spans


def _statement(build):
    """A statement callback: its node gets the span of its text."""

    @v_args(meta=True)
    def wrapped(self, meta, children):
        return replace(build(self, *children), span=_meta_span(meta))

    return wrapped


def _ref(tok) -> ast.Ref:
    quoted = tok.type == "STRING"
    return ast.Ref(_unquote(tok) if quoted else str(tok), quoted, _span(tok))


def _name(tok) -> ast.Name:
    return ast.Name(str(tok), _span(tok))


@v_args(inline=True)
class _Build(Transformer):
    """Parse tree -> AST; options become _Opt values merged into the statement."""

    def __init__(self):
        super().__init__()
        self.params = 0  # the ``?`` seen so far: each is numbered in the order written

    def start(self, stmt):
        return stmt

    def PARAM(self, tok):  # a terminal's callback: called in the order the tokens are written
        self.params += 1
        return ast.Param(self.params - 1, _span(tok))

    def image_ref(self, tok):
        return _ref(tok)

    video_ref = tune_image = image_item = video_item = image_ref
    def class_item(self, tok):
        return _unquote(tok) if tok.type == "STRING" else _int(tok)

    images_pattern, images_list = _media_set(ast.Images, False), _media_set(ast.Images, True)
    videos_pattern, videos_list = _media_set(ast.Videos, False), _media_set(ast.Videos, True)

    @v_args(meta=True)
    def images_table(self, meta, children):
        return ast.Images(table=_name(children[0]), span=_meta_span(meta))

    @v_args(meta=True)
    def tensor_ref(self, meta, children):
        (source,) = children
        return ast.TensorRef(source if isinstance(source, ast.Param) else _ref(source),
                             _meta_span(meta))

    def using_model(self, tok):
        return _name(tok)
    copy_table = using_model

    def number(self, tok):
        return _num(tok)

    # -- options --------------------------------------------------------------------------
    for_class = _option("target_class", "FOR CLASS")
    for_classes = _option("target_class", "FOR CLASSES", lambda *items: ast.Classes(items))
    for_all_classes = _option("target_class", "FOR ALL CLASSES",
                              lambda: ast.Classes(every=True))
    patch = _option("patch", "PATCH", _ints)
    stride = _option("stride", "STRIDE", _ints)
    baseline = _option("baseline", "BASELINE", _signed)
    score = _option("score", "SCORE", _lower)
    grid = _option("grid", "GRID", _lower)
    layout = _option("layout", "LAYOUT", _lower)
    fill = _option("fill", "FILL")
    exact = _option("approximate", "EXACT", lambda: None)
    naive = _option("incremental", "NAIVE", lambda: False)
    incremental = _option("incremental", "INCREMENTAL", lambda: True)
    batch = _option("batch", "BATCH", _int)
    memory = _option("memory_mb", "MEMORY", _int)
    top = _option("top", "TOP", _int)
    device = _option("device", "ON", lambda t: ast.Name(str(t).lower(), _span(t)))
    into = _option("into", "INTO", lambda t: (_name(t), False))
    into_replace = _option("into", "INTO OR REPLACE", lambda t: (_name(t), True))
    frames = _option("frames", "FRAMES", lambda a, b: (_int(a), _int(b)))
    every = _option("every", "EVERY", _int)
    threshold = _option("threshold", "THRESHOLD")
    feature_scale = _option("feature_scale", "FEATURE THRESHOLD")
    keyframe_every = _option("keyframe_every", "KEYFRAME EVERY", _int)
    keyframe_area = _option("keyframe_area", "KEYFRAME AREA")
    max_boxes = _option("max_boxes", "BOXES", _int)
    agreement = _option("agreement", "WITH AGREEMENT")
    target_agreement = _option("agreement", "FOR AGREEMENT")
    tau = _option("tau", "TAU")
    drilldown = _option("drilldown", "DRILLDOWN", lambda r, target=None: (r, target))
    ssim = _option("ssim", "WITH SSIM")
    within = _option("within", "WITHIN")
    analyze = _option("analyze", "ANALYZE")
    verbose = _option("verbose", "VERBOSE")
    format = _option("format", "FORMAT", lambda t: str(t).lower())

    def fill_constant(self, value):
        return ast.Fill("constant", value)

    def fill_named(self, tok):
        return ast.Fill.named(str(tok))

    @v_args(meta=True)
    def approximate(self, meta, opts):
        kw, spans = _merge(opts)
        if "drilldown" in kw:
            kw["drilldown"], kw["target"] = kw["drilldown"]
        return _Opt("approximate", "APPROXIMATE",
                    ast.Approximate(**kw, spans=spans, span=_meta_span(meta)), _meta_span(meta))

    # -- statements -----------------------------------------------------------------------
    @_statement
    def explain_occlusion(self, image, model, *opts):
        values, spans = _merge(opts)
        return ast.ExplainOcclusion(image, model, **values, spans=spans)

    @_statement
    def recognize(self, video, model, *opts):
        values, spans = _merge(opts)
        return ast.RecognizeObjects(video, model, **values, spans=spans)

    @_statement
    def predict(self, image, model, *opts):
        values, spans = _merge(opts)
        return ast.Predict(image, model, **values, spans=spans)

    @_statement
    def tune(self, name, *rest):
        values, spans = _merge(r for r in rest if isinstance(r, _Opt))
        images = tuple(r for r in rest if isinstance(r, ast.Ref))
        return ast.Tune(_name(name), images, **values, spans=spans)

    @_statement
    def tune_video(self, name, video, *opts):
        values, spans = _merge(opts)
        return ast.TuneVideo(_name(name), video, **values, spans=spans)

    @_statement
    def create_model(self, name, path, preprocess=None):
        return ast.CreateModel(_name(name), ast.Ref(_unquote(path), True, _span(path)),
                               preprocess)

    # -- PREPROCESS -------------------------------------------------------------------------
    pre_resize = _option("resize", "RESIZE", lambda *sides: tuple(map(_int, sides)))
    pre_crop = _option("crop", "CROP", lambda *sides: tuple(map(_int, sides)))
    pre_scale = _option("scale", "SCALE")
    pre_mean = _option("mean", "MEAN", lambda *values: values)
    pre_std = _option("std", "STD", lambda *values: values)

    @v_args(meta=True)
    def signed(self, meta, children):
        """A number with its sign and span: (value, span)."""
        return (-children[-1] if len(children) == 2 else children[-1]), _meta_span(meta)

    @v_args(meta=True)
    def pre_none(self, meta, children):
        return ast.Preprocessing("none", span=_meta_span(meta))

    @v_args(meta=True)
    def pre_imagenet(self, meta, children):
        return ast.Preprocessing("imagenet", span=_meta_span(meta))

    @v_args(meta=True)
    def pre_steps(self, meta, steps):
        values, spans = _merge(steps)
        if "scale" in values:
            values["scale"], spans["scale.0"] = values["scale"]
        for key in ("mean", "std"):
            if key in values:
                spans |= {f"{key}.{i}": span for i, (_, span) in enumerate(values[key])}
                values[key] = tuple(v for v, _ in values[key])
        return ast.Preprocessing("steps", **values, spans=spans, span=_meta_span(meta))

    @_statement
    def load_media(self, kind, path, name):
        return ast.LoadMedia(str(kind).lower(), ast.Ref(_unquote(path), True, _span(path)),
                             _name(name))

    @_statement
    def show(self, what):
        return ast.Show(str(what).lower())

    @_statement
    def describe(self, name):
        return ast.Describe(_name(name))

    def if_exists(self):
        return True

    @_statement
    def drop(self, kind, *rest):
        return ast.Drop(str(kind).lower(), _name(rest[-1]), len(rest) == 2)

    @_statement
    def explain_plan(self, *parts):
        values, spans = _merge(parts[:-1])
        return ast.ExplainPlan(parts[-1], **values, spans=spans)

    @v_args(meta=True)
    def nested_plan(self, meta, children):
        raise _Reject("EXPLAIN PLAN cannot explain another EXPLAIN PLAN: give the statement "
                      "itself after FOR", _meta_span(meta))

    @_statement
    def select(self, tok):
        return ast.Select(str(tok).strip())

    # -- COPY ---------------------------------------------------------------------------------
    def copy_query(self, tok):
        """The SELECT inside the parentheses (DuckDB's to read, like ``select``)."""
        return ast.Select(str(tok)[1:-1].strip(), span=_span(tok))

    def copy_format(self, tok):
        return ast.Name(_unquote(tok) if tok.type == "STRING" else str(tok), _span(tok))

    @_statement
    def copy(self, source, path, fmt=None):
        return ast.Copy(source, ast.Ref(_unquote(path), True, _span(path)), fmt)


def parse(text: str) -> ast.Statement:
    """One statement -> its AST node; syntax errors carry line, column and a caret.

    >>> parse("EXPLAIN OCCLUSION OF IMAGE 'cat.png' USING MODEL mobilenet_v2 PATCH 8").patch
    8
    """
    if not text.strip():
        raise QuerySyntaxError("empty query", text, 1, 1, expected=("a statement",))
    return _parsed(text) if len(text) <= PARSED_CHARS else _parse(text)


def _parse(text: str) -> ast.Statement:
    """``parse`` of a non-blank text."""
    try:
        tree = _parser().parse(text)
        build = _Build()
        stmt = build.transform(tree)
    except UnexpectedInput as exc:
        raise syntax_error(exc, text, _parser().terminals) from None
    except RecursionError:  # thousands of nested EXPLAIN PLAN FOR
        raise _too_deep(text) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, RecursionError):
            raise _too_deep(text) from None
        if not isinstance(exc.orig_exc, _Reject):
            raise
        span = exc.orig_exc.span
        raise QuerySyntaxError(exc.orig_exc.message, text, span.line, span.column,
                               span.length) from None
    return replace(stmt, span=ast.Span(1, 1, len(text), 0), params=build.params)


# The AST is frozen and depends on the text alone: a statement a session repeats (a benchmark's,
# a notebook cell's) is parsed once (0.4 ms of a small model's 3 ms outside inference). Errors
# are raised again each time (lru_cache keeps only returned values); long texts are not kept.
PARSED_KEPT, PARSED_CHARS = 256, 10_000
_parsed = functools.lru_cache(maxsize=PARSED_KEPT)(_parse)


def _too_deep(text: str) -> QuerySyntaxError:
    return QuerySyntaxError("the statement nests too deeply to be read", text, 1, 1)


def parse_script(text: str) -> list[ast.Statement]:
    """Several statements separated by ';' (quotes respected)."""
    return [parse(s) for s in split_statements(text)]
