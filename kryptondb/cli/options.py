"""The ``kryptondb`` command's arguments: one parser, one style across subcommands (-m/--model,
-k/--top, -b/--backend and --format mean the same wherever they appear), and the argparse types
that check a value before any work is done."""

from __future__ import annotations

import argparse

import kryptondb
from kryptondb.errors import KryptonError
from kryptondb.files import output_folder as check_folder, writable_file
from kryptondb.tables import MODES

USAGE = """\
kryptondb [--db PATH] [-c STATEMENTS | -f FILE] [--outdir DIR] [--format FORMAT]
       kryptondb {demo,predict,recognize,describe,models} [options] [--format FORMAT]
       kryptondb [--db PATH] plan "STATEMENT" [--analyze] [-o FILE.html] [--open]
       kryptondb calibrate [-o FILE.json]
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
  kryptondb COMMAND ...       demo, predict, recognize, describe, models, plan, calibrate
                              (kryptondb COMMAND --help)

--format table|csv|json|markdown sets how tables print, for the shell, -c, -f and the
subcommands (default: table, for people). csv and json are data: every row; progress goes to
stderr, and so does everything a subcommand says besides its rows. So
`kryptondb -c "SELECT ..." --format csv > out.csv` writes a clean CSV file.

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
  kryptondb recognize street.avi -k 3 --sheet labels.png   top-3 labels per frame, a picture
  kryptondb predict *.jpg --format csv > labels.csv
  kryptondb models                    the model zoo and where its weights come from
  kryptondb plan "EXPLAIN OCCLUSION OF IMAGE 'cat.jpg' USING MODEL resnet18" --analyze --open
                                      the plan page: DAG, per-layer plan, heatmap (plan.html)

documentation: docs/language.md (KQL reference), docs/results.md (results as data, --format)
and docs/README.md in the source tree;
in the shell, type .help."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kryptondb", usage=USAGE, description=DESCRIPTION,
                                epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"kryptondb {kryptondb.__version__}")
    p.add_argument("--db", metavar="PATH", help="database directory (default: in memory)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run occlusion scans on a Dask cluster: tcp://host:port, tls://host:port,"
                        " local or local:N worker processes (default: $KRYPTONDB_CLUSTER, else "
                        "this process; see docs/scale-out.md)")
    run = p.add_mutually_exclusive_group()
    run.add_argument("-c", metavar="STATEMENTS", dest="statements",
                     help="run these statements and exit")
    run.add_argument("-f", metavar="FILE", dest="file", help="run this KQL script and exit")
    p.add_argument("--outdir", metavar="DIR", type=output_folder,
                   help="where heatmap PNGs and plan SVG/HTML files go (default: .)")
    _format_arg(p, default="table")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", prog="kryptondb")
    demo = _command(sub, "demo", "explain the bundled cat photo: top-k classes and an occlusion "
                    "heatmap PNG", "Predicts the image's top classes, then runs EXPLAIN "
                    "OCCLUSION for the first one and saves the heatmap over the image.")
    _model_args(demo)
    demo.add_argument("--image", help="image to explain (default: the bundled cat photo)")
    demo.add_argument("--patch", type=positive_int, default=16,
                      help="occluding patch side (default 16)")
    demo.add_argument("--stride", type=positive_int, default=8,
                      help="step between patches (default 8)")
    demo.add_argument("-o", "--output", default="heatmap.png", type=output_file,
                      help="where the heatmap PNG goes (default: heatmap.png)")
    pred = _command(sub, "predict", "top-k ImageNet classes of one or more images",
                    "Prints the top-k classes of each image: a list for people, or with "
                    "--format csv|json a row per (image, rank).")
    pred.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    _model_args(pred)
    _format_arg(pred)
    rec = _command(sub, "recognize", "top-k classes of every frame of a video, with an optional "
                   "contact sheet (PNG)", "Runs RECOGNIZE OBJECTS IN VIDEO on a video file (any "
                   "format PyAV decodes) and prints the top-k classes of every frame with its "
                   "stats (changed: share of pixels that changed; mode: how the frame ran); the "
                   "plan is incremental and exact unless --naive.")
    rec.add_argument("video", metavar="VIDEO", help="video file (avi, mp4, ...)")
    _model_args(rec)
    rec.add_argument("--frames", nargs=2, type=frame_number, metavar=("FIRST", "LAST"),
                     action=FrameRange, help="only frames FIRST..LAST (inclusive, numbered from 0)")
    rec.add_argument("--every", type=positive_int, metavar="N", help="every N-th frame")
    rec.add_argument("--naive", action="store_true", help="full inference per frame")
    rec.add_argument("--sheet", metavar="PNG", type=output_file,
                     help="also draw a contact sheet: up to 24 frames, evenly spaced, captioned "
                     "with their top-1 label")
    _format_arg(rec)
    desc = _command(sub, "describe", "per-layer shapes, parameters and FLOPs of a model",
                    "Prints each layer's op, output shape, parameters and FLOPs per image.")
    desc.add_argument("model_name", nargs="?", metavar="MODEL", help=MODEL_HELP)
    desc.add_argument("-m", "--model", metavar="MODEL", help="the same, as an option")
    _format_arg(desc)
    models = _command(sub, "models", "list the model zoo and where each one's weights come from",
                      "Lists the zoo's models, their input size and their weights.")
    _format_arg(models)
    plan = _command(sub, "plan", "the plan page of a statement: one HTML file with its DAG, "
                    "per-layer plan and heatmap", "Writes EXPLAIN PLAN FORMAT HTML of the "
                    "statement: one self-contained page (no network) with the operator DAG, "
                    "each occlusion scan's per-layer plan and projective field, and with "
                    "--analyze the measured times and the heatmap. Statements before the last "
                    "(separated by ';') run first; --db (before `plan`) opens a database.")
    plan.add_argument("statement", metavar="STATEMENT", help="the statement to plan (without "
                      "EXPLAIN PLAN)")
    plan.add_argument("--analyze", action="store_true",
                      help="run the statement: measured times per layer, and its heatmap")
    plan.add_argument("-o", "--output", default="plan.html", type=output_file,
                      metavar="FILE.html", help="where the page goes (default: plan.html)")
    plan.add_argument("--open", action="store_true",
                      help="open the page in a web browser (or say where it is)")
    cal = _command(sub, "calibrate", "measure this machine for the planner's cost model",
                   "Times one layer of every kind by output size, a backend call, the gather "
                   "and the frontier copies on this machine (about half a minute), and writes "
                   "the calibration the planner reads from then on (docs/ivm.md).")
    cal.add_argument("-o", "--output", type=output_file, metavar="FILE.json", default=None,
                     help="where it goes (default: $KRYPTONDB_CALIBRATION, else "
                     "~/.cache/kryptondb/calibration.json, which the planner reads; it reads "
                     "another file where KRYPTONDB_CALIBRATION names it)")
    p.commands = {"demo": demo, "predict": pred, "recognize": rec, "describe": desc,
                  "models": models, "plan": plan, "calibrate": cal}  # for errors that name the command's usage
    return p


MODEL_HELP = "zoo name (kryptondb models) or path to an .onnx file"


def _command(sub, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=description)


def _model_args(p) -> None:
    """The options every command that runs a model shares, with one meaning."""
    p.add_argument("-m", "--model", default="mobilenet_v2", metavar="MODEL",
                   help=f"{MODEL_HELP} (default: mobilenet_v2)")
    p.add_argument("-k", "--top", type=positive_int, default=5, metavar="K",
                   help="how many classes to show per image or frame (default 5)")
    p.add_argument("-b", "--backend", default="onnxruntime", choices=["onnxruntime", "numpy"],
                   help="execution backend (default: onnxruntime)")


def _format_arg(p, default=argparse.SUPPRESS) -> None:
    """--format, on the main parser (for the shell, -c, -f) and on each command that prints a
    table; a command's own default is the main parser's, so either place sets it."""
    p.add_argument("--format", choices=MODES, default=default,
                   help="how tables print: table (for people, the default), csv, json (an "
                   "array of row objects) or markdown")


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
