"""The ``kryptondb`` command: the interactive shell, scripts (-c, -f), and a few subcommands."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
import traceback
import warnings

import kryptondb
from kryptondb.connection import terminal_progress
from kryptondb.errors import KryptonError, KryptonWarning
from kryptondb.files import output_folder as check_folder, read_regular, writable_file
from kryptondb.model.zoo import ZOO
from kryptondb.repl import run_repl, run_script

USAGE = """\
kryptondb [--db PATH] [-c STATEMENTS | -f FILE] [--outdir DIR]
       kryptondb {demo,predict,recognize,describe,models} [options]
       kryptondb --help | --version"""

DESCRIPTION = """\
KryptonDB is a query engine for CNN inference that re-runs a network on slightly different
inputs fast: occlusion-based explanations (slide a patch over an image and re-run the CNN at
every position) and object recognition in video. Queries are written in KQL, a small SQL-like
language; results are tables, heatmaps (saved as PNG) and plans.

modes:
  kryptondb                   interactive shell (REPL) on an in-memory database
  kryptondb --db PATH         the shell on the on-disk database in directory PATH (created if
                              missing); combines with -c and -f
  kryptondb -c "STATEMENTS"   run statements separated by ';' and exit
  kryptondb -f FILE.kql       run a script and exit ('-' reads standard input)
  kryptondb COMMAND ...       demo, predict, recognize, describe, models
                              (kryptondb COMMAND --help)

-c and -f stop at the first error and exit with status 1, the error on stderr; so does every
command (a bad argument value: status 2). Output piped to a reader that stops early (| head)
ends quietly with status 141. Heatmaps are saved as heatmap_<n>.png (or <table>.png with INTO
<table>) in --outdir; EXPLAIN PLAN FORMAT SVG/HTML likewise as plan_<n>.svg/html."""

EPILOG = """\
example queries:
  PREDICT IMAGE 'cat.jpg' USING MODEL mobilenet_v2 TOP 3;
  EXPLAIN OCCLUSION OF IMAGE 'cat.jpg' USING MODEL mobilenet_v2 PATCH 16 STRIDE 8 INTO heat;
  SELECT y, x, drop FROM heat ORDER BY drop DESC LIMIT 5;
  EXPLAIN PLAN ANALYZE FOR PREDICT IMAGE 'cat.jpg' USING MODEL resnet18;

examples:
  kryptondb demo                      explain the bundled cat photo (heatmap.png)
  kryptondb --db mydb -c "LOAD IMAGE 'cat.jpg' AS cat; SHOW IMAGES"
  kryptondb -f explain.kql --outdir figures
  kryptondb predict photo.jpg -m efficientnet_lite0 -k 3
  kryptondb recognize street.avi --sheet labels.png   top-1 label per frame, and a picture
  kryptondb models                    the model zoo and where its weights come from

