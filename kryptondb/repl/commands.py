"""The shell's commands: dot-commands (``.help``, ``.tables``, ``.schema``, ``.mode``, ``.read``
...), their psql-style aliases (``\\d``, ``\\d NAME``, ``\\q``, ``\\?``) and the bare words
``help``, ``exit`` and ``quit``; and the help text."""

from __future__ import annotations

import os

import pyarrow as pa

import kryptondb
from kryptondb.catalog.relations import SCHEMAS
from kryptondb.errors import KryptonError
from kryptondb.files import output_folder, read_script
from kryptondb.model.zoo import ZOO
from kryptondb.repl.text import BARE
from kryptondb.tables import MODES, check_mode, render

EXAMPLES = (
    ("EXPLAIN OCCLUSION", "EXPLAIN OCCLUSION OF IMAGE cat USING MODEL mobilenet_v2 "
                          "PATCH 16 STRIDE 8 INTO heat;"),
    ("PREDICT", "PREDICT IMAGE 'photo.jpg' USING MODEL efficientnet_lite0 TOP 3;"),
    ("RECOGNIZE OBJECTS", "RECOGNIZE OBJECTS IN VIDEO 'clip.mp4' USING MODEL mobilenet_v2 "
                          "EVERY 10;"),
    ("LOAD", "LOAD IMAGE 'photo.jpg' AS cat;"),
    ("CREATE MODEL", "CREATE MODEL mynet FROM 'mynet.onnx';"),
    ("SHOW", "SHOW MODELS;  -- or IMAGES, VIDEOS, TABLES, VIEWS"),
    ("DESCRIBE", "DESCRIBE mobilenet_v2;"),
    ("DROP", "DROP TABLE IF EXISTS heat;"),
    ("SELECT", "SELECT y, x, drop FROM heat ORDER BY drop DESC LIMIT 5;"),
    ("EXPLAIN PLAN", "EXPLAIN PLAN ANALYZE FORMAT SVG FOR PREDICT IMAGE cat "
                     "USING MODEL resnet18;"),
)
COMMANDS = (
    (".help", "this text (also: help, \\?)"),
    (".tables", "the tables and views in the database (also: \\d)"),
    (".schema [NAME]", "columns and types of a table or view, or of all (also: \\d NAME)"),
    (".models", "the models: the zoo and the registered ones"),
    (".mode [MODE]", f"how tables print: {', '.join(MODES)}"),
    (".read FILE", "run the statements in FILE in order; stops at the first error"),
    (".output [FILE]", "printed results go to FILE (replacing it); none: back to the screen"),
    (".outdir [DIR]", "where heatmap PNGs and plan SVG/HTML files go (default: current dir)"),
    (".timer on|off", "print each statement's time"),
    (".pager on|off", "page output longer than the screen ($PAGER, else less -FRX)"),
    (".open [PATH]", "switch to the database in directory PATH (created if missing); "
                     "none: in memory"),
    (".quit, .exit", "leave (so do \\q, exit, quit and Ctrl-D)"),
)
ALIASES = {"\\d": ".tables", "\\q": ".quit", "\\?": ".help"} | {w: f".{w}" for w in BARE}
ON_OFF = ("on", "off")
# what each command's argument is, for completion: a path, a table name, or one of some words
ARGUMENTS = {".schema": "table", "\\d": "table", ".mode": MODES, ".timer": ON_OFF,
             ".pager": ON_OFF, ".read": "path", ".output": "path", ".outdir": "path",
             ".open": "path"}
MAX_READ_DEPTH = 16  # .read inside .read: deeper means a file that reads itself
_NO_ARGUMENTS = ("help", "quit", "exit", "tables", "models")


def command_names() -> list[str]:
    """Every command as typed: the dot-commands, then the backslash aliases."""
    dots = sorted(w for k, _ in COMMANDS for w in k.replace(",", "").split() if w[0] == ".")
    return dots + sorted(a for a in ALIASES if a[0] == "\\")


def canonical(line: str) -> tuple[str, str]:
    """(dot-command, argument) of a command line, aliases resolved.

    >>> canonical("\\\\d heat"), canonical("\\\\d"), canonical("quit;"), canonical(".mode csv")
    (('.schema', 'heat'), ('.tables', ''), ('.quit', ''), ('.mode', 'csv'))
    """
    text = line.strip()
    if text.rstrip(";").strip().lower() in BARE:
        return ALIASES[text.rstrip(";").strip().lower()], ""
    name, arg = (text.split(None, 1) + [""])[:2]
    if name == "\\d" and arg.strip():
        return ".schema", arg.strip()
    return ALIASES.get(name, name), arg.strip()


