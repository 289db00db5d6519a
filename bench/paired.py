"""One occlusion query against bench/obe.py's onnxruntime loop, alternating in one process.

bench/obe.py measures every engine in its own child, one after the other, so a host that gets
busier between two children moves the ratio (the loop, whose calls split each layer over
threads that wait for each other, more than KryptonDB's single-threaded workers). Here the
loop (``loop_setup`` and ``_ort_loop``'s heatmap loop) and the KQL query run in turns, which
goes first alternating, ``--reps`` times each after one untimed run of both; the table gives
each rep's ratio and the medians.

    python bench/paired.py --model resnet18 --stride 4 --reps 5 \\
        --options "APPROXIMATE TAU 0.5 DRILLDOWN 0.25 TARGET 3"
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import obe  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18", help="a zoo model (default resnet18)")
    p.add_argument("--stride", type=int, default=8)
    p.add_argument("--reps", type=int, default=5, help="turns of each (default 5)")
    p.add_argument("--options", default="INCREMENTAL", help="the query's plan options "
                   "(default INCREMENTAL)")
    p.add_argument("--json", default=str(C.RESULTS_DIR / "paired.json"))
    args = p.parse_args(argv)
    import numpy as np

    import kryptondb

    spec = dict(model=args.model, engine="onnxruntime-loop", patch=16, stride=args.stride,
                batch=64, reps=1)
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
    q = (f"EXPLAIN OCCLUSION OF IMAGE img USING MODEL {args.model} PATCH 16 STRIDE "
         f"{args.stride} ON cpu {args.options}")
    con.execute(q), loop()  # untimed: sessions, views, plans (a bad query fails first)
    rows = []
    for r in range(args.reps):  # which goes first alternates too
        turns = {"loop": loop, "kryptondb": lambda: con.execute(q)}
        took = {}
        for side in (("loop", "kryptondb") if r % 2 == 0 else ("kryptondb", "loop")):
            t = time.perf_counter()
            turns[side]()
            took[side] = time.perf_counter() - t
        rows.append((took["loop"], took["kryptondb"]))
        C.progress(f"rep {r}: loop {rows[-1][0]:.2f} s, kryptondb {rows[-1][1]:.2f} s")
    loops, ours = [a for a, _ in rows], [b for _, b in rows]
    print(f"\n{args.model}, patch 16, stride {args.stride}, {len(corners)} positions: {q}\n")
    print(f"{'rep':>4}  {'loop s':>8}  {'kryptondb s':>11}  {'speedup':>7}")
    for k, (a, b) in enumerate(rows):
        print(f"{k:>4}  {a:8.2f}  {b:11.2f}  {a / b:6.2f}x")
    speedup = C.median(loops) / C.median(ours)
    print(f"{'med':>4}  {C.median(loops):8.2f}  {C.median(ours):11.2f}  {speedup:6.2f}x  "
          f"(median of the ratios {C.median([a / b for a, b in rows]):.2f}x)")
    C.write_json(args.json, {"benchmark": "paired", "args": vars(args),
                             "machine": C.machine_info(), "query": q,
                             "loop_s": loops, "kryptondb_s": ours, "speedup": speedup,
                             "positions": len(corners)})
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