documentation: docs/language.md (KQL reference) and docs/README.md in the source tree;
in the shell, type .help."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kryptondb", usage=USAGE, description=DESCRIPTION,
                                epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"kryptondb {kryptondb.__version__}")
    p.add_argument("--db", metavar="PATH", help="database directory (default: in memory)")
    run = p.add_mutually_exclusive_group()
    run.add_argument("-c", metavar="STATEMENTS", dest="statements",
                     help="run these statements and exit")
    run.add_argument("-f", metavar="FILE", dest="file", help="run this KQL script and exit")
    p.add_argument("--outdir", metavar="DIR", type=output_folder,
                   help="where heatmap PNGs and plan SVG/HTML files go (default: .)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", prog="kryptondb")
    demo = sub.add_parser("demo", help="explain the bundled cat photo: top-5 classes and an "
                                       "occlusion heatmap PNG")
    _model_args(demo, default_model="mobilenet_v2")
    demo.add_argument("--image", help="image to explain (default: the bundled cat photo)")
    demo.add_argument("--patch", type=positive_int, default=16,
                      help="occluding patch side (default 16)")
    demo.add_argument("--stride", type=positive_int, default=8,
                      help="step between patches (default 8)")
    demo.add_argument("--output", "-o", default="heatmap.png", type=output_file,
                      help="where the heatmap PNG goes (default: heatmap.png)")
    pred = sub.add_parser("predict", help="top-k ImageNet classes of one or more images")
    pred.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    _model_args(pred, default_model="mobilenet_v2")
    rec = sub.add_parser("recognize", help="top-k classes of every frame of a video, with an "
                         "optional contact sheet (PNG)",
                         description="Runs RECOGNIZE OBJECTS IN VIDEO on a video file (any "
                         "format PyAV decodes) and prints the top-1 label per frame and per-"
                         "frame stats; the plan is incremental and exact unless --naive.")
    rec.add_argument("video", help="video file (avi, mp4, ...)")
    rec.add_argument("--frames", nargs=2, type=frame_number, metavar=("FIRST", "LAST"),
                     action=FrameRange, help="only frames FIRST..LAST (inclusive, numbered from 0)")
    rec.add_argument("--every", type=positive_int, help="every n-th frame")
    rec.add_argument("--naive", action="store_true", help="full inference per frame")
    rec.add_argument("--sheet", metavar="PNG", type=output_file,
                     help="also draw a contact sheet: up to 24 frames, evenly spaced, captioned "
                     "with their top-1 label")
    _model_args(rec, default_model="mobilenet_v2")
    desc = sub.add_parser("describe", help="per-layer shapes, parameters and FLOPs of a model")
    desc.add_argument("model", help="zoo name or path to an .onnx file")
    sub.add_parser("models", help="list the model zoo and where each one's weights come from")
    return p


def _model_args(p, default_model: str) -> None:
    p.add_argument("--model", "-m", default=default_model,
                   help=f"zoo name or .onnx path (default: {default_model})")
    p.add_argument("--top", "-k", type=positive_int, default=5,
                   help="how many classes to show (default 5)")
    p.add_argument("--backend", "-b", default="onnxruntime", choices=["onnxruntime", "numpy"],
                   help="execution backend (default: onnxruntime)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def frame_number(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"frames are numbered from 0, got {value}")
    return value


def _integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if abs(value) > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text[:20]}... is too large")
    return value


