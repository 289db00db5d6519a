"""Draw docs/approximate_*.png: exact vs approximate occlusion heatmaps side by side on real
images with real MobileNetV2 weights, each panel titled with its setting, its theoretical speedup and its SSIM.

Run from the repository root:  python docs/figures/approximate.py
"""

from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import kryptondb  # noqa: E402
from kryptondb.obe.render import upsample  # noqa: E402

SETTINGS = [("exact", "INCREMENTAL"), ("tau 0.7", "APPROXIMATE TAU 0.7"),
            ("tau 0.5", "APPROXIMATE TAU 0.5"), ("tau 0.4", "APPROXIMATE TAU 0.4"),
            ("drill-down (r 0.25, target 3)", "APPROXIMATE DRILLDOWN 0.25 TARGET 3"),
            ("tau 0.5 + drill-down", "APPROXIMATE TAU 0.5 DRILLDOWN 0.25 TARGET 3")]


def figure(con, image: str, model: str, out: str) -> None:
    results = []
    for title, opts in SETTINGS:
        r = con.execute(f"EXPLAIN OCCLUSION OF IMAGE '{image}' USING MODEL {model} PATCH 16 "
                        f"STRIDE 4 {opts}")
        scan = next(n for n in r.plan.dag.nodes if n.op == "OcclusionScan")
        speedup = scan.arg("theoretical_speedup") * (scan.arg("drilldown_speedup") or 1)
        results.append((title, r.heatmap, speedup))
    exact = results[0][1]
    vmax = float(max(upsample(h).max() for _, h, _ in results))
    fig, axes = plt.subplots(1, len(results) + 1, figsize=(3.1 * (len(results) + 1), 3.6))
    axes[0].imshow(exact.image)
    axes[0].set_title(f"{exact.label}\np = {exact.base_probability:.2f}", fontsize=9)
    for ax, (title, h, speedup) in zip(axes[1:], results):
        ax.imshow(h.image)
        ax.imshow(upsample(h), cmap="inferno", alpha=0.65, vmin=0, vmax=vmax)
        quality = "" if h is exact else f", SSIM {h.ssim:.2f}"
        ax.set_title(f"{title}\ntheoretical {speedup:.1f}x{quality}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{model}, patch 16, stride 4: probability drop (same colour scale); "
                 "speedups over naive, from the cost model", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print("wrote", out)


def main() -> int:
    from skimage import data

    folder = os.path.dirname(data.__file__)
    con = kryptondb.connect()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in sys.argv[1:] or ["chelsea.png", "coffee.png"]:
        stem = os.path.splitext(name)[0]
        figure(con, os.path.join(folder, name), "mobilenet_v2",
               os.path.join(here, f"approximate_{stem}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
