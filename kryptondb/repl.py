"""The interactive shell: read statements and dot-commands line by line, run them on a
Connection, and show each result the way it reads best on a terminal.

A statement ends at a ';' outside quotes and comments, so one can span lines and one line can
hold several. Heatmaps and SVG/HTML plans are written as files into the output directory
(``.output DIR``) and their paths printed. Scripts (``kryptondb -c`` and ``-f``) go through the
same shell with ``stop_on_error``.

>>> import io, kryptondb
>>> out = io.StringIO()
>>> run_repl(kryptondb.connect(), io.StringIO("SHOW\\n  VIEWS;\\n.bogus\\n"), out)
0
>>> print(out.getvalue().strip())
name  rows  columns  created
----  ----  -------  -------
(0 rows)
error: unknown command '.bogus'; try .help
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from contextlib import contextmanager, suppress

import kryptondb
from kryptondb.errors import KryptonError
from kryptondb.progress import interruptible

PROMPT, CONTINUATION = "kryptondb> ", "      ...> "
BANNER = f"KryptonDB {kryptondb.__version__} — type .help for help, .quit to leave"
HEATMAP_ROWS = 10  # heatmap rows printed; the whole grid is in the PNG (and the INTO table)

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


def run_repl(connection, stdin=sys.stdin, stdout=sys.stdout, interactive=None, stderr=None,
             output_dir: str = ".") -> int:
    """Read-eval-print loop until .quit or end of input. ``interactive`` (default: stdin is a
    terminal) adds the banner, prompts, line editing, history and tab completion. Errors go to
    ``stderr`` (default: ``stdout``) and the loop goes on. Returns the exit status, 0."""
    interactive = _isatty(stdin) if interactive is None else interactive
    shell = Shell(connection, stdout, stderr or stdout, output_dir=output_dir)
    if interactive:
        shell.say(BANNER)
    read = _reader(stdin, stdout, interactive)
    with _line_editing(shell, enabled=interactive and stdin is sys.stdin):
        while not shell.done:
            try:
                line = read(shell.prompt())
            except KeyboardInterrupt:  # at the prompt: drop the half-typed statement
                shell.buffer = ""
                shell.say("")
                continue
            if line is None:
                break
            shell.feed(line)
    if interactive and not shell.done:
        shell.say("")  # after Ctrl-D, leave the user's shell prompt on a fresh line
    elif not interactive:
        shell.finish()
    shell.close()
    return 0


def run_script(connection, text: str, stdout=sys.stdout, stderr=sys.stderr,
               output_dir: str = ".", source: str | None = None) -> int:
    """Run statements (and dot-commands) in ``text``; stop at the first error. Returns 0 or 1."""
    shell = Shell(connection, stdout, stderr, output_dir=output_dir, stop_on_error=True,
                  source=source)
    for line in text.splitlines(keepends=True):
        if shell.done:
            break
        shell.feed(line)
    shell.finish()
    shell.close()
    return 1 if shell.failed else 0


class Shell:
    """The state between lines: connection, pending statement text, output dir, timer."""

    def __init__(self, connection, out, err, output_dir: str = ".", stop_on_error=False,
                 source: str | None = None):
        self.con, self.out, self.err = connection, out, err
        self.output_dir, self.stop_on_error, self.source = output_dir, stop_on_error, source
        self.buffer, self.buffer_line, self.lineno = "", 1, 0
        self.timer = self.done = self.failed = self.cancelled = False
        self.owned = False  # a connection opened by .open is the shell's to close

    def prompt(self) -> str:
        return CONTINUATION if self.buffer.strip() else PROMPT

    def feed(self, line: str) -> None:
        """One line of input: a dot-command when no statement is pending, else statement text."""
        self.lineno += 1
        if not self.buffer.strip():
            self.buffer, self.buffer_line = "", self.lineno
            if line.lstrip().startswith("."):
                return self.command(line.strip())
        statements, rest = take_statements(self.buffer + line)
        first = self.buffer_line
        self.buffer, self.cancelled = (rest if _has_code(rest) else ""), False
        if statements:
            self.buffer_line = self.lineno
        for offset, text in statements:
            self.attempt(self.statement, text, line=first + offset)
            if self.done or self.cancelled:  # Ctrl-C drops the rest of the line too
                self.buffer = ""
                break

    def finish(self) -> None:
        """End of input: a last statement may omit its ';'."""
        if _has_code(self.buffer) and not self.done:
            self.attempt(self.statement, self.buffer.strip(), line=self.buffer_line)
        self.buffer = ""

    def close(self) -> None:
        if self.owned:
            self.con.close()

    # -- running ---------------------------------------------------------------------------

    def attempt(self, action, arg: str, line: int | None = None) -> bool:
        """Run ``action(arg)``, turning every failure into a message; True when it succeeded."""
        start = time.perf_counter()
        try:
            with interruptible():
                action(arg)
            return True
        except BrokenPipeError:  # the reader of our output has gone: nothing more to say
            raise
        except (KryptonError, OSError) as exc:
            self.fail(f"error: {self._where(line)}{exc}")
        except KeyboardInterrupt:
            self.fail("cancelled", cancel=True)
        except Exception as exc:  # a bug: say so briefly, keep the session alive
            self.fail(f"internal error: {type(exc).__name__}: {exc}"
                      + ("" if os.environ.get("KRYPTON_DEBUG") else
                         " (set KRYPTON_DEBUG=1 for the traceback)"), trace=True)
        finally:
            if self.timer and action == self.statement:
                self.say(f"time: {time.perf_counter() - start:.3f} s")
        return False

    def statement(self, text: str) -> None:
        self.show(self.con.execute(text), text)

    def show(self, result, text: str) -> None:
        fmt = result.extra.get("format")
        if result.kind == "heatmap":
            self.show_heatmap(result, text)
        elif result.kind == "plan" and fmt in ("svg", "html"):
            from kryptondb.files import writable_file

            path = writable_file(self._fresh_path("plan", fmt), f"plan {fmt.upper()}")
            with open(path, "w", encoding="utf-8") as f:
                f.write(result.message)
            self.say(f"plan saved to {path}")
        else:
            self.say(str(result).rstrip("\n"))

    def show_heatmap(self, result, text: str) -> None:
        from kryptondb.lang import parse
        from kryptondb.tables import format_table

        table = result.to_arrow()
        into = getattr(parse(text), "into", None)
        head = format_table(table.slice(0, HEATMAP_ROWS))
        if table.num_rows > HEATMAP_ROWS:
            where = f"table {into.value}" if into else "the PNG; add INTO <name> to keep a table"
            head = head.rsplit("\n", 1)[0] + f"\n... ({table.num_rows} rows: all in {where})"
        self.say(f"{result.message}\n{head}")
        path = self._out_path(f"{into.value}.png") if into else self._fresh_path("heatmap", "png")
        self.say(f"heatmap saved to {result.save_png(path)}")

    def _out_path(self, name: str) -> str:
        from kryptondb.files import output_folder

        return os.path.normpath(os.path.join(output_folder(self.output_dir), name))

    def _fresh_path(self, stem: str, ext: str) -> str:
        """<stem>_<n>.<ext> in the output directory, never overwriting an earlier one (nor
        following a link that points nowhere)."""
        n = 1
        while os.path.lexists(path := self._out_path(f"{stem}_{n}.{ext}")):
            n += 1
        return path

    def _where(self, line: int | None) -> str:
        if self.source is None or line is None:
            return ""
        return f"{self.source}, statement at line {line}: "

    # -- output ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def fail(self, text: str, cancel: bool = False, trace: bool = False) -> None:
        """Report on stderr; a script stops at its first failure."""
        self.failed, self.cancelled = True, self.cancelled or cancel
        self.out.flush()
        self.err.write(text + "\n")
        if trace and os.environ.get("KRYPTON_DEBUG"):
            self.err.write(traceback.format_exc())
        self.err.flush()
        self.done = self.done or self.stop_on_error

    # -- dot-commands ----------------------------------------------------------------------

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
        import pyarrow as pa

        from kryptondb.tables import format_table

        entries = [e for kind in ("table", "view") for e in self.con.db.tables(kind).values()]
        if not entries:
            return self.say("no tables or views yet (add INTO <name> to a query to keep one)")
        self.say(format_table(pa.table({
            "name": [e.name for e in entries], "kind": [e.kind for e in entries],
            "rows": [e.rows for e in entries],
            "columns": [", ".join(e.columns) for e in entries]})))

    def cmd_models(self, arg: str) -> None:
        import pyarrow as pa

        from kryptondb.model.zoo import ZOO
        from kryptondb.tables import format_table

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
        from kryptondb.files import output_folder

        if arg:
            self.output_dir = output_folder(os.path.expanduser(arg))
        self.say(f"output directory: {self.output_dir}")

    def cmd_timer(self, arg: str) -> None:
        if arg.lower() not in ("on", "off"):
            raise KryptonError(f"usage: .timer on|off (it is {'on' if self.timer else 'off'})")
        self.timer = arg.lower() == "on"


# -- statement boundaries ----------------------------------------------------------------------

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
            i += ch == "\\"  # an escaped character, as in the grammar's STRING
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif text.startswith("--", i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
            continue
        elif ch == ";":
            stmt = text[start:i]
            if _has_code(stmt):
                lead = len(stmt) - len(stmt.lstrip())
                done.append((text.count("\n", 0, start + lead), stmt.strip()))
            start = i + 1
        i += 1
    return done, text[start:]


def _has_code(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


# -- reading lines -----------------------------------------------------------------------------

def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _reader(stdin, stdout, interactive: bool):
    """read(prompt) -> the next line, or None at the end of input. Prompts only on a terminal,
    through input() when it is the process's own (so readline edits the line)."""
    def read(prompt: str) -> str | None:
        if interactive and stdin is sys.stdin and stdout is sys.stdout:
            try:
                return input(prompt) + "\n"
            except EOFError:
                return None
        if interactive:
            stdout.write(prompt)
            stdout.flush()
        return stdin.readline() or None

    return read