class FrameRange(argparse.Action):
    """--frames FIRST LAST, with FIRST <= LAST."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values[0] > values[1]:
            parser.error(f"argument {option_string}: FIRST {values[0]} is after LAST {values[1]}")
        setattr(namespace, self.dest, values)


def output_file(path: str) -> str:
    """argparse type: a file to write, whose folder exists, and which is not a folder, FIFO or
    device (checked before any work is done)."""
    try:
        return writable_file(path, "file")
    except KryptonError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def output_folder(path: str) -> str:
    """argparse type: the folder files go to (created when the first one is written); not a
    file, FIFO or device."""
    try:
        return check_folder(path, "--outdir folder", create=False)
    except KryptonError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _predict(model_name, images, k, backend) -> None:
    t = time.perf_counter()
    model = kryptondb.load_model(model_name)
    classes = math.prod(model.graph[model.graph.output].shape)
    if k > classes:
        raise KryptonError(f"--top {k}: {model.name} has {classes} classes")
    print(f"model: {model.name} [{model.weights}]")
    results = model.top(images, k=k, backend=backend)
    for path, preds in zip(images, results):
        print(f"\n{path}")
        for rank, p in enumerate(preds, 1):
            print(f"  {rank}. {p.label:<28} {p.probability:7.2%}  (class {p.class_id})")
    print(f"\n{len(images)} image(s) in {time.perf_counter() - t:.2f} s on {backend}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _demo(args) -> int:
    """Top-5 classes of the image, then the occlusion query that explains the top one."""
    image = args.image or kryptondb.bundled_image()
    _predict(args.model, [image], args.top, args.backend)
    con = kryptondb.connect(progress=terminal_progress)
    model = args.model
    if model not in ZOO and os.path.exists(model):  # an .onnx file: register it first
        con.execute(f"CREATE MODEL demo_model FROM {_quote(model)}")
        model = "demo_model"
    query = (f"EXPLAIN OCCLUSION OF IMAGE {_quote(image)} USING MODEL {model} "
             f"PATCH {args.patch} STRIDE {args.stride}"
             + (f" ON {args.backend}" if args.backend != "onnxruntime" else ""))
    print(f"\nkryptondb> {query};", flush=True)
    result = con.execute(query)
    print(result.message)
    print(f"heatmap saved to {result.save_png(args.output)}")
    print("\nrun `kryptondb` for the interactive shell (.help lists the statements)")
    return 0


def _recognize(args) -> int:
    query = (f"RECOGNIZE OBJECTS IN VIDEO {_quote(args.video)} USING MODEL {args.model} "
             f"TOP {args.top}"
             + (f" FRAMES {args.frames[0]} TO {args.frames[1]}" if args.frames else "")
             + (f" EVERY {args.every}" if args.every else "")
             + (" NAIVE" if args.naive else "")
             + (f" ON {args.backend}" if args.backend != "onnxruntime" else ""))
    print(f"kryptondb> {query};", flush=True)
    con = kryptondb.connect(progress=terminal_progress)
    result = con.execute(query)
    if result.message:
        print(result.message)
    con.db.put_table("labels", result.table)
    stats = [c for c in ("changed", "mode") if c in result.table.column_names]
    print(con.execute("SELECT frame, timestamp, label, probability"
                      + "".join(f", {c}" for c in stats) + " FROM labels WHERE rank = 1"))
    if args.sheet:
        print(f"contact sheet saved to {result.save_contact_sheet(args.sheet)}")
    return 0


def _models(args) -> int:
    print(f"{'model':<20}{'input':<12}weights")
    for e in ZOO.values():
        size = f"{e.preprocess.crop}x{e.preprocess.crop}"
        where = f"ImageNet, from pip package {e.pip_name}" if e.has_real_weights \
            else "seeded random weights (not trained): for speed/exactness, not explanations"
        print(f"{e.name:<20}{size:<12}{where}")
    return 0


def _describe(args) -> int:
    print(kryptondb.load_model(args.model).describe())
    return 0


def _queries(args) -> int:
    """The shell, or -c / -f: statements on the database (--db, else in memory)."""
    con = kryptondb.connect(args.db, progress=terminal_progress)
    if args.statements is not None:
        return run_script(con, args.statements, output_dir=args.outdir)
    if args.file is not None:
        return run_script(con, _read_script(args.file), output_dir=args.outdir,
                          source=args.file)
    return run_repl(con, stderr=sys.stderr, output_dir=args.outdir)


def _read_script(path: str) -> str:
    """The script's text; only a regular file is read ('-' is standard input), so a FIFO or a
    device is an error at once, not a hang."""
    if path == "-":
        return sys.stdin.read()
    try:
        return read_regular(path, "script").decode("utf-8-sig")  # an editor's BOM is no code
    except KryptonError as exc:
        raise KryptonError(f"cannot read script {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise KryptonError(f"cannot read script {path}: it is not UTF-8 text ({exc})") from None


COMMANDS = {
    "demo": _demo,
    "predict": lambda a: _predict(a.model, a.images, a.top, a.backend) or 0,
    "recognize": _recognize,
    "describe": _describe,
    "models": _models,
}


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    shell_only = [flag for flag, value in (("-c", args.statements), ("-f", args.file),
                                           ("--db", args.db), ("--outdir", args.outdir))
                  if value is not None]
    if args.command and shell_only:
        parser.error(f"{', '.join(shell_only)}: for the shell and scripts, not for "
                     f"`kryptondb {args.command}`")
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


if __name__ == "__main__":
    sys.exit(main())
