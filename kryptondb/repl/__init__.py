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

from kryptondb.repl.commands import COMMANDS, EXAMPLES
from kryptondb.repl.completion import Completer, grammar_keywords
from kryptondb.repl.shell import Shell, run_repl, run_script

__all__ = ["COMMANDS", "EXAMPLES", "Completer", "Shell", "grammar_keywords", "run_repl",
           "run_script"]
