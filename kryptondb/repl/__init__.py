"""The interactive shell: read statements and commands, run them on a Connection, and show each
result the way it reads best on a terminal.

A statement ends at a ';' outside quotes and comments, so one can span lines and one line can
hold several. A command (``.tables``, ``\\d``, ...) takes a line of its own, at any prompt.
Tables print in the shell's mode (``.mode``); heatmaps and SVG/HTML plans are written as files
into the output directory (``.outdir DIR``) and their paths printed. Input that is not a person
at a terminal (a pipe, ``kryptondb -c`` and ``-f``) runs statement by statement and stops at the
first error, with exit status 1. docs/shell.md tells the whole story.

>>> import io, kryptondb
>>> out = io.StringIO()
>>> run_repl(kryptondb.connect(), io.StringIO("SHOW\\n  VIEWS;\\n.bogus\\nSHOW VIEWS;\\n"), out)
1
>>> print(out.getvalue().strip())
name  rows  columns  created
----  ----  -------  -------
(0 rows)
error: unknown command '.bogus'; try .help
"""

from kryptondb.repl.commands import COMMANDS, EXAMPLES
from kryptondb.repl.completion import Completer, grammar_keywords
from kryptondb.repl.shell import Shell, run_repl, run_script

__all__ = ["COMMANDS", "EXAMPLES", "Completer", "Shell", "grammar_keywords", "run_repl",
           "run_script"]
