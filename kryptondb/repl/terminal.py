"""The shell's editor on a terminal (prompt_toolkit): whole statements in the history file,
Enter runs a complete statement or a command line and otherwise starts a new line, Tab
completes (completion.py), KQL in colour (highlight.py). prompt_toolkit is imported here, inside
functions, only when a person types at a terminal; scripts and pipes never load it."""

from __future__ import annotations

import os

from kryptondb.repl.completion import Completer, path_completions
from kryptondb.repl.highlight import STYLES, pieces
from kryptondb.repl.text import is_command, ready


def history_path() -> str:
    """$KRYPTONDB_HISTORY, else ~/.kryptondb_history."""
    return os.environ.get("KRYPTONDB_HISTORY") or os.path.expanduser("~/.kryptondb_history")


class Editor:
    """Reads what a person types: ``read(pending)`` is (text to run, text still being
    written). A complete statement comes back whole; a command line typed inside an unfinished
    statement comes back alone, with the statement as the pending text, to edit on."""

    def __init__(self, shell, prompt: str, continuation: str):
        from prompt_toolkit import PromptSession  # ~85 ms to import: only a terminal needs it

        self.prompt = prompt
        self.session = PromptSession(
            history=_history(history_path()), multiline=True, key_bindings=_keys(),
            completer=_completer(Completer(lambda: shell.con)), complete_while_typing=False,
            lexer=_lexer(shell), style=_style(), prompt_continuation=lambda *_: continuation,
            enable_open_in_editor=True)

    def read(self, pending: str = "") -> tuple[str, str]:
        """Raises KeyboardInterrupt (Ctrl-C: the buffer is dropped) and EOFError (Ctrl-D on an
        empty buffer)."""
        result = self.session.prompt(self.prompt, default=pending)
        if isinstance(result, tuple):  # a command line: in the history on its own
            self.session.history.append_string(result[0])
            return result
        return result, ""


def split_command(text: str, row: int) -> tuple[str, str] | None:
    """(command, the other lines) when line ``row`` of the buffer is a command line; the
    other lines end with a newline, so that editing goes on on a line of its own.

    >>> split_command("SELECT *\\n.tables", 1), split_command("SELECT *\\nFROM t", 1)
    (('.tables', 'SELECT *\\n'), None)
    """
    lines = text.split("\n")
    others = "".join(line + "\n" for line in lines[:row] + lines[row + 1:] if line.strip())
    if not is_command(lines[row], others):
        return None
    return lines[row].strip(), others


def _keys():
    from prompt_toolkit.filters import completion_is_selected, is_searching  # as Editor's
    from prompt_toolkit.key_binding import KeyBindings  # same package as Editor's

    keys = KeyBindings()

    @keys.add("enter", filter=completion_is_selected & ~is_searching)
    def _take_completion(event) -> None:
        event.current_buffer.complete_state = None  # Enter picks the completion, runs nothing

    @keys.add("enter", filter=~completion_is_selected & ~is_searching)  # Ctrl-R: its own
    def _enter(event) -> None:
        buffer = event.current_buffer
        command = split_command(buffer.text, buffer.document.cursor_position_row)
        if command is not None and command[1].strip():
            event.app.exit(result=command)
        elif command is not None or ready(buffer.text):
            buffer.validate_and_handle()  # into the history, and prompt() returns the text
        else:
            buffer.newline(copy_margin=False)

    return keys


def _history(path: str):
    from prompt_toolkit.history import FileHistory, InMemoryHistory  # same package as Editor's

    try:
        with open(path, "ab"):
            pass
    except OSError:  # a history nobody can keep is no reason to refuse the shell
        return InMemoryHistory()
    return FileHistory(path)


def _completer(completer: Completer):
    from prompt_toolkit.completion import Completer as Base, Completion  # as Editor's

    class KQLCompleter(Base):
        def get_completions(self, document, complete_event):
            try:
                ctx = completer.context(document.text_before_cursor, document.text_after_cursor)
            except Exception:  # a completion must never break the prompt
                return
            if ctx.kind == "path":
                for rest, shown in path_completions(ctx.prefix):
                    yield Completion(rest, 0, display=shown)
            for word in ctx.words:
                yield Completion(word, -len(ctx.prefix))

    return KQLCompleter()


def _lexer(shell):
    from prompt_toolkit.lexers import Lexer  # same package as Editor's

    keywords = frozenset(Completer(lambda: shell.con).keywords)

    class KQLLexer(Lexer):
        def lex_document(self, document):
            lines = document.lines
            return lambda n: [(f"class:{s}" if s else "", t) for s, t in pieces(lines[n],
                                                                                  keywords)]

    return KQLLexer()


def _style():
    from prompt_toolkit.styles import Style  # same package as Editor's

    return Style.from_dict(STYLES)
