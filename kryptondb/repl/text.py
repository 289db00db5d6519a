"""How the shell reads what is typed: which lines are commands rather than statement text, and
when Enter submits the editor's buffer instead of starting a new line."""

from __future__ import annotations

import re

from kryptondb.lang.statements import has_code, take_statements

BARE = ("help", "exit", "quit")  # psql's words, taken without a ';' where a statement starts
_COMMAND = re.compile(r"\.[A-Za-z]|\\")
# a script in pieces: whole strings, a string left open at the end, comments, the rest
_PIECES = re.compile(r"""(?P<closed>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
                       |(?P<open>['"](?:[^\\]|\\.)*)
                       |(?P<comment>--[^\n]*)
                       |[^'"-]+|-""", re.VERBOSE | re.DOTALL)


def is_command(line: str, pending: str = "") -> bool:
    """Whether ``line`` is a command, not statement text: a dot-command (``.tables``) or a
    backslash alias (``\\d``) at any prompt, also after an unfinished statement ``pending``
    (not inside its open quote); a bare ``help``, ``exit`` or ``quit`` only where a statement
    starts.

    >>> is_command(".tables", "SELECT *\\n"), is_command("exit"), is_command("exit", "SHOW\\n")
    (True, True, False)
    >>> is_command(".5;", "BASELINE\\n"), is_command(".x", "LOAD IMAGE 'a\\n")
    (False, False)
    """
    text = line.strip()
    if _COMMAND.match(text):
        return not has_code(pending) or open_quote(pending) is None
    return not has_code(pending) and text.rstrip(";").strip().lower() in BARE


def ready(text: str) -> bool:
    """Whether Enter should run the buffer: it holds only complete statements (each ended by a
    ';' outside quotes and comments), or it is one command line, or nothing.

    >>> ready("SHOW\\n MODELS;"), ready("SHOW MODELS"), ready("\\\\d"), ready("LOAD IMAGE 'a;")
    (True, False, True, False)
    """
    if "\n" not in text.strip() and is_command(text):
        return True
    return not has_code(take_statements(text)[1])


def open_quote(text: str) -> int | None:
    """Where the string that ``text`` ends inside opens; -1 when it ends inside a ``--``
    comment; None when it ends in code.

    >>> open_quote("LOAD IMAGE 'a.png' AS x"), open_quote("LOAD IMAGE 'dir/"), open_quote("-- 'x")
    (None, 11, -1)
    >>> open_quote("'it''s' -- a"), open_quote("'it''"), open_quote('"a b" - 1')
    (-1, 4, None)
    """
    last = None
    for last in _PIECES.finditer(text):
        pass
    if last is None or last.lastgroup not in ("open", "comment"):
        return None
    return last.start() if last.lastgroup == "open" else -1
