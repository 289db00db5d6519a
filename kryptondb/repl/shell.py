"""The shell's loop: text in, statements and commands (commands.py) run on a Connection, each
result shown the way it reads best (tables in the shell's mode, heatmaps and SVG/HTML plans as
files). A person at a terminal types into terminal.py's editor; pipes, ``-c`` and ``-f`` are
read line by line and stop at the first error, as ``duckdb -f`` does."""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback

from kryptondb.errors import KryptonError
from kryptondb.files import output_folder, writable_file
from kryptondb.lang import parse
from kryptondb.lang.statements import has_code, take_statements
from kryptondb.progress import interruptible
from kryptondb.repl.commands import Commands
from kryptondb.repl.output import Output
from kryptondb.repl.terminal import Editor
from kryptondb.repl.text import is_command
from kryptondb.tables import check_mode, render
from kryptondb.version import __version__

PROMPT, CONTINUATION = "kryptondb> ", "      ...> "
BANNER = f"KryptonDB {__version__} — type .help for help, .quit to leave"
HEATMAP_ROWS = 10  # heatmap rows printed; the whole grid is in the PNG (and the INTO table)


def run_repl(connection, stdin=sys.stdin, stdout=sys.stdout, interactive=None, stderr=None,
             output_dir: str = ".", mode: str = "table") -> int:
    """Read-eval-print loop until .quit or end of input. ``interactive`` (default: stdin is a
    terminal) adds the banner and prompts, and keeps going after errors; on the process's own
    terminal it is the full editor (history, completion, colours, pager). Otherwise statements
    run in order and the first error ends the run. Errors go to ``stderr`` (default:
    ``stdout``). ``mode`` (kryptondb.tables.MODES): how table results print. Returns the exit
    status: 1 when a non-interactive run failed, else 0."""
    interactive = _isatty(stdin) if interactive is None else interactive
    editing = interactive and stdin is sys.stdin and stdout is sys.stdout and _isatty(stdout)
    shell = Shell(connection, stdout, stderr or stdout, output_dir=output_dir, mode=mode,
                  stop_on_error=not interactive, terminal=editing)
    if interactive:
        shell.say(BANNER)
        shell.output.flush()
    if editing:
        _edit(shell, Editor(shell, PROMPT, CONTINUATION))
    else:
        _read_lines(shell, stdin, stdout, interactive)
    if interactive and not shell.done:
        shell.say("")  # after Ctrl-D, leave the user's shell prompt on a fresh line
    shell.close()
    return 1 if shell.failed and not interactive else 0


def run_script(connection, text: str, stdout=sys.stdout, stderr=sys.stderr,
               output_dir: str = ".", source: str | None = None, mode: str = "table") -> int:
    """Run statements (and commands) in ``text``; stop at the first error. Returns 0 or 1."""
    shell = Shell(connection, stdout, stderr, output_dir=output_dir, stop_on_error=True,
                  mode=mode)
    shell.run_text(text, source)
    shell.close()
    return 1 if shell.failed else 0


def _edit(shell, editor: Editor) -> None:
    """The terminal loop: Ctrl-C at the prompt drops what was typed, Ctrl-D leaves."""
    pending = ""
    while not shell.done:
        try:
            text, pending = editor.read(pending)
        except KeyboardInterrupt:
            pending = ""
            continue
        except EOFError:
            break
        for line in text.splitlines(keepends=True):
            shell.feed(line)
        shell.finish()


def _read_lines(shell, stdin, stdout, interactive: bool) -> None:
    while not (shell.done or shell.stopped):
        if interactive:
            stdout.write(shell.prompt())
            stdout.flush()
        try:
            line = stdin.readline()
        except KeyboardInterrupt:  # at the prompt: drop the half-typed statement
            shell.buffer = ""
            shell.say("")
            continue
        if not line:
            break
        shell.feed(line)
    if not (shell.done or shell.stopped):
        shell.finish()


