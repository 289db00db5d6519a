"""One 3x3 convolution on one core: onnxruntime's direct form against Winograd's F(2x2, 3x3)
and F(4x4, 3x3) (kryptondb/runtime/winograd.py), on the channels-last contexts incremental plans
feed.

For each shape (channels, context side, contexts per call), the three run in turns, the order
alternating, ``--reps`` times each after one untimed call; the table gives the medians, the
form plans pick for the size, the direct form's time over that one's, and each form's largest
difference from the direct output (relative to its largest magnitude); JSON in
bench/results/winograd.json.

    python bench/winograd.py --reps 15
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

# (channels, context side, contexts): ResNet18's layer4 and layer3 at tau 0.5 and exact (9x9,
# 13x13: F(4x4, 3x3)), VGG16's deep layers at stride 8, and smaller channel counts, below the
# threshold
SHAPES = ((512, 6, 31), (256, 9, 31), (512, 9, 64), (256, 13, 32), (512, 12, 32), (512, 20, 32),
          (256, 30, 32), (128, 15, 31), (64, 17, 31))


def measure(channels: int, side: int, items: int, reps: int) -> dict:
    from kryptondb.graph.builder import Builder
    from kryptondb.graph.ops import input_node
    from kryptondb.graph.ir import Graph
    from kryptondb.runtime import winograd
    from kryptondb.runtime.backends import OnnxRuntimeBackend

    b = Builder("bench", (channels, side, side), seed=0, bias_std=0.5)
    g = b.build(b.conv("input", "c", channels, 3, 1, 0, bias=True))
    direct = Graph.build("bench:direct", [input_node("x", (channels, side, side), True),
                                          replace(g["c"], inputs=("x",))], "c", g.weights)
    x = np.random.default_rng(0).standard_normal((items, side, side, channels), np.float32)
    # one Winograd per form: a Winograd keeps one form's transformed weights, so one object
    # run in both forms in turns would make them again in half its calls, as no plan does
    backend = OnnxRuntimeBackend(threads=1)
    f2, f4 = winograd.Winograd(g["c"], g), winograd.Winograd(g["c"], g)
    runs = {"direct": lambda: backend.run(direct, {"x": x})["c"],
            "F2": lambda: f2(x, winograd.F2), "F4": lambda: f4(x, winograd.F4)}
    out = {k: f() for k, f in runs.items()}  # untimed: sessions
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(reps):
        for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t, _ = C.time_reps(runs[k], 1, warmup=0)
            times[k] += t
    scale = np.abs(out["direct"]).max()
    med = {k: C.median(v) for k, v in times.items()}
    picked = f"F{winograd.form(side, side).m}"
    return {"channels": channels, "side": side, "items": items, "times": times,
            "direct_s": med["direct"], "f2_s": med["F2"], "f4_s": med["F4"], "form": picked,
            "ratio": med["direct"] / med[picked],
            "relative_difference": {k: float(np.abs(out[k] - out["direct"]).max() / scale)
                                    for k in ("F2", "F4")}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=15, help="turns of each (default 15)")
    p.add_argument("--json", default=str(C.RESULTS_DIR / "winograd.json"))
    args = p.parse_args(argv)
    rows = []
    print(f"{'channels':>8} {'context':>8} {'items':>5} {'direct':>10} {'F(2x2)':>10} "
          f"{'F(4x4)':>10} {'plans':>5} {'ratio':>6} {'diff F2':>8} {'diff F4':>8}")
    for c, side, items in SHAPES:
        r = measure(c, side, items, args.reps)
        rows.append(r)
        d = r["relative_difference"]
        print(f"{c:>8} {side:>5}x{side:<2} {items:>5} {r['direct_s'] * 1e3:>8.1f}ms "
              f"{r['f2_s'] * 1e3:>8.1f}ms {r['f4_s'] * 1e3:>8.1f}ms {r['form']:>5} "
              f"{r['ratio']:>5.2f}x {d['F2']:>8.1e} {d['F4']:>8.1e}", flush=True)
    C.write_json(args.json, {"rows": rows, "reps": args.reps})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
