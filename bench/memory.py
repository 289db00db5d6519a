"""Peak memory of occlusion scans under MEMORY budgets, beside the plain onnxruntime loop.

For each model and budget, one child process runs `EXPLAIN OCCLUSION ... PATCH 4 STRIDE 2
MEMORY <mb> MB` (12k positions on a 224x224 input) and samples its resident set for the first
--seconds (the scan need not finish); a child per model runs the baseline for as long: the
hand-written loop bench/obe.py times (NumPy occlusion, onnxruntime's own InferenceSession on
the exported .onnx file), at --loop-batch positions per call (default 1: its peak is the
model's weights, its session and one input's activations). Peaks are the kernel's high-water
mark (VmHWM) of each child, from its start (model loading included).

Target (issue 11): every row's peak within budget + the loop's peak + 300 MB.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODELS = ("vgg16", "resnet18", "mobilenet_v2")
BUDGETS = (64, 256, 1024)
SLACK_MB = 300


def _child(spec: dict) -> dict:
    """Run the workload in a thread for spec['seconds'], sampling the resident set."""
    t0, samples, done = time.perf_counter(), [], {"positions": 0}
    work = _engine if spec["engine"] == "kryptondb" else _loop
    info: dict = {}
    thread = threading.Thread(target=_guarded, args=(work, spec, done, info), daemon=True)
    thread.start()
    while thread.is_alive() and time.perf_counter() - t0 < spec["seconds"]:
        samples.append((round(time.perf_counter() - t0, 2), C.current_rss_mib()))
        thread.join(0.25)
    info.update(samples=samples, positions_done=done["positions"], finished=not thread.is_alive(),
                window_s=round(time.perf_counter() - t0, 1))
    return info


def _guarded(work, spec, done, info):
    try:
        work(spec, done, info)
    except BaseException as exc:  # reported in the row, not lost in a thread
        info["error"] = f"{type(exc).__name__}: {exc}"


def _engine(spec: dict, done: dict, info: dict) -> None:
    import kryptondb

    class Bar:
        def __init__(self, total, label):
            pass

        def update(self, n=1):
            done["positions"] += n

        def close(self):
            pass

    con = kryptondb.connect(progress=Bar)
    con.execute(f"LOAD IMAGE '{kryptondb.bundled_image()}' AS img")
    q = (f"EXPLAIN OCCLUSION OF IMAGE img USING MODEL {spec['model']} PATCH {spec['patch']} "
         f"STRIDE {spec['stride']} MEMORY {spec['budget']} MB")
    plan = con.execute("EXPLAIN PLAN FOR " + q).plan
    scan = next(n for n in plan.rewritten.walk() if n.op == "OcclusionScan")
    info["plan"] = dict(scan.args)
    from kryptondb.runtime.backends import get_backend

    workers, _ = get_backend("onnxruntime").concurrent()
    info["workers"] = min(workers, scan.arg("batch")) if scan.arg("mode") == "incremental" else 1
    con.execute(q)


def _loop(spec: dict, done: dict, info: dict) -> None:
    """bench/obe.py's baseline: NumPy occlusion, onnxruntime's session on the .onnx file."""
    from obe import loop_setup

    sess, name, _, _, corners, occlude = loop_setup(spec)
    batch = spec["loop_batch"]
    for k in range(0, len(corners), batch):
        chunk = corners[k:k + batch]
        sess.run(None, {name: occlude(chunk)})
        done["positions"] += len(chunk)


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS), help="MEMORY, MB")
    p.add_argument("--seconds", type=float, default=60.0, help="sampling window per row")
    p.add_argument("--patch", type=int, default=4)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--loop-batch", type=int, default=1, help="positions per loop call")
    p.add_argument("--json", default=str(C.RESULTS_DIR / "memory.json"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _args(argv)
    results, rows = [], []
    common = dict(patch=args.patch, stride=args.stride, seconds=args.seconds,
                  loop_batch=args.loop_batch)
    for model in args.models:
        C.progress(f"{model}: onnxruntime loop, batch {args.loop_batch}")
        loop = _measure(dict(common, model=model, engine="loop", budget=None), args)
        results.append(loop)
        for budget in args.budgets:
            C.progress(f"{model}: kryptondb, MEMORY {budget} MB")
            r = _measure(dict(common, model=model, engine="kryptondb", budget=budget), args)
            results.append(r)
            rows.append(_row(r, loop))
    print(f"\nPeak RSS over the first {args.seconds:g} s of PATCH {args.patch} STRIDE "
          f"{args.stride} scans (bundled chelsea.png); loop: onnxruntime, batch "
          f"{args.loop_batch}; limit = budget + loop peak + {SLACK_MB} MB\n")
    print(C.format_table(["model", "MEMORY MB", "plan", "batch", "block", "workers",
                          "estimate MB", "engine peak MiB", "loop peak MiB", "limit MiB",
                          "positions", "check"], rows,
                         [False, True, False, True, True, True, True, True, True, True, True,
                          False]))
    failed = sum(r[-1] != "PASS" for r in rows)
    print(f"\n{len(rows) - failed} of {len(rows)} rows PASS")
    C.write_json(args.json, {"benchmark": "memory", "args": vars(args),
                             "machine": C.machine_info(), "results": results})
    print(f"JSON: {args.json}")
    return 1 if failed else 0


def _measure(spec: dict, args) -> dict:
    r = C.run_child(__file__, spec, timeout=args.seconds + 600)
    r.update(model=spec["model"], engine=spec["engine"], budget=spec["budget"])
    return r


def _row(r: dict, loop: dict) -> list:
    plan = r.get("plan", {})
    peak, base = r.get("vm_hwm_mib"), loop.get("vm_hwm_mib")
    if peak is None or base is None or r.get("error") or loop.get("error"):
        check = r.get("error") or loop.get("error") or "no reading"
        r["check"] = check
        return [r["model"], r["budget"], plan.get("mode", "-"), plan.get("batch", "-"), "-",
                "-", "-", peak, base, "-", "-", check]
    limit = r["budget"] + base + SLACK_MB
    check = "PASS" if peak <= limit else "FAIL"
    r.update(limit_mib=limit, check=check)
    return [r["model"], r["budget"], plan.get("mode"), plan.get("batch"),
            plan.get("block", "all"), r.get("workers"), plan.get("memory_estimate_mb"),
            f"{peak:.0f}", f"{base:.0f}", f"{limit:.0f}", r.get("positions_done"), check]


if __name__ == "__main__":
    if C.CHILD_FLAG in sys.argv:
        C.child_main(sys.argv, _child)
        os._exit(0)  # the scan's worker threads may still run; the reading is written
    sys.exit(main())
