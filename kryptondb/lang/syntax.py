"""Syntax errors in words: where the statement went wrong and what the grammar accepted there
(terminal names turned into what a person writes: 'an integer', 'LOGIT or PROBABILITY')."""

from __future__ import annotations

from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from kryptondb.errors import QuerySyntaxError

_FRIENDLY = {"STRING": "a quoted string", "INT": "an integer", "DECIMAL": "a number",
             "NAME": "a name", "$END": "end of statement", "SEMICOLON": "';'", "SQL": "SELECT",
             "MORETHAN": "'>'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','",
             "CATALOG_KIND": "MODELS, IMAGES, VIDEOS, VIEWS or TABLES",
             "MEDIA_KIND": "IMAGE or VIDEO", "DROP_KIND": "MODEL, IMAGE, VIDEO, VIEW or TABLE",
             "PLAN_FORMAT": "TEXT, DOT, SVG, HTML or JSON", "PARAM": "'?'", "MINUS": "'-'",
             "SCORE_KIND": "LOGIT or PROBABILITY", "GRID_KIND": "COVER or FIT",
             "LAYOUT_KIND": "PIXELS or WINDOWS",
             "SUBQUERY": "a SELECT in parentheses"}


def _expected(names, terminals) -> tuple[str, ...]:
    out = []
    for n in sorted(set(names)):
        if n in _FRIENDLY or not n.startswith("__"):
            out.append(_FRIENDLY.get(n, n))
        elif (literal := _literal(n, terminals)) is not None:  # lark's name for an unnamed terminal
            out.append(literal)
    return tuple(dict.fromkeys(out))


def _literal(terminal: str, terminals) -> str | None:
    """'>=' for the anonymous terminal of a literal string in the grammar."""
    found = [t.pattern for t in terminals if t.name == terminal]
    return f"'{found[0].value}'" if found and isinstance(found[0], PatternStr) else None


def _accepts(exc: UnexpectedToken):
    """Terminals the parser really accepts here (LALR's merged lookaheads over-report)."""
    try:
        return exc.interactive_parser.accepts()
    except Exception:  # pragma: no cover - older lark without an interactive parser
        return exc.expected


def syntax_error(exc: UnexpectedInput, text: str, terminals) -> QuerySyntaxError:
    """The QuerySyntaxError of lark's ``exc`` on ``text``: where, and what the grammar (whose
    ``terminals`` name the literals) accepted there."""
    if isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken)
                                          and exc.token.type == "$END"):
        lines = text.rstrip().split("\n")
        line, col = len(lines), len(lines[-1]) + 1
        names = _accepts(exc) if isinstance(exc, UnexpectedToken) else exc.expected
        return QuerySyntaxError("unexpected end of statement", text, line, col, 1,
                                _expected(names, terminals))
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        return QuerySyntaxError(f"unexpected {str(tok)!r}", text, exc.line, exc.column,
                                max(1, len(str(tok))), _expected(_accepts(exc), terminals))
    assert isinstance(exc, UnexpectedCharacters)
    return QuerySyntaxError(f"unexpected character {text[exc.pos_in_stream]!r}", text, exc.line,
                            exc.column, 1, _expected(exc.allowed or (), terminals))
