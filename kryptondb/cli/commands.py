"""The subcommands: demo, predict, recognize, describe, models, plan, calibrate. Tables go to stdout in the
chosen format; with csv or json everything else (the query, messages, timings) goes to stderr."""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
import time
import webbrowser
from pathlib import Path

import pyarrow as pa

import kryptondb
from kryptondb.connection import terminal_progress
from kryptondb.errors import KryptonError
from kryptondb.ivm.calibrate import calibrate
from kryptondb.ivm.calibration import machine_path
from kryptondb.lang import parse
from kryptondb.lang.parser import split_statements
from kryptondb.model.zoo import ZOO
from kryptondb.tables import render


def _predict(args, images=None) -> int:
    """The top-k classes of each image: a list for people, or a row per (image, rank)."""
    images, t, say = images or args.images, time.perf_counter(), _say(args)
    model = kryptondb.load_model(args.model)
    classes = math.prod(model.graph[model.graph.output].shape)
    if args.top > classes:
        raise KryptonError(f"--top {args.top}: {model.name} has {classes} classes")
    say(f"model: {model.name} [{model.weights}]")
    results = model.top(images, k=args.top, backend=args.backend)
    if args.format == "table":
        for path, preds in zip(images, results):
            print(f"\n{path}")
            for rank, p in enumerate(preds, 1):
                print(f"  {rank}. {p.label:<28} {p.probability:7.2%}  (class {p.class_id})")
    else:
        rows = [(path, rank, p.class_id, p.label, p.probability)
                for path, preds in zip(images, results) for rank, p in enumerate(preds, 1)]
        _emit(args, pa.table(dict(zip(("image", "rank", "class", "label", "probability"),
                                      map(list, zip(*rows))))))
    say(f"\n{len(images)} image(s) in {time.perf_counter() - t:.2f} s on {args.backend}")
    return 0


def _say(args):
    """print for what is not data: stdout for people (--format table), else stderr."""
    stream = sys.stdout if args.format == "table" else sys.stderr
    return lambda text: print(text, file=stream, flush=True)


def _emit(args, table: pa.Table) -> None:
    """Every row of ``table`` in the chosen format, on stdout."""
    text = render(table, args.format, max_rows=None)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _demo(args) -> int:
    """Top-k classes of the image, then the occlusion query that explains the top one."""
    image = args.image or kryptondb.bundled_image()
    _predict(args, [image])
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


FRAME_COLUMNS = ("frame", "timestamp", "rank", "label", "probability", "changed", "mode")


def _recognize(args) -> int:
    """Every frame's top-k classes: for people the columns FRAME_COLUMNS it has (no rank with
    -k 1), as data every column of the result."""
    query = (f"RECOGNIZE OBJECTS IN VIDEO {_quote(args.video)} USING MODEL {args.model} "
             f"TOP {args.top}"
             + (f" FRAMES {args.frames[0]} TO {args.frames[1]}" if args.frames else "")
             + (f" EVERY {args.every}" if args.every else "")
             + (" NAIVE" if args.naive else "")
             + (f" ON {args.backend}" if args.backend != "onnxruntime" else ""))
    say = _say(args)
    say(f"kryptondb> {query};")
    result = kryptondb.connect(progress=terminal_progress).execute(query)
    if result.message:
        say(result.message)
    table = result.table
    if args.format == "table":
        table = table.select([c for c in FRAME_COLUMNS if c in table.column_names
                              and (c != "rank" or args.top > 1)])
    _emit(args, table)
    if args.sheet:
        say(f"contact sheet saved to {result.save_contact_sheet(args.sheet)}")
    return 0


def _models(args) -> int:
    rows = [(e.name, f"{e.preprocess.crop}x{e.preprocess.crop}",
             "ImageNet" if e.has_real_weights else "seeded random weights",
             e.pip_name if e.has_real_weights else "") for e in ZOO.values()]
    _emit(args, pa.table(dict(zip(("model", "input", "weights", "package"),
                                  map(list, zip(*rows))))))
    _say(args)("seeded random weights are not trained: for speed and exactness, not explanations")
    return 0


def _describe(args) -> int:
    desc = kryptondb.load_model(args.model_name or args.model).describe()
    if args.format == "table":
        print(desc)
        return 0
    _emit(args, pa.table({"layer": [r.layer for r in desc.rows], "op": [r.op for r in desc.rows],
                          "shape": ["x".join(map(str, r.shape)) for r in desc.rows],
                          "params": [r.params for r in desc.rows],
                          "flops": [r.flops for r in desc.rows],
                          "bytes": [r.bytes for r in desc.rows]}))
    return 0


def _plan(args) -> int:
    """The plan page of a statement (EXPLAIN PLAN [ANALYZE] FORMAT HTML), written to a file;
    statements before the last (LOAD IMAGE ...) run first, on --db or an in-memory database."""
    *before, last = split_statements(args.statement) or [""]
    if not last.strip():
        raise KryptonError("kryptondb plan: no statement given")
    if re.match(r"\s*EXPLAIN\s+PLAN\b", last, re.I):
        raise KryptonError("kryptondb plan: give the statement itself; the command adds "
                           "EXPLAIN PLAN (--analyze: EXPLAIN PLAN ANALYZE)")
    parse(last)  # its syntax errors point into the statement as the user wrote it
    explain = f"EXPLAIN PLAN{' ANALYZE' if args.analyze else ''} FORMAT HTML FOR {last.strip()}"
    con = kryptondb.connect(args.db, progress=terminal_progress, cluster=args.cluster)
    page = con.execute(";".join([*before, explain])).message
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(page)
    print(f"plan page written to {args.output}")
    if args.open:
        uri = Path(args.output).resolve().as_uri()
        if not webbrowser.open(uri):
            print(f"no browser could open it here: open {uri} in a browser")
    return 0


def _calibrate(args) -> int:
    """Measure this machine for the cost model and write its calibration."""
    say = _say(args)
    say("measuring (about half a minute; keep the machine otherwise idle) ...")
    path = calibrate(args.output, say)
    if os.path.abspath(path) == os.path.abspath(machine_path()):
        say(f"calibration written to {path}; the planner reads it from now on")
    else:  # -o elsewhere: the planner reads it only where told to
        say(f"calibration written to {path}; the planner reads it where "
            f"KRYPTONDB_CALIBRATION={shlex.quote(path)} is set")
    return 0


COMMANDS = {
    "demo": _demo,
    "predict": _predict,
    "recognize": _recognize,
    "describe": _describe,
    "models": _models,
    "calibrate": _calibrate,
    "plan": _plan,
}
