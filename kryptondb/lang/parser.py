"""Text -> AST. The lark parser is built once from grammar/kql.lark (LALR, positions kept)."""

from __future__ import annotations

import functools
import os
from dataclasses import replace

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from kryptondb.errors import QuerySyntaxError
from kryptondb.lang import ast

def _grammar_path() -> str:
    try:
        import kryptondb.grammar as g  # installed: grammar/ is the package kryptondb.grammar

        return os.path.join(os.path.dirname(g.__file__), "kql.lark")
    except ImportError:  # a source checkout used without installing: grammar/ is beside us
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        return os.path.join(root, "grammar", "kql.lark")


@functools.cache
def _parser() -> Lark:
    with open(_grammar_path(), encoding="utf-8") as f:
        return Lark(f.read(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _span(tok) -> ast.Span:
    return ast.Span(tok.line, tok.column, max(1, len(str(tok))), tok.start_pos)


def _meta_span(meta) -> ast.Span:
    if getattr(meta, "empty", True):
        return ast.Span()
    return ast.Span(meta.line, meta.column, max(1, meta.end_pos - meta.start_pos), meta.start_pos)


def _unquote(tok: Token) -> str:
    s = str(tok)
    q = s[0]
    body = s[1:-1]
    return body.replace(q + q, q).replace("\\" + q, q).replace("\\\\", "\\")


def _num(tok) -> float | int:
    s = str(tok)
    return int(s) if s.isdigit() else float(s)


@v_args(inline=True)
class _Build(Transformer):
    """Parse tree -> AST; options become (field, value) pairs merged into the statement."""

    def start(self, stmt):
        return stmt

    def image_ref(self, tok):
        return ast.Ref(_unquote(tok) if tok.type == "STRING" else str(tok), tok.type == "STRING",
                       _span(tok))

    video_ref = image_ref

    def using_model(self, tok):
        return ast.Name(str(tok), _span(tok))

    def number(self, tok):
        return _num(tok)

    # -- options --------------------------------------------------------------------------
    def for_class(self, tok):
        return ("target_class", _unquote(tok) if tok.type == "STRING" else int(tok))

    def patch(self, tok):
        return ("patch", int(tok))

    def stride(self, tok):
        return ("stride", int(tok))

    def fill(self, value):
        return ("fill", value)

    def fill_constant(self, value):
        return ast.Fill("constant", float(value))

    def fill_named(self, tok):
        return ast.Fill.named(str(tok))

    def exact(self):
        return ("approximate", None)

    def naive(self):
        return ("incremental", False)

    def incremental(self):
        return ("incremental", True)

    @v_args(meta=True)
    def approximate(self, meta, opts):
        kw: dict = {"spans": {}}
        for key, value, span in opts:
            if key == "drilldown":
                kw["drilldown"], kw["target"] = value
            else:
                kw[key] = value
            kw["spans"][key] = span
        return ("approximate", ast.Approximate(**kw, span=_meta_span(meta)))

    @v_args(meta=True)
    def tau(self, meta, v):
        return ("tau", float(v[0]), _meta_span(meta))

    @v_args(meta=True)
    def drilldown(self, meta, v):
        target = float(v[1]) if len(v) > 1 else None
        return ("drilldown", (float(v[0]), target), _meta_span(meta))

    @v_args(meta=True)
    def ssim(self, meta, v):
        return ("ssim", float(v[0]), _meta_span(meta))

    @v_args(meta=True)
    def within(self, meta, v):
        return ("within", float(v[0]), _meta_span(meta))

    def batch(self, tok):
        return ("batch", int(tok))

    def memory(self, tok):
        return ("memory_mb", int(tok))

    def top(self, tok):
        return ("top", int(tok))

    def device(self, tok):
        return ("device", ast.Name(str(tok).lower(), _span(tok)))

    def into(self, tok):
        return ("into", ast.Name(str(tok), _span(tok)))

    def frames(self, a, b):
        return ("frames", (int(a), int(b)))

    def every(self, tok):
        return ("every", int(tok))

    def threshold(self, v):
        return ("threshold", float(v))

    def keyframe_every(self, tok):
        return ("keyframe_every", int(tok))

    def keyframe_area(self, v):
        return ("keyframe_area", float(v))

    def max_boxes(self, tok):
        return ("max_boxes", int(tok))

    def agreement(self):
        return ("agreement", True)

    # -- statements -----------------------------------------------------------------------
    def explain_occlusion(self, image, model, *opts):
        return ast.ExplainOcclusion(image, model, **dict(opts))

    def recognize(self, video, model, *opts):
        return ast.RecognizeObjects(video, model, **dict(opts))

    def predict(self, image, model, *opts):
        return ast.Predict(image, model, **dict(opts))

    def tune_image(self, tok):
        return ast.Ref(_unquote(tok) if tok.type == "STRING" else str(tok), tok.type == "STRING",
                       _span(tok))

    def tune(self, name, *rest):
        opts = dict(r for r in rest if isinstance(r, tuple))
        images = tuple(r for r in rest if isinstance(r, ast.Ref))
        return ast.Tune(ast.Name(str(name), _span(name)), images, **opts)

    def create_model(self, name, path):
        return ast.CreateModel(ast.Name(str(name), _span(name)),
                               ast.Ref(_unquote(path), True, _span(path)))

    def load_media(self, kind, path, name):
        return ast.LoadMedia(str(kind).lower(), ast.Ref(_unquote(path), True, _span(path)),
                             ast.Name(str(name), _span(name)))

    def show(self, what):
        return ast.Show(str(what).lower())

    def describe(self, name):
        return ast.Describe(ast.Name(str(name), _span(name)))

    def if_exists(self):
        return True

    def drop(self, kind, *rest):
        name = rest[-1]
        return ast.Drop(str(kind).lower(), ast.Name(str(name), _span(name)), len(rest) == 2)

    def analyze(self):
        return ("analyze", True)

    def verbose(self):
        return ("verbose", True)

    def format(self, tok):
        return ("format", str(tok).lower())

    def explain_plan(self, *parts):
        return ast.ExplainPlan(parts[-1], **dict(parts[:-1]))

    def select(self, tok):
        return ast.Select(str(tok).strip())


def parse(text: str) -> ast.Statement:
    """One statement -> its AST node; syntax errors carry line, column and a caret.

    >>> parse("EXPLAIN OCCLUSION OF IMAGE 'cat.png' USING MODEL mobilenet_v2 PATCH 8").patch
    8
    """
    if not text.strip():
        raise QuerySyntaxError("empty query", text, 1, 1, expected=("a statement",))
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    stmt = _Build().transform(tree)
    return replace(stmt, span=ast.Span(1, 1, len(text), 0))


def parse_script(text: str) -> list[ast.Statement]:
    """Several statements separated by ';' (quotes respected)."""
    return [parse(s) for s in split_statements(text)]


def split_statements(text: str) -> list[str]:
    """Split at top-level semicolons, keeping quoted strings and comments intact."""
    out, cur, quote, i = [], [], None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and i + 1 < len(text):  # an escaped character never ends the string
                cur.append(text[i:i + 2])
                i += 2
                continue
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = len(text) if j < 0 else j
            cur.append(text[i:j])
            i = j
            continue
        elif ch == ";":
            out.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    out.append("".join(cur))
    return [s for s in (x.strip() for x in out) if s and not s.startswith("--") or _has_code(s)]


def _has_code(s: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in s.splitlines())


# ---------------------------------------------------------------------------------------------

_FRIENDLY = {"STRING": "a quoted string", "INT": "an integer", "DECIMAL": "a number",
             "NAME": "a name", "$END": "end of statement", "SEMICOLON": "';'", "SQL": "SELECT",
             "MORETHAN": "'>'", "__ANON_0": "'>='",
             "CATALOG_KIND": "MODELS, IMAGES, VIDEOS, VIEWS or TABLES",
             "MEDIA_KIND": "IMAGE or VIDEO", "DROP_KIND": "MODEL, IMAGE, VIDEO, VIEW or TABLE",
             "PLAN_FORMAT": "TEXT, DOT, SVG or HTML"}


def _expected(names) -> tuple[str, ...]:
    out = []
    for n in sorted(set(names)):
        if n.startswith("__") and n not in _FRIENDLY:
            continue
        out.append(_FRIENDLY.get(n, n))
    return tuple(dict.fromkeys(out))


def _accepts(exc: UnexpectedToken):
    """Terminals the parser really accepts here (LALR's merged lookaheads over-report)."""
    try:
        return exc.interactive_parser.accepts()
    except Exception:  # pragma: no cover - older lark without an interactive parser
        return exc.expected


def _syntax_error(exc: UnexpectedInput, text: str) -> QuerySyntaxError:
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken)
                                          and exc.token.type == "$END"):
        lines = text.rstrip().split("\n")
        line, col = len(lines), len(lines[-1]) + 1
        names = _accepts(exc) if isinstance(exc, UnexpectedToken) else exc.expected
        return QuerySyntaxError("unexpected end of statement", text, line, col, 1,
                                _expected(names))
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        return QuerySyntaxError(f"unexpected {str(tok)!r}", text, exc.line, exc.column,
                                max(1, len(str(tok))), _expected(_accepts(exc)))
    assert isinstance(exc, UnexpectedCharacters)
    return QuerySyntaxError(f"unexpected character {text[exc.pos_in_stream]!r}", text, exc.line,
                            exc.column, 1, _expected(exc.allowed or ()))
