"""Syntax colours for the shell's editor: a line of KQL as (style, text) pieces. Keywords come
from the grammar (completion.grammar_keywords) and SQL; strings, numbers, comments and
commands are told apart by a few regular expressions, one line at a time."""

from __future__ import annotations

import re

from kryptondb.repl.text import is_command

STYLES = {"keyword": "bold ansiblue", "string": "ansigreen", "number": "ansicyan",
          "comment": "italic ansibrightblack", "command": "bold ansimagenta"}
_PIECE = re.compile(r"""
    (?P<comment>--.*)
  | (?P<string>'(?:[^'\\]|\\.|'')*'?|"(?:[^"\\]|\\.)*"?)
  | (?P<number>\b[0-9]+(?:\.[0-9]*)?|\.[0-9]+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<other>\s+|.)
""", re.VERBOSE)


def pieces(line: str, keywords: frozenset[str]) -> list[tuple[str, str]]:
    """(style, text) pieces covering ``line``; style '' for names, punctuation and space.

    >>> pieces("SHOW models; -- all", frozenset({"SHOW", "MODELS"}))
    [('keyword', 'SHOW'), ('', ' '), ('keyword', 'models'), ('', '; '), ('comment', '-- all')]
    >>> pieces("PATCH 16 'a.png' x", frozenset({"PATCH"}))
    [('keyword', 'PATCH'), ('', ' '), ('number', '16'), ('', ' '), ('string', "'a.png'"), ('', ' x')]
    """
    if is_command(line):
        return [("command", line)]
    out: list[tuple[str, str]] = []
    for match in _PIECE.finditer(line):
        style = match.lastgroup
        if style == "word":
            style = "keyword" if match.group().upper() in keywords else ""
        elif style == "other":
            style = ""
        if out and out[-1][0] == style == "":
            out[-1] = ("", out[-1][1] + match.group())
        else:
            out.append((style, match.group()))
    return out
