"""One 3x3 convolution on one core: onnxruntime's direct form against Winograd's F(2x2, 3x3)
(kryptondb/runtime/winograd.py), on the channels-last contexts incremental plans feed.

For each shape (channels, context side, contexts per call), both run in turns, which goes first
alternating, ``--reps`` times each after one untimed call; the table gives the medians, the
ratio and the largest relative difference of the outputs; JSON in bench/results/winograd.json.

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

# (channels, context side, contexts): ResNet18's layer4 and layer3 at tau 0.5, VGG16's deep
# layers at stride 8, and smaller channel counts, below the threshold
SHAPES = ((512, 6, 31), (256, 9, 31), (512, 12, 32), (512, 20, 32), (256, 30, 32),
          (128, 15, 31), (64, 17, 31))


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
    backend, wino = OnnxRuntimeBackend(threads=1), winograd.Winograd(g["c"], g)
    runs = {"direct": lambda: backend.run(direct, {"x": x})["c"], "winograd": lambda: wino(x)}
    out = {k: f() for k, f in runs.items()}  # untimed: sessions
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(reps):
        for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t, _ = C.time_reps(runs[k], 1, warmup=0)
            times[k] += t
    err = float(np.abs(out["winograd"] - out["direct"]).max() / np.abs(out["direct"]).max())
    med = {k: C.median(v) for k, v in times.items()}
    return {"channels": channels, "side": side, "items": items, "times": times,
            "direct_s": med["direct"], "winograd_s": med["winograd"],
            "ratio": med["direct"] / med["winograd"], "relative_difference": err}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=15, help="turns of each (default 15)")
    p.add_argument("--json", default=str(C.RESULTS_DIR / "winograd.json"))
    args = p.parse_args(argv)
    rows = []
    print(f"{'channels':>8} {'context':>8} {'items':>5} {'direct':>10} {'winograd':>10} "
          f"{'ratio':>6} {'rel diff':>9}")
    for c, side, items in SHAPES:
        r = measure(c, side, items, args.reps)
        rows.append(r)
        print(f"{c:>8} {side:>5}x{side:<2} {items:>5} {r['direct_s'] * 1e3:>8.1f}ms "
              f"{r['winograd_s'] * 1e3:>8.1f}ms {r['ratio']:>5.2f}x {r['relative_difference']:>9.1e}",
              flush=True)
    C.write_json(args.json, {"rows": rows, "reps": args.reps})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