class Shell(Commands):
    """The state between lines: connection, pending statement text, where results and files
    go, the output mode of table results (kryptondb.tables.MODES), timer. ``stop_on_error``:
    the first error ends the run (``stopped``); ``terminal``: results are paged on a screen."""

    def __init__(self, connection, out, err, output_dir: str = ".", stop_on_error=False,
                 source: str | None = None, mode: str = "table", terminal: bool = False):
        self.con, self.err, self.output = connection, err, Output(out, terminal)
        self.mode = check_mode(mode)
        self.output_dir, self.stop_on_error, self.source = output_dir, stop_on_error, source
        self.buffer, self.buffer_line, self.lineno, self.depth = "", 1, 0, 0
        self.timer = self.done = self.failed = self.stopped = self.cancelled = False
        self.owned = False  # a connection opened by .open is the shell's to close

    def prompt(self) -> str:
        return CONTINUATION if self.buffer.strip() else PROMPT

    def feed(self, line: str) -> None:
        """One line of input: a command (also inside an unfinished statement, which stays
        pending), else statement text; each statement completed runs."""
        self.lineno += 1
        if is_command(line, self.buffer):
            return self.command(line.strip())
        if not has_code(self.buffer):
            self.buffer, self.buffer_line = "", self.lineno
        statements, rest = take_statements(self.buffer + line)
        first = self.buffer_line
        self.buffer, self.cancelled = (rest if has_code(rest) else ""), False
        if statements:
            self.buffer_line = self.lineno
        for offset, text in statements:
            self.attempt(self.statement, text, line=first + offset)
            if self.done or self.stopped or self.cancelled:  # Ctrl-C drops the rest too
                self.buffer = ""
                break

    def finish(self) -> None:
        """End of input: a last statement may omit its ';'."""
        if has_code(self.buffer) and not (self.done or self.stopped):
            self.attempt(self.statement, self.buffer.strip(), line=self.buffer_line)
        self.buffer = ""

    def run_text(self, text: str, source: str | None = None) -> bool:
        """Run a script's statements and commands in order, stopping at the first error (named
        with ``source`` and its line); the shell's pending text and position are kept. True
        when every one ran."""
        saved = self.source, self.buffer, self.buffer_line, self.lineno, self.stop_on_error
        self.source, self.buffer, self.lineno, self.stop_on_error = source, "", 0, True
        self.depth += 1
        try:
            for line in text.splitlines(keepends=True):
                if self.done or self.stopped:
                    break
                self.feed(line)
            self.finish()
            return not self.stopped
        finally:
            self.depth -= 1
            self.source, self.buffer, self.buffer_line, self.lineno, self.stop_on_error = saved
            self.stopped = self.stopped and self.stop_on_error

    def close(self) -> None:
        self.output.flush()
        self.output.close()
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
            self.fail(f"error: {self._where(line, action)}{exc}")
        except KeyboardInterrupt:
            self.fail("cancelled", cancel=True)
        except Exception as exc:  # a bug: say so briefly, keep the session alive
            self.fail(f"internal error: {type(exc).__name__}: {exc}"
                      + ("" if os.environ.get("KRYPTON_DEBUG") else
                         " (set KRYPTON_DEBUG=1 for the traceback)"), trace=True)
        finally:
            if self.timer and action == self.statement:
                self.say(f"time: {time.perf_counter() - start:.3f} s")
            if self.depth == 0:
                self.output.flush()
        return False

    def statement(self, text: str) -> None:
        self.show(self.con.execute(text), text)

    def show(self, result, text: str) -> None:
        fmt = result.extra.get("format")
        if result.kind == "heatmap":
            self.show_heatmap(result, text)
        elif result.kind == "plan" and fmt in ("svg", "html"):
            path = writable_file(self._fresh_path("plan", fmt), f"plan {fmt.upper()}")
            with open(path, "w", encoding="utf-8") as f:
                f.write(result.message)
            self.note(f"plan saved to {path}")
        elif result.kind == "plan":
            self.say(result.message.rstrip("\n"))
        elif result.kind == "message" and result.table is None:  # data modes: rows only
            self.note(result.message.rstrip("\n"))
        else:
            if result.message:
                self.note(result.message)
            self.say(render(result.to_arrow(), self.mode, max_width=self.width()))

    def show_heatmap(self, result, text: str) -> None:
        table = result.to_arrow()
        into = getattr(parse(text), "into", None)
        self.note(result.message)
        if self.mode != "table":
            self.say(render(table, self.mode))
        else:
            head = render(table.slice(0, HEATMAP_ROWS), max_width=self.width())
            if table.num_rows > HEATMAP_ROWS:
                where = f"table {into.value}" if into else \
                    "the PNG; add INTO <name> to keep a table"
                head = head.rsplit("\n", 1)[0] + f"\n... ({table.num_rows} rows: all in {where})"
            self.say(head)
        path = self._out_path(f"{into.value}.png") if into else self._fresh_path("heatmap", "png")
        self.note(f"heatmap saved to {result.save_png(path)}")

    def width(self) -> int | None:
        """The screen's width for tables, when results go to a terminal."""
        return shutil.get_terminal_size().columns if self.output.terminal else None

    def _out_path(self, name: str) -> str:
        return os.path.normpath(os.path.join(output_folder(self.output_dir), name))

    def _fresh_path(self, stem: str, ext: str) -> str:
        """<stem>_<n>.<ext> in the output directory, never overwriting an earlier one (nor
        following a link that points nowhere)."""
        n = 1
        while os.path.lexists(path := self._out_path(f"{stem}_{n}.{ext}")):
            n += 1
        return path

    def _where(self, line: int | None, action) -> str:
        if self.source is None or line is None:
            return ""
        what = "statement at line" if action == self.statement else "line"
        return f"{self.source}, {what} {line}: "

    # -- output ----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.output.write(text + "\n")

    def note(self, text: str) -> None:
        """A line about a result (its message, where a file went): with the result in the
        table mode, on stderr in the data modes (csv, json, markdown) so the output parses."""
        if self.mode == "table":
            self.say(text)
        else:
            self.err.write(text + "\n")
            self.err.flush()

    def fail(self, text: str, cancel: bool = False, trace: bool = False) -> None:
        """Report on stderr; a script stops at its first failure."""
        self.failed, self.cancelled = True, self.cancelled or cancel
        self.output.flush()
        self.err.write(text + "\n")
        if trace and os.environ.get("KRYPTON_DEBUG"):
            self.err.write(traceback.format_exc())
        self.err.flush()
        self.stopped = self.stopped or self.stop_on_error


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
