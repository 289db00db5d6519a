"""Captum's Occlusion against kryptondb.attr.Occlusion (issue 13): the same weights (the zoo
model; Captum runs it as a torch module, bench/torch_graph.py), the bundled image, its top
class, Captum's default baseline 0, at 224 pixels, windows (3, w, w) and strides (3, s, s).

Per model and setting, three engines, each in its own child process (its peak RSS its own):
- captum: ``captum.attr.Occlusion`` under ``torch.no_grad()`` with torch's default threads, one
  run at perturbations_per_eval 16 and one at 64; the row shows the best;
- kryptondb: ``kryptondb.attr.Occlusion(model)``, the plan the cost model picks; a cold first
  call (views, sessions) and the median of --reps warm calls;
- kryptondb-approx: the same with ``approximate={"tau": 0.5, "drilldown": 0.25}``, and its SSIM
  to kryptondb's exact map.
Each row gives the speedup over Captum's best and the largest difference from Captum's
attribution, relative to its largest value. Targets (resnet18, window 16, stride 4): the exact
engine >= 5x with results equal to Captum's, the approximate one >= 15x.

Equal means within 1e-5 of the largest attribution, or within twice Captum's own float32 error:
on deep models with seeded weights a float32 engine's attribution lies up to 1e-4 from the
float64 one (Captum's included), so the captum child also measures its float32 error against a
float64 run, on the grid with stride = window (cheap: at most 196 windows at 224).

(Not named captum.py: this folder comes first on sys.path, and that name would hide Captum.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
from obe import torch_setup  # noqa: E402 - the Captum engines share their setup

ENGINES = ("captum", "kryptondb", "kryptondb-approx")
APPROXIMATE = {"tau": 0.5, "drilldown": 0.25}
PERTURBATIONS = (16, 64)
TARGETS = {("resnet18", 16, 4): {"kryptondb": 5.0, "kryptondb-approx": 15.0}}
IDENTICAL = 1e-5  # relative to the largest attribution (or twice Captum's float32 error)


def _window(spec) -> dict:
    w, s = spec["window"], spec["stride"]
    return dict(sliding_window_shapes=(3, w, w), strides=(3, s, s))


def _captum(spec) -> dict:
    try:
        import torch
        from captum.attr import Occlusion
    except ImportError as exc:
        return {"skipped": f"not installed ({exc.name})"}
    _, _, net, xt, cls = torch_setup(spec)
    runs, out = {}, None
    for ppe in PERTURBATIONS:
        def run(ppe=ppe):
            with torch.no_grad():
                return Occlusion(net).attribute(xt, target=cls, perturbations_per_eval=ppe,
                                                **_window(spec))
        (t,), out = C.time_reps(run, 1, warmup=0)
        runs[ppe] = t
    best = min(runs, key=runs.get)
    return {"times": [runs[best]], "per_eval": best, "runs": runs, "class": cls,
            "map": out[0, 0].numpy().tolist(), "threads": torch.get_num_threads(),
            "float32_error": _float32_error(net, xt, cls, spec["window"])}


def _float32_error(net, xt, cls: int, window: int) -> float:
    """Captum's own float32 error: its attribution against the float64 one (the module's
    weights in float64), relative to the largest, on the grid with stride = window."""
    import copy

    import torch
    from captum.attr import Occlusion

    wide = copy.copy(net)
    wide.w = {k: v.double() for k, v in net.w.items()}  # TorchGraph keeps weights in a dict
    kw = dict(target=cls, perturbations_per_eval=16, sliding_window_shapes=(3, window, window),
              strides=(3, window, window))
    with torch.no_grad():
        narrow = Occlusion(net).attribute(xt, **kw).double()
        exact = Occlusion(wide).attribute(xt.double(), **kw)
    return float((narrow - exact).abs().max() / exact.abs().max())


def _krypton(spec) -> dict:
    import numpy as np

    from kryptondb.attr import Occlusion

    model, x, _, _, cls = torch_setup(spec)
    approximate = APPROXIMATE if spec["engine"] == "kryptondb-approx" else None
    occ = Occlusion(model, approximate=approximate)
    (cold,), out = C.time_reps(lambda: occ.attribute(x, target=cls, **_window(spec)), 1, 0)
    times, out = C.time_reps(lambda: occ.attribute(x, target=cls, **_window(spec)),
                             spec["reps"], warmup=0)
    result = {"times": times, "cold_s": cold, "map": out[0, 0].tolist(), "class": cls,
              "stats": {k: v for k, v in occ.stats.items() if np.isscalar(v) or
                        isinstance(v, (tuple, list))}}
    if approximate:
        from kryptondb.approx.quality import ssim

        exact = Occlusion(model).attribute(x, target=cls, **_window(spec))  # untimed
        result["ssim"] = ssim(exact[0, 0], out[0, 0])
    return result


MEASURE = {"captum": _captum, "kryptondb": _krypton, "kryptondb-approx": _krypton}


def _child(spec: dict) -> dict:
    return MEASURE[spec["engine"]](spec)


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "mobilenet_v2"])
    p.add_argument("--windows", nargs="+", type=int, default=[15, 16])
    p.add_argument("--strides", nargs="+", type=int, default=[8, 4])
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument("--reps", type=int, default=1, help="warm kryptondb runs (median shown)")
    p.add_argument("--json", default=str(C.RESULTS_DIR / "vs_captum.json"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _args(argv)
    results, rows = [], []
    for model in args.models:
        for window in args.windows:
            for stride in args.strides:
                ref = None
                for engine in args.engines:
                    C.progress(f"{model} window {window} stride {stride}: {engine}")
                    spec = dict(model=model, engine=engine, window=window, stride=stride,
                                reps=args.reps)
                    r = C.run_child(__file__, spec, timeout=7200)
                    r.update(model=model, engine=engine, window=window, stride=stride)
                    ref = ref or (r if engine == "captum" and "times" in r else None)
                    rows.append(_row(r, ref))
                    results.append(r)
    _print(rows)
    for r in results:
        r.pop("map", None)  # the maps made the checks; the JSON keeps the numbers
    C.write_json(args.json, {"benchmark": "captum", "args": vars(args),
                             "machine": C.machine_info(), "results": results})
    print(f"\nJSON: {args.json}")
    return 0


def _row(r: dict, ref: dict | None) -> list:
    import numpy as np

    head = [r["model"], r["window"], r["stride"], r["engine"]]
    if "times" not in r:
        return head + ["-", "-", "-", "-", r.get("skipped") or r.get("error")]
    med = C.median(r["times"])
    speedup = C.median(ref["times"]) / med if ref and r is not ref else None
    diff = None
    if ref and r is not ref:
        theirs = np.asarray(ref["map"])
        diff = float(np.abs(np.asarray(r["map"]) - theirs).max() / np.abs(theirs).max())
        r["equal_within"] = max(IDENTICAL, 2 * ref["float32_error"])
    r.update(median_s=med, speedup_vs_captum=speedup, max_rel_diff_vs_captum=diff)
    return head + [f"{med:.2f}", f"{speedup:.2f}x" if speedup else "-",
                   f"{diff:.1e}" if diff is not None else "-",
                   f"{r['peak_rss_mib']:.0f}", _check(r, speedup, diff)]


def _check(r: dict, speedup, diff) -> str:
    if r["engine"] == "captum":
        runs = ", ".join(f"{k}: {v:.1f} s" for k, v in r["runs"].items())
        return (f"perturbations_per_eval {runs}; {r['threads']} threads; float32 error "
                f"{r['float32_error']:.1e}")
    stats = r.get("stats", {})
    note = f"{stats.get('plan')} batch {stats.get('batch')}, cold {r['cold_s']:.1f} s"
    if r.get("ssim") is not None:
        note += f", SSIM {r['ssim']:.3f}"
    target = TARGETS.get((r["model"], r["window"], r["stride"]), {}).get(r["engine"])
    if target and speedup:
        same = r["engine"] != "kryptondb" or (diff is not None and diff <= r["equal_within"])
        note += f"; target >= {target:g}x" + (f", equal within {r['equal_within']:.0e}"
                                              if r["engine"] == "kryptondb" else "")
        note += ": " + ("PASS" if speedup >= target and same else "FAIL")
    return note


def _print(rows) -> None:
    print("\nOcclusion attribution at 224 px, bundled chelsea.png, top class, baseline 0")
    print("captum: best of perturbations_per_eval 16 and 64, torch.no_grad, default threads\n")
    print(C.format_table(["model", "window", "stride", "engine", "s", "x captum",
                          "max rel diff", "peak RSS MiB", "check"], rows,
                         [False, True, True, False, True, True, True, True, False]))


if __name__ == "__main__":
    if C.CHILD_FLAG in sys.argv:
        C.child_main(sys.argv, _child)
    else:
        sys.exit(main())
