"""Statement boundaries: a statement ends at a ';' outside quoted strings and '--' comments.

One splitter serves a whole text (``split_statements``: a script, a connection's ``execute``)
and the shell's growing line buffer (``take_statements``: the statements completed so far, and
the unfinished rest to keep reading into).
"""

from __future__ import annotations


def take_statements(text: str) -> tuple[list[tuple[int, str]], str]:
    """The complete statements in ``text`` (each ended by a ';' outside quotes and comments) as
    (line offset of its first line, text) pairs, and the unfinished rest.

    >>> take_statements("SHOW MODELS; SHOW\\n  'a;b'")
    ([(0, 'SHOW MODELS')], " SHOW\\n  'a;b'")
    """
    done, start, quote, i = [], 0, None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            i += ch == "\\"  # an escaped character never ends the string, as in the grammar
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch == ";":
            stmt = text[start:i]
            if has_code(stmt):
                lead = len(stmt) - len(stmt.lstrip())
                done.append((text.count("\n", 0, start + lead), stmt.strip()))
            start = i + 1
        i += 1
    return done, text[start:]


def split_statements(text: str) -> list[str]:
    """Every statement in ``text``; the last one may omit its ';'.

    >>> split_statements("SHOW MODELS; SHOW 'a;b' -- the end;\\n")
    ['SHOW MODELS', "SHOW 'a;b' -- the end;"]
    """
    done, rest = take_statements(text) if ";" in text else ([], text)  # no ';': one at most
    return [stmt for _, stmt in done] + ([rest.strip()] if has_code(rest) else [])


def has_code(text: str) -> bool:
    """Whether ``text`` holds more than blank lines and comments."""
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())
