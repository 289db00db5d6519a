"""What Tab offers at the cursor: the keywords the grammar accepts there (lark's interactive
parser on the text before the cursor), the catalog's names where the grammar wants a name
(models after MODEL, images after IMAGE, tables after FROM ...), column names in a SELECT, file
paths inside quotes, and dot-commands with their arguments. Pure functions of the text, so
tests call ``Completer.candidates`` without a terminal; terminal.py adapts it to prompt_toolkit.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from lark.exceptions import LarkError

from kryptondb.catalog.entries import RELATIONS
from kryptondb.catalog.export import FORMATS
from kryptondb.catalog.relations import SCHEMAS
from kryptondb.lang.parser import _parser, grammar_path
from kryptondb.lang.statements import take_statements
from kryptondb.model.zoo import ZOO
from kryptondb.plan.binder import DEVICES
from kryptondb.plan.option_ranges import FILLS
from kryptondb.repl.commands import ARGUMENTS, command_names
from kryptondb.repl.text import open_quote

SQL_WORDS = ("SELECT", "FROM", "WHERE", "ORDER", "BY", "GROUP", "HAVING", "LIMIT", "OFFSET",
             "DESC", "ASC", "AND", "OR", "NOT", "AS", "JOIN", "ON", "COUNT", "AVG", "MIN", "MAX",
             "SUM", "DISTINCT", "WITH", "IS", "NULL", "IN", "LIKE", "BETWEEN", "CASE", "WHEN",
             "THEN", "ELSE", "END")
_PREFIX = re.compile(r"[A-Za-z0-9_]*$")
_WORDS = re.compile(r"\(\?i:([A-Za-z|]+)\)(?:\\b)?")
_SQL_START = re.compile(r"\s*(select|with)\b", re.IGNORECASE)
_SQL_TABLES = re.compile(r"\b(?:from|join)\s+([A-Za-z_]\w*)", re.IGNORECASE)
_SQL_RELATION_PLACE = re.compile(r"\b(?:from|join)\s+(?:[A-Za-z_]\w*\s*,\s*)*$", re.IGNORECASE)


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


@functools.cache
def _terminal_words() -> dict[str, tuple[str, ...]]:
    """Terminal name -> the words it matches, for the parser's keyword-like terminals
    (``EXPLAIN`` -> EXPLAIN, ``CATALOG_KIND`` -> MODELS IMAGES ..., ``SQL`` -> SELECT WITH)."""
    found = {}
    for term in _parser().terminals:
        match = _WORDS.match(term.pattern.to_regexp())
        if match:
            found[term.name] = tuple(w.upper() for w in match.group(1).split("|"))
    return found


@dataclass(frozen=True, slots=True)
class Context:
    """What the cursor is in: ``prefix`` (the partial word or path before it, which a completion
    replaces), ``kind`` ('word' or 'path') and the words that fit (for 'word')."""

    prefix: str
    kind: str = "word"
    words: tuple[str, ...] = ()


class Completer:
    """Completion over one connection (``connection`` is a callable: ``.open`` can change the
    shell's connection). Keywords come in the case the user is typing."""

    def __init__(self, connection):
        self.connection = connection
        self.keywords = tuple(sorted(set(grammar_keywords()) | set(SQL_WORDS)))

    def candidates(self, before: str, after: str = "") -> list[str]:
        """The completions of the text before the cursor (``after``: the rest of the buffer,
        read for the tables a SELECT names), each the whole word or path it would put there.

        >>> import kryptondb
        >>> c = Completer(kryptondb.connect)
        >>> c.candidates("expl"), c.candidates("explain Occ"), c.candidates("show v")
        (['explain'], ['OCCLUSION'], ['videos', 'views'])
        >>> c.candidates("predict image x using model mobile")
        ['mobilenet_v2']
        >>> c.candidates(".ta"), c.candidates(".mode j")
        (['.tables'], ['json'])
        """
        ctx = self.context(before, after)
        if ctx.kind == "path":
            return [ctx.prefix + rest for rest, _ in path_completions(ctx.prefix)]
        return list(ctx.words)

    def context(self, before: str, after: str = "") -> Context:
        line = before.rsplit("\n", 1)[-1].lstrip()
        if line.startswith((".", "\\")):
            return self._command(line)
        rest = take_statements(before)[1]
        inside = open_quote(rest)
        if inside is not None:
            return Context(rest[inside + 1:], "path") if inside >= 0 else Context("")
        prefix = _PREFIX.search(rest).group()
        head = rest[:len(rest) - len(prefix)]
        if _SQL_START.match(head):
            names, keywords = self._sql(head, head + prefix + after.split(";", 1)[0])
            words = _matching(names, prefix) + _matching(keywords, prefix, _case(head, prefix))
        else:
            keywords, names = self._kql(head)
            words = _matching(keywords, prefix, _case(head, prefix)) + _matching(names, prefix)
        return Context(prefix, "word", tuple(dict.fromkeys(words)))

    # -- KQL: the grammar says what may follow ----------------------------------------------

    def _kql(self, head: str) -> tuple[list[str], list[str]]:
        """(keywords, names) the grammar accepts after ``head``."""
        try:
            parser = _parser().parse_interactive(head)
            tokens = parser.exhaust_lexer() or []
            accepted = parser.accepts()
        except LarkError:  # the text does not lex or parse: every keyword may help
            return list(self.keywords), []
        keywords = sorted({w for t in accepted for w in _terminal_words().get(t, ())})
        if "NAME" not in accepted:
            return keywords, []
        names = self._names_after([t.type for t in tokens], [str(t) for t in tokens])
        return keywords, sorted(names)

    def _names_after(self, types: list[str], values: list[str]) -> list[str]:
        """The catalog names that fit where the grammar wants a NAME, judged by what precedes."""
        last, before = (types[-1] if types else ""), (types[-2] if len(types) > 1 else "")
        db = self.connection().db
        if last == "MODEL" and before != "CREATE" or last == "DESCRIBE":
            return sorted(set(ZOO) | set(db.names("model")))
        if last == "DROP_KIND":
            return db.names(values[-1].lower())
        if last == "IMAGE" or last in ("LPAR", "COMMA") and "IMAGES" in types \
                or last == "IMAGES" and "TUNE" in types:
            return db.names("image")
        if last == "VIDEO":
            return db.names("video")
        if last in ("TABLE", "REPLACE"):  # IMAGES TABLE t; INTO OR REPLACE t
            return db.names("table") + db.names("view")
        if last == "COPY":
            return db.names("table") + db.names("view") + list(RELATIONS)
        if last == "FORMAT":
            return list(FORMATS)
        if last == "ON":
            return list(DEVICES)
        if last == "FILL":
            return [f for f in FILLS if f != "constant"]
        return []

    # -- SQL: DuckDB reads it; complete relations and columns -------------------------------

    def _sql(self, head: str, statement: str) -> tuple[list[str], tuple[str, ...]]:
        """(names, keywords): relations after FROM or JOIN, else the columns of the relations
        the statement names (of all, while it names none) and SQL's keywords."""
        db = self.connection().db
        relations = db.names("table") + db.names("view") + list(RELATIONS)
        if _SQL_RELATION_PLACE.search(head):
            return sorted(relations), ()
        named = [n for n in _SQL_TABLES.findall(statement) if n in relations]
        return self.columns(named or relations), tuple(sorted(SQL_WORDS))

    def columns(self, names: list[str]) -> list[str]:
        """The column names of these tables, views or catalog relations, first seen first."""
        db = self.connection().db
        entries = db.tables("table") | db.tables("view")
        found = []
        for name in names:
            cols = entries[name].columns if name in entries else \
                SCHEMAS[name].names if name in SCHEMAS else ()
            found += [c for c in cols if c not in found]
        return found

    # -- dot-commands ------------------------------------------------------------------------

    def _command(self, line: str) -> Context:
        if " " not in line:
            return Context(line, "word", tuple(c for c in command_names() if c.startswith(line)))
        name, arg = line.split(" ", 1)
        arg = arg.lstrip()
        what = ARGUMENTS.get(name)
        if what == "path":
            return Context(arg, "path")
        if what == "table":
            db = self.connection().db
            words = db.names("table") + db.names("view") + list(RELATIONS)
        else:
            words = list(what or ())
        return Context(arg, "word", tuple(w for w in words if w.startswith(arg)))


def _matching(words, prefix: str, lower: bool | None = None) -> list[str]:
    """The words that start with ``prefix`` (in any case), in order; keywords (``lower`` not
    None) in lower case when ``lower``."""
    shown = [w.lower() if lower else w for w in words]
    return [w for w in shown if w.lower().startswith(prefix.lower())]


def _case(head: str, prefix: str) -> bool:
    """Whether to offer keywords in lower case: as the partial word is typed, else as the last
    word before it."""
    word = prefix or (re.findall(r"[A-Za-z]+", head) or ["X"])[-1]
    return word[:1].islower()


def path_completions(prefix: str) -> list[tuple[str, str]]:
    """(text to add after ``prefix``, name to show) for each file or folder it can name
    (``~`` expanded), as prompt_toolkit's PathCompleter finds them."""
    from prompt_toolkit.completion import CompleteEvent, PathCompleter  # ~85 ms: Tab only
    from prompt_toolkit.document import Document  # same package as above

    found = PathCompleter(expanduser=True).get_completions(Document(prefix), CompleteEvent())
    return [(c.text, c.display_text) for c in found]