@contextmanager
def _line_editing(shell: Shell, enabled: bool):
    """readline with history in ~/.kryptondb_history (or $KRYPTONDB_HISTORY) and completion."""
    try:
        import readline
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


# -- tab completion ----------------------------------------------------------------------------

_EXTRA_WORDS = ("GRAY", "BLACK", "MEAN", "BLUR", "CPU", "NUMPY", "GPU",  # FILL and ON values
                "FROM", "WHERE", "ORDER", "BY", "GROUP", "LIMIT", "DESC", "ASC", "AND", "OR",
                "NOT", "COUNT", "AVG", "MIN", "MAX", "SUM", "DISTINCT")


def grammar_keywords() -> tuple[str, ...]:
    """Every keyword of grammar/kql.lark: its "WORD"i literals and (?i:a|b) terminals.

    >>> {"EXPLAIN", "OCCLUSION", "MODELS", "SVG"} <= set(grammar_keywords())
    True
    """
    from kryptondb.lang.parser import _grammar_path

    with open(_grammar_path(), encoding="utf-8") as f:
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
            import readline

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
        from kryptondb.model.zoo import ZOO

        db = self.connection().db
        return set(ZOO) | {n for kind in ("model", "image", "video", "table", "view")
                           for n in db.names(kind)}


def _dot_commands() -> list[str]:
    return sorted(c for k, _ in COMMANDS for c in re.findall(r"\.[a-z]+", k))
