"""The shell's loop: lines in, statements and dot-commands (commands.py) run on a Connection,
each result shown the way it reads best on a terminal (heatmaps and SVG/HTML plans as files)."""

from __future__ import annotations

import os
import sys
import time
import traceback

from kryptondb.errors import KryptonError
from kryptondb.files import output_folder, writable_file
from kryptondb.lang import parse
from kryptondb.lang.statements import has_code, take_statements
from kryptondb.progress import interruptible
from kryptondb.repl.commands import Commands
from kryptondb.repl.completion import line_editing
from kryptondb.tables import check_mode, format_table, render
from kryptondb.version import __version__

PROMPT, CONTINUATION = "kryptondb> ", "      ...> "
BANNER = f"KryptonDB {__version__} — type .help for help, .quit to leave"
HEATMAP_ROWS = 10  # heatmap rows printed; the whole grid is in the PNG (and the INTO table)


def run_repl(connection, stdin=sys.stdin, stdout=sys.stdout, interactive=None, stderr=None,
             output_dir: str = ".", mode: str = "table") -> int:
    """Read-eval-print loop until .quit or end of input. ``interactive`` (default: stdin is a
    terminal) adds the banner, prompts, line editing, history and tab completion. Errors go to
    ``stderr`` (default: ``stdout``) and the loop goes on. ``mode`` (kryptondb.tables.MODES):
    how table results print. Returns the exit status, 0."""
    interactive = _isatty(stdin) if interactive is None else interactive
    shell = Shell(connection, stdout, stderr or stdout, output_dir=output_dir, mode=mode)
    if interactive:
        shell.say(BANNER)
    read = _reader(stdin, stdout, interactive)
    with line_editing(shell, enabled=interactive and stdin is sys.stdin):
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
               output_dir: str = ".", source: str | None = None, mode: str = "table") -> int:
    """Run statements (and dot-commands) in ``text``; stop at the first error. Returns 0 or 1."""
    shell = Shell(connection, stdout, stderr, output_dir=output_dir, stop_on_error=True,
                  source=source, mode=mode)
    for line in text.splitlines(keepends=True):
        if shell.done:
            break
        shell.feed(line)
    shell.finish()
    shell.close()
    return 1 if shell.failed else 0


class Shell(Commands):
    """The state between lines: connection, pending statement text, output dir, timer, the
    output mode of table results (kryptondb.tables.MODES)."""

    def __init__(self, connection, out, err, output_dir: str = ".", stop_on_error=False,
                 source: str | None = None, mode: str = "table"):
        self.con, self.out, self.err = connection, out, err
        self.mode = check_mode(mode)
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
        self.buffer, self.cancelled = (rest if has_code(rest) else ""), False
        if statements:
            self.buffer_line = self.lineno
        for offset, text in statements:
            self.attempt(self.statement, text, line=first + offset)
            if self.done or self.cancelled:  # Ctrl-C drops the rest of the line too
                self.buffer = ""
                break

    def finish(self) -> None:
        """End of input: a last statement may omit its ';'."""
        if has_code(self.buffer) and not self.done:
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
            path = writable_file(self._fresh_path("plan", fmt), f"plan {fmt.upper()}")
            with open(path, "w", encoding="utf-8") as f:
                f.write(result.message)
            self.say(f"plan saved to {path}")
        elif result.kind == "plan" or (result.kind == "message" and result.table is None):
            self.say(result.message.rstrip("\n"))
        else:
            text = render(result.to_arrow(), self.mode)
            self.say(f"{result.message}\n{text}" if result.message and self.mode == "table"
                     else text)

    def show_heatmap(self, result, text: str) -> None:
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
