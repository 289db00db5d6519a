"""The ``kryptondb`` command: the interactive shell, scripts (-c, -f), and a few subcommands.

options.py declares the arguments (one style for every subcommand), commands.py runs the
subcommands; this module picks one and turns failures into one line and an exit status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
import warnings

import kryptondb
from kryptondb.cli.commands import COMMANDS
from kryptondb.cli.options import parser as _parser
from kryptondb.connection import terminal_progress
from kryptondb.errors import KryptonError, KryptonWarning
from kryptondb.files import read_script
from kryptondb.repl import run_repl, run_script

__all__ = ["main"]


def _queries(args) -> int:
    """The shell, or -c / -f: statements on the database (--db, else in memory)."""
    con = kryptondb.connect(args.db, progress=terminal_progress, cluster=args.cluster)
    if args.statements is not None:
        return run_script(con, args.statements, output_dir=args.outdir, mode=args.format)
    if args.file is not None:
        return run_script(con, _read_script(args.file), output_dir=args.outdir,
                          source=args.file, mode=args.format)
    return run_repl(con, stderr=sys.stderr, output_dir=args.outdir, mode=args.format)


def _read_script(path: str) -> str:
    """The script's text; only a regular file is read ('-' is standard input), so a FIFO or a
    device is an error at once, not a hang."""
    return sys.stdin.read() if path == "-" else read_script(path)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    db = args.db if args.command != "plan" else None  # plan reads the database it is given
    cluster = args.cluster if args.command != "plan" else None  # and runs on the cluster
    shell_only = [flag for flag, value in (("-c", args.statements), ("-f", args.file),
                                           ("--db", db), ("--outdir", args.outdir),
                                           ("--cluster", cluster))
                  if value is not None]
    if args.command and shell_only:
        parser.error(f"{', '.join(shell_only)}: for the shell and scripts, not for "
                     f"`kryptondb {args.command}`")
    if args.command == "demo" and args.format != "table":
        parser.error("--format: demo prints for people and draws a PNG; predict and recognize "
                     "print data")
    if args.command == "describe" and (args.model_name is None) == (args.model is None):
        parser.commands["describe"].error("give the model once: MODEL or --model MODEL")
    args.outdir = args.outdir or "."
    warnings.simplefilter("ignore", KryptonWarning)  # each result's message already shows them
    try:
        return COMMANDS[args.command](args) if args.command else _queries(args)
    except BrokenPipeError:  # `kryptondb ... | head`: the reader has gone, so stop quietly
        return _reader_gone()
    except (KryptonError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, the traceback only on request
        print(f"internal error: {type(exc).__name__}: {exc} (set KRYPTON_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        if os.environ.get("KRYPTON_DEBUG"):
            traceback.print_exc()
        return 1


def _reader_gone() -> int:
    """The exit status of a command whose output pipe closed: 128 + SIGPIPE, as a shell shows
    for a process SIGPIPE ended. Standard output now goes nowhere, so the final flush at exit
    cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + getattr(signal, "SIGPIPE", 13)

