"""Where the shell's printed results go: the screen, or a file (``.output FILE``); on a
terminal, output longer than the screen goes through a pager ($PAGER, else ``less -FRX``)."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import signal
import subprocess

from kryptondb.files import writable_file


class Output:
    """A stream for results. With ``terminal`` (the shell's stdout is a terminal it reads and
    writes interactively) and paging on, a statement's output is held until it ends, then
    paged when it would not fit on the screen; a file given by ``.output`` is never paged."""

    def __init__(self, stream, terminal: bool = False):
        self.stream, self.terminal, self.paging = stream, terminal, terminal
        self.file = None
        self.held: list[str] = []

    def write(self, text: str) -> None:
        if self.file is not None:
            self.file.write(text)
            self.file.flush()
        elif self.paging and self.terminal:
            self.held.append(text)
        else:
            self.stream.write(text)
            self.stream.flush()

    def flush(self) -> None:
        """Show what was held: through the pager when it is taller than the screen."""
        text, self.held = "".join(self.held), []
        if not text:
            return
        if not (too_tall(text, shutil.get_terminal_size()) and page(text, self.stream)):
            self.stream.write(text)
            self.stream.flush()

    def redirect(self, path: str | None) -> None:
        """Results go to the file at ``path`` (replacing it), or back to the stream (None)."""
        if path is not None:
            path = writable_file(path, ".output file")
        self.close()
        if path is not None:
            self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - open until .output

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def too_tall(text: str, size: os.terminal_size) -> bool:
    """Whether ``text`` takes more lines than the screen has, leaving one for the prompt
    (long lines count as the lines they wrap to).

    >>> too_tall("a\\nb\\n", os.terminal_size((80, 3))), too_tall("a\\n" * 3, os.terminal_size((80, 3)))
    (False, True)
    >>> too_tall("x" * 170 + "\\n", os.terminal_size((80, 3)))
    True
    """
    width = max(1, size.columns)
    rows = sum(max(1, math.ceil(len(line) / width)) for line in text.splitlines())
    return rows > size.lines - 1


def pager_command() -> list[str] | None:
    """$PAGER (split as a shell would; empty: no pager), else ``less -FRX`` where less exists."""
    chosen = os.environ.get("PAGER")
    if chosen is None:
        return ["less", "-FRX"] if shutil.which("less") else None
    return shlex.split(chosen) or None


def page(text: str, stream) -> bool:
    """Show ``text`` through the pager; False when there is none (or it cannot start). Ctrl-C
    belongs to the pager meanwhile (less uses it to stop a search)."""
    command = pager_command()
    if command is None:
        return False
    stream.flush()
    previous = signal.signal(signal.SIGINT, _ignore)  # a handler, not SIG_IGN: the pager
    try:                                              # gets the default back at exec
        subprocess.run(command, input=text.encode(), check=False)
    except OSError:
        return False
    finally:
        signal.signal(signal.SIGINT, previous)
    return True


def _ignore(signum, frame) -> None:
    pass
