"""Line editing for the interactive shell: readline history and tab completion of keywords (read
from the grammar), dot-commands and catalog names."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager, suppress

from kryptondb.lang.parser import grammar_path
from kryptondb.model.zoo import ZOO
from kryptondb.repl.commands import COMMANDS


@contextmanager
def line_editing(shell, enabled: bool):
    """readline with history in ~/.kryptondb_history (or $KRYPTONDB_HISTORY) and completion."""
    try:
        import readline  # optional (not on Windows); importing it changes how input() reads
    except ImportError:  # pragma: no cover - Windows without pyreadline
        enabled = False
    if not enabled:
        yield
        return
    history = os.environ.get("KRYPTONDB_HISTORY") or os.path.expanduser("~/.kryptondb_history")
    with suppress(OSError, ValueError):
        readline.read_history_file(history)
    saved = readline.get_completer(), readline.get_completer_delims()
    readline.set_completer(Completer(lambda: shell.con).complete)
    readline.set_completer_delims(" \t\n;,()=<>'\"")
    libedit = "libedit" in (readline.__doc__ or "")
    readline.parse_and_bind("bind ^I rl_complete" if libedit else "tab: complete")
    try:
        yield
    finally:
        readline.set_completer(saved[0])
        readline.set_completer_delims(saved[1])
        readline.set_history_length(1000)
        with suppress(OSError, ValueError):
            readline.write_history_file(history)


_EXTRA_WORDS = ("GRAY", "BLACK", "MEAN", "BLUR", "CPU", "NUMPY", "GPU",  # FILL and ON values
                "FROM", "WHERE", "ORDER", "BY", "GROUP", "LIMIT", "DESC", "ASC", "AND", "OR",
                "NOT", "COUNT", "AVG", "MIN", "MAX", "SUM", "DISTINCT")


def grammar_keywords() -> tuple[str, ...]:
    """Every keyword of grammar/kql.lark: its "WORD"i literals and (?i:a|b) terminals.

    >>> {"EXPLAIN", "OCCLUSION", "MODELS", "SVG"} <= set(grammar_keywords())
    True
    """
    with open(grammar_path(), encoding="utf-8") as f:
        grammar = f.read()
    words = set(re.findall(r'"([A-Za-z]+)"i', grammar))
    for group in re.findall(r"\(\?i:([A-Za-z|]+)\)", grammar):
        words.update(group.split("|"))
    return tuple(sorted(w.upper() for w in words))


class Completer:
    """readline completer: dot-commands at the start of a line, else keywords (in the case the
    user is typing: ``expl`` -> ``explain``, ``EXPL`` -> ``EXPLAIN``) and catalog names."""

    def __init__(self, connection):
        self.connection = connection  # a callable: .open can change the shell's connection
        self.keywords = tuple(sorted(set(grammar_keywords()) | set(_EXTRA_WORDS)))
        self.matches: list[str] = []

    def complete(self, text: str, state: int) -> str | None:
        if state == 0:
            import readline  # optional (not on Windows); only an interactive shell completes

            try:  # Python's readline appends nothing to a completion: add the space here
                line = readline.get_line_buffer()
                self.matches = [m + " " for m in self.candidates(text, line)]
            except Exception:  # readline swallows errors; never break the prompt
                self.matches = []
        return self.matches[state] if state < len(self.matches) else None

    def candidates(self, text: str, line: str) -> list[str]:
        """
        >>> import kryptondb
        >>> c = Completer(kryptondb.connect)
        >>> c.candidates("expl", "expl"), c.candidates("Occ", "explain Occ")
        (['explain'], ['OCCLUSION'])
        >>> c.candidates("mobile", "predict image x using model mobile")
        ['mobilenet_v2']
        >>> c.candidates(".ta", ".ta")
        ['.tables']
        """
        if line.lstrip().startswith(".") and " " not in line.strip():
            return [c for c in _dot_commands() if c.startswith(text)]
        lower = text[:1].islower()
        words = [w.lower() if lower else w for w in self.keywords if w.startswith(text.upper())]
        names = [n for n in self.names() if n.lower().startswith(text.lower())]
        return sorted(set(words)) + sorted(set(names) - set(words))

    def names(self) -> set[str]:
        db = self.connection().db
        return set(ZOO) | {n for kind in ("model", "image", "video", "table", "view")
                           for n in db.names(kind)}


def _dot_commands() -> list[str]:
    return sorted(c for k, _ in COMMANDS for c in re.findall(r"\.[a-z]+", k))
