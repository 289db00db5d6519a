"""One occlusion query against bench/obe.py's onnxruntime loop, alternating in one process.

bench/obe.py measures every engine in its own child, one after the other, so a host that gets
busier between two children moves the ratio (the loop, whose calls split each layer over
threads that wait for each other, more than KryptonDB's single-threaded workers). Here the
loop (``loop_setup`` and ``_ort_loop``'s heatmap loop) and the KQL query run in turns, which
goes first alternating, ``--reps`` times each after one untimed run of both; the table gives
each rep's ratio and the medians. ``--without-winograd`` adds a third side: the same query with
KRYPTONDB_WINOGRAD=0 (the plan KryptonDB makes without Winograd). The small models of
``bench/obe.py --small`` (cnn32, squeezenet) run at their own patch and stride there, the
per-query overhead measured without the drift between children:

    python bench/paired.py --model cnn32 --reps 25 --options NAIVE

    python bench/paired.py --model resnet18 --stride 4 --reps 5 \\
        --options "APPROXIMATE TAU 0.5 DRILLDOWN 0.25 TARGET 3"
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import obe  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", help="a zoo model, or one of bench/obe.py's "
                   f"small ones ({', '.join(obe.SMALL_MODELS)}); default resnet18")
    p.add_argument("--patch", type=int, help="default 16 (cnn32: 4)")
    p.add_argument("--stride", type=int, help="default 8 (cnn32: 2)")
    p.add_argument("--reps", type=int, default=5, help="turns of each (default 5)")
    p.add_argument("--options", default="INCREMENTAL", help="the query's plan options "
                   "(default INCREMENTAL)")
    p.add_argument("--without-winograd", action="store_true", help="a third side: the same "
                   "query with KRYPTONDB_WINOGRAD=0 (docs/ivm.md#winograd)")
    p.add_argument("--json", default=str(C.RESULTS_DIR / "paired.json"))
    args = p.parse_args(argv)
    import numpy as np

    import kryptondb

    patch, stride = obe.SMALL_GRID.get(args.model, (16, 8))
    args.patch, args.stride = args.patch or patch, args.stride or stride
    spec = dict(model=args.model, engine="onnxruntime-loop", patch=args.patch,
                stride=args.stride, batch=64, reps=1)
    sess, name, x, _, corners, occlude = obe.loop_setup(spec)
    cls = int(sess.run(None, {name: x})[0].argmax())

    def loop():  # obe.py's _ort_loop heatmap
        out = np.empty(len(corners), np.float32)
        for k in range(0, len(corners), 64):
            chunk = corners[k:k + 64]
            out[k:k + len(chunk)] = sess.run(None, {name: occlude(chunk)})[0].reshape(
                len(chunk), -1)[:, cls]
        return out

    con = kryptondb.connect()
    con.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS img")
    if obe._model_path(args.model):  # a small model: its ONNX file
        con.execute(f"CREATE MODEL {args.model} FROM '{obe._model_path(args.model)}'")
    q = (f"EXPLAIN OCCLUSION OF IMAGE img USING MODEL {args.model} PATCH {args.patch} STRIDE "
         f"{args.stride} ON cpu {args.options}")
    con.execute(q), loop()  # untimed: sessions, views, plans (a bad query fails first)

    def unaided():  # the plan KryptonDB makes without Winograd (docs/ivm.md#winograd)
        before = os.environ.get("KRYPTONDB_WINOGRAD")
        os.environ["KRYPTONDB_WINOGRAD"] = "0"
        try:
            con.execute(q)
        finally:
            if before is None:
                os.environ.pop("KRYPTONDB_WINOGRAD")
            else:
                os.environ["KRYPTONDB_WINOGRAD"] = before

    turns = {"loop": loop, "kryptondb": lambda: con.execute(q)}
    if args.without_winograd:
        turns["no winograd"] = unaided
        unaided()  # untimed: the direct form's sessions
    rows = []
    for r in range(args.reps):  # which goes first alternates too
        took = {}
        for side in (list(turns) if r % 2 == 0 else list(turns)[::-1]):
            t = time.perf_counter()
            turns[side]()
            took[side] = time.perf_counter() - t
        rows.append(took)
        C.progress(f"rep {r}: " + ", ".join(f"{k} {v:.2f} s" for k, v in took.items()))
    print(f"\n{args.model}, patch {args.patch}, stride {args.stride}, {len(corners)} positions: "
          f"{q}\n")
    sides = [k for k in turns if k != "loop"]
    print(f"{'rep':>4}  {'loop s':>8}" + "".join(f"  {k + ' s':>14}  {'speedup':>7}" for k in sides))
    for k, took in enumerate(rows):
        print(f"{k:>4}  {took['loop']:8.4g}" + "".join(
            f"  {took[s]:14.4g}  {took['loop'] / took[s]:6.2f}x" for s in sides))
    med = {k: C.median([t[k] for t in rows]) for k in turns}
    print(f"{'med':>4}  {med['loop']:8.4g}" + "".join(
        f"  {med[s]:14.4g}  {med['loop'] / med[s]:6.2f}x" for s in sides))
    for s in sides:
        print(f"{s}: median of the ratios {C.median([t['loop'] / t[s] for t in rows]):.2f}x")
    C.write_json(args.json, {"benchmark": "paired", "args": vars(args),
                             "machine": C.machine_info(), "query": q,
                             "loop_s": [t["loop"] for t in rows],
                             "kryptondb_s": [t["kryptondb"] for t in rows],
                             "no_winograd_s": [t["no winograd"] for t in rows]
                             if args.without_winograd else None,
                             "speedup": med["loop"] / med["kryptondb"],
                             "positions": len(corners)})
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
