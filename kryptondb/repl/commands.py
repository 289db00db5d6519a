"""The shell's dot-commands (``.help``, ``.tables``, ``.open DIR`` ...) and the help text."""

from __future__ import annotations

import os

import pyarrow as pa

import kryptondb
from kryptondb.errors import KryptonError
from kryptondb.files import output_folder
from kryptondb.model.zoo import ZOO
from kryptondb.tables import format_table

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
    (".help", "this text"),
    (".tables", "the tables and views in the database"),
    (".models", "the models: the zoo and the registered ones"),
    (".open [PATH]", "switch to the database in directory PATH (created if missing); "
                     "none: in memory"),
    (".output [DIR]", "where heatmap PNGs and plan SVG/HTML files go (default: current dir)"),
    (".timer on|off", "print each statement's time"),
    (".quit, .exit", "leave (so does Ctrl-D)"),
)


_NO_ARGUMENTS = ("help", "quit", "exit", "tables", "models")


class Commands:
    """``.name arg`` runs ``cmd_name(arg)``. The shell's half that answers dot-commands (a mixin:
    Shell holds the state they read and change, and ``say``, ``fail`` and ``attempt``)."""

    def command(self, line: str) -> None:
        name, arg = (line.split(None, 1) + [""])[:2]
        handler = getattr(self, "cmd_" + name[1:], None) if name[1:].isidentifier() else None
        if handler is None:
            self.fail(f"error: unknown command {name!r}; try .help")
        elif arg.strip() and name[1:] in _NO_ARGUMENTS:
            self.fail(f"error: {name} takes no argument, got {arg.strip()!r}")
        else:
            self.attempt(handler, arg.strip())

    def cmd_help(self, arg: str) -> None:
        width = max(len(k) for k, _ in EXAMPLES + COMMANDS) + 2
        lines = ["Statements (end each with ';'; keywords are case-insensitive):"]
        lines += [f"  {k:<{width}}{v}" for k, v in EXAMPLES]
        lines += ["", "Commands:"] + [f"  {k:<{width}}{v}" for k, v in COMMANDS]
        lines += ["", f"Files go to {self.output_dir!r}. Tab completes keywords and names. "
                      "The KQL reference: docs/language.md."]
        self.say("\n".join(lines))

    def cmd_quit(self, arg: str) -> None:
        self.done = True

    cmd_exit = cmd_quit

    def cmd_tables(self, arg: str) -> None:
        entries = [e for kind in ("table", "view") for e in self.con.db.tables(kind).values()]
        if not entries:
            return self.say("no tables or views yet (add INTO <name> to a query to keep one)")
        self.say(format_table(pa.table({
            "name": [e.name for e in entries], "kind": [e.kind for e in entries],
            "rows": [e.rows for e in entries],
            "columns": [", ".join(e.columns) for e in entries]})))

    def cmd_models(self, arg: str) -> None:
        registered = self.con.db.models()
        rows = [(e.name, "zoo", "shadowed by the registered model of that name"
                 if e.name in registered else f"ImageNet ({e.pip_name})" if e.has_real_weights
                 else "seeded random (untrained)") for e in ZOO.values()]
        rows += [(e.name, e.kind, e.source) for e in registered.values()]
        self.say(format_table(pa.table(dict(zip(("name", "kind", "weights"), zip(*rows))))))

    def cmd_open(self, arg: str) -> None:
        con = kryptondb.connect(arg or None, progress=self.con.progress)
        self.close()
        self.con, self.owned = con, True
        self.say(f"opened {con.db.path}" if arg else "opened a new in-memory database")

    def cmd_output(self, arg: str) -> None:
        if arg:
            self.output_dir = output_folder(os.path.expanduser(arg))
        self.say(f"output directory: {self.output_dir}")

    def cmd_timer(self, arg: str) -> None:
        if arg.lower() not in ("on", "off"):
            raise KryptonError(f"usage: .timer on|off (it is {'on' if self.timer else 'off'})")
        self.timer = arg.lower() == "on"
