"""Token values for the parser: spans (where a token or a rule was written), numbers (range
checked: beyond int64 or a float's range is an error at the token) and quoted strings."""

from __future__ import annotations

import math

from lark import Token

from kryptondb.lang import ast

INT64_MAX = 2**63 - 1  # the largest integer a query may write


class _Reject(Exception):
    """Raised inside the transformer; parse() turns it into a QuerySyntaxError with a caret."""

    def __init__(self, message: str, span: ast.Span):
        super().__init__(message)
        self.message, self.span = message, span


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


def _int(tok) -> int:
    """An INT token's value; beyond int64 is an error at the token, never an overflow later."""
    s = str(tok)
    digits = s.lstrip("0") or "0"  # int() refuses strings of over 4300 digits, zeros included
    if len(digits) > 19 or int(digits) > INT64_MAX:
        raise _Reject(f"integer {_shown(s)} is too large (the largest is {INT64_MAX})",
                      _span(tok))
    return int(digits)


def _num(tok) -> float:
    """A number (INT or DECIMAL) as a float; one a float cannot hold is an error."""
    value = float(_int(tok)) if tok.type == "INT" else float(str(tok))
    if not math.isfinite(value):
        raise _Reject(f"number {_shown(str(tok))} is too large", _span(tok))
    return value


def _ints(first, second=None) -> int | tuple[int, int]:
    """One number (both axes) or two (height, width)."""
    return _int(first) if second is None else (_int(first), _int(second))


def _signed(*children) -> float | ast.Param:
    """A number with an optional leading minus, or a ``?``."""
    value = children[-1]
    return -value if len(children) == 2 else value


def _lower(tok) -> str:
    return str(tok).lower()


def _shown(digits: str) -> str:
    return digits if len(digits) <= 24 else f"{digits[:10]}...{digits[-4:]} ({len(digits)} digits)"
