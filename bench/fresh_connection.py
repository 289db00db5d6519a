"""Few-position occlusion queries, each on a fresh connection: NAIVE, INCREMENTAL and the
planner's default, on models imported from ONNX (the onnx wheel's light_* graphs by default).

Each query opens a new in-memory connection, registers the model (CREATE MODEL, under the file's
stem) and runs one EXPLAIN OCCLUSION, as a script or a web handler would. Per (model, checkout),
one child process runs ``--reps`` rounds of (default, NAIVE, INCREMENTAL); the first round meets
cold caches (model import, onnxruntime sessions), later rounds show what the caches keep across
connections. With ``--baseline DIR`` (another checkout's root, e.g. from ``git archive main``)
the same rounds run on that code too, side by side. Prints a table; writes
bench/results/fresh_connection.json.

    python bench/fresh_connection.py --models bvlc_alexnet,zfnet512 --reps 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODES = ("", "NAIVE", "INCREMENTAL")  # "": the planner's choice


def _child(spec: dict) -> dict:
    """Run in the child: times per round and mode, and the mode the default plan chose."""
    import time

    sys.path.insert(0, spec["root"])  # this checkout's kryptondb, even over an editable install
    sys.meta_path[:] = [f for f in sys.meta_path
                        if not getattr(f, "__module__", "").startswith("__editable__")]
    import kryptondb

    name = Path(spec["path"]).stem  # the file's stem: older code bound a model by it
    rounds = []
    for _ in range(spec["reps"]):
        row = {}
        for mode in MODES:
            t = time.perf_counter()
            con = kryptondb.connect()
            con.execute(f"CREATE MODEL {name} FROM '{spec['path']}'")
            r = con.execute(f"EXPLAIN OCCLUSION OF IMAGE '{kryptondb.bundled_image()}' USING "
                            f"MODEL {name} {spec['query']} {mode}")
            row[mode or "default"] = time.perf_counter() - t
            if not mode:
                scan = next(n for n in r.plan.rewritten.walk() if n.op == "OcclusionScan")
                row["chose"] = scan.arg("mode")
            con.close()
        rounds.append(row)
    return {"kryptondb": kryptondb.__file__, "rounds": rounds}


def _run(root: Path, spec: dict) -> dict:
    args = [sys.executable, __file__, "--child", json.dumps(spec | {"root": str(root)})]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{root}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _light(stem: str) -> str:
    import importlib.util

    onnx_dir = Path(importlib.util.find_spec("onnx").origin).parent
    return str(onnx_dir / "backend" / "test" / "data" / "light" / f"light_{stem}.onnx")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="bvlc_alexnet,zfnet512",
                   help="light_* stems of the onnx wheel, or .onnx paths (comma-separated)")
    p.add_argument("--query", default="PATCH 56 STRIDE 56", help="occlusion options")
    p.add_argument("--reps", type=int, default=3, help="rounds per checkout (first is cold)")
    p.add_argument("--baseline", type=Path, help="another checkout to run side by side")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    here = Path(__file__).resolve().parent.parent
    checkouts = [("baseline", args.baseline.resolve())] if args.baseline else []
    checkouts.append(("this", here))
    rows, raw = [], []
    for stem in args.models.split(","):
        path = stem if stem.endswith(".onnx") else _light(stem)
        spec = {"path": path, "query": args.query, "reps": args.reps}
        for label, root in checkouts:
            res = _run(root, spec)
            raw.append({"model": stem, "checkout": label, **res})
            first, later = res["rounds"][0], res["rounds"][1:] or res["rounds"]
            med = {m: C.median([r[m] for r in later]) for m in ("default", "NAIVE", "INCREMENTAL")}
            rows.append([stem, label, f"{first['NAIVE']:.2f}", f"{first['INCREMENTAL']:.2f}",
                         f"{first['default']:.2f} ({first['chose']})", f"{med['NAIVE']:.2f}",
                         f"{med['INCREMENTAL']:.2f}",
                         f"{med['default']:.2f} ({later[-1]['chose']})",
                         f"{med['INCREMENTAL'] / med['NAIVE']:.2f}"])
    head = ["model", "code", "1st naive s", "1st incr s", "1st default s", "naive s",
            "incr s", "default s", "incr/naive"]
    print(f"{args.query}, fresh connection per query; 1st: first round (cold caches), then "
          f"medians of rounds 2..{args.reps}")
    print(C.format_table(head, rows))
    C.write_json(Path(here, "bench", "results", "fresh_connection.json"),
                 {"query": args.query, "machine": C.machine_info(), "runs": raw})


if __name__ == "__main__":
    main()