class Commands:
    """``.name arg`` runs ``cmd_name(arg)``. The shell's half that answers commands (a mixin:
    Shell holds the state they read and change, and ``say``, ``fail``, ``attempt`` and
    ``run_text``)."""

    def command(self, line: str) -> None:
        name, arg = canonical(line)
        handler = getattr(self, "cmd_" + name[1:], None) if name[1:].isidentifier() else None
        if handler is None or not name.startswith("."):
            self.fail(f"error: unknown command {name!r}; try .help")
        elif arg and name[1:] in _NO_ARGUMENTS:
            self.fail(f"error: {name} takes no argument, got {arg!r}")
        else:
            self.attempt(handler, arg, line=self.lineno)

    def cmd_help(self, arg: str) -> None:
        width = max(len(k) for k, _ in EXAMPLES + COMMANDS) + 2
        lines = ["Statements (end each with ';'; keywords are case-insensitive):"]
        lines += [f"  {k:<{width}}{v}" for k, v in EXAMPLES]
        lines += ["", "Commands (on a line of their own, also inside an unfinished statement):"]
        lines += [f"  {k:<{width}}{v}" for k, v in COMMANDS]
        lines += ["", f"Files go to {self.output_dir!r}; tables print as {self.mode}. Tab "
                      "completes keywords, names and quoted paths; Up recalls whole statements. "
                      "More: docs/shell.md and docs/language.md."]
        self.say("\n".join(lines))

    def cmd_quit(self, arg: str) -> None:
        self.done = True

    cmd_exit = cmd_quit

    def cmd_tables(self, arg: str) -> None:
        entries = [e for kind in ("table", "view") for e in self.con.db.tables(kind).values()]
        if not entries:
            return self.say("no tables or views yet (add INTO <name> to a query to keep one)")
        self.say(render(pa.table({
            "name": [e.name for e in entries], "kind": [e.kind for e in entries],
            "rows": [e.rows for e in entries],
            "columns": [", ".join(e.columns) for e in entries]}), self.mode))

    def cmd_schema(self, arg: str) -> None:
        db = self.con.db
        names = [arg] if arg else db.names("table") + db.names("view")
        if not names:
            return self.say("no tables or views yet (add INTO <name> to a query to keep one)")
        rows = [(name, field.name, str(field.type)) for name in names
                for field in self._schema(name)]
        columns = dict(zip(("table", "column", "type"), map(list, zip(*rows))))
        if arg:
            columns.pop("table", None)
        self.say(render(pa.table(columns), self.mode, max_rows=None))

    def _schema(self, name: str) -> pa.Schema:
        db = self.con.db
        for kind in ("table", "view"):
            if name in db.names(kind):
                return db.get_table(name, kind).schema  # memory-mapped: no data is read
        if name in SCHEMAS:
            return SCHEMAS[name]
        known = db.names("table") + db.names("view") + list(SCHEMAS)
        raise KryptonError(f"no table or view {name!r}; known: {', '.join(known)}")

    def cmd_models(self, arg: str) -> None:
        registered = self.con.db.models()
        rows = [(e.name, "zoo", "shadowed by the registered model of that name"
                 if e.name in registered else f"ImageNet ({e.pip_name})" if e.has_real_weights
                 else "seeded random (untrained)") for e in ZOO.values()]
        rows += [(e.name, e.kind, e.source) for e in registered.values()]
        self.say(render(pa.table(dict(zip(("name", "kind", "weights"), zip(*rows)))),
                        self.mode, max_rows=None))

    def cmd_mode(self, arg: str) -> None:
        if not arg:
            return self.say(f"mode: {self.mode} (one of {', '.join(MODES)})")
        self.mode = check_mode(arg.lower())

    def cmd_read(self, arg: str) -> None:
        if not arg:
            raise KryptonError("usage: .read FILE (a KQL script)")
        if self.depth >= MAX_READ_DEPTH:
            raise KryptonError(f".read {arg}: scripts nested {MAX_READ_DEPTH} deep (does a "
                               "script read itself?)")
        self.run_text(read_script(os.path.expanduser(arg)), source=arg)

    def cmd_output(self, arg: str) -> None:
        self.output.redirect(os.path.expanduser(arg) if arg else None)

    def cmd_outdir(self, arg: str) -> None:
        if arg:
            self.output_dir = output_folder(os.path.expanduser(arg))
        self.say(f"output directory: {self.output_dir}")

    def cmd_timer(self, arg: str) -> None:
        self.timer = _on_off(".timer", arg, self.timer)

    def cmd_pager(self, arg: str) -> None:
        self.output.paging = _on_off(".pager", arg, self.output.paging)

    def cmd_open(self, arg: str) -> None:
        con = kryptondb.connect(arg or None, progress=self.con.progress)
        self.close()
        self.con, self.owned = con, True
        self.say(f"opened {con.db.path}" if arg else "opened a new in-memory database")


def _on_off(name: str, arg: str, now: bool) -> bool:
    if arg.lower() not in ON_OFF:
        raise KryptonError(f"usage: {name} on|off (it is {'on' if now else 'off'})")
    return arg.lower() == "on"
