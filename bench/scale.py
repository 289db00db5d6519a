"""Scale-out on Dask: images/s of a set-oriented occlusion query in one process vs a LocalCluster
of 1 and 2 worker processes on this machine, and the per-task overhead.

The query: ``EXPLAIN OCCLUSION OF IMAGES`` over 8 distinct images (crops and flips of the
bundled photo, 224 x 224 after preprocessing) with resnet18, PATCH 16 STRIDE 8 (27 x 27
positions per image), the planner's default (incremental) plan. Each configuration runs in its
own child process: a connection (``cluster=None``, ``local:1``, ``local:2``), a warm-up query
on a ninth image (model load, onnxruntime sessions, the model shipped to the workers), then
``--reps`` timed runs of the 8-image query. Every configuration's heatmaps are checked against
the single-process ones.

Per-task overhead, two ways: a trivial task (``client.submit`` of a no-op, one at a time: the
round trip; 200 at once: the throughput cost), and from the query itself: the client's wall time
times the workers, less the tasks' busy time on the workers, per task.

Target (issue 16): 1 worker within 15% of the single-process time. Prints a table; writes
bench/results/scale.json. About 5-8 minutes on 2 cores.

    python bench/scale.py [--reps 1] [--images 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

CONFIGS = (None, "local:1", "local:2")
QUERY = "EXPLAIN OCCLUSION OF IMAGES {what} USING MODEL resnet18 PATCH 16 STRIDE {stride}"


def make_images(where: Path, count: int) -> list[Path]:
    """``count`` distinct images: crops (shifted, of different sizes) and mirror images."""
    import kryptondb
    from PIL import Image

    cat = Image.open(kryptondb.bundled_image()).convert("RGB")
    w, h = cat.size
    paths = []
    for i in range(count):
        one = cat.crop((i * 7, i * 4, w - 40 + i * 3, h - 30 + i * 2))
        path = where / f"img{i}.png"
        (one.transpose(Image.FLIP_LEFT_RIGHT) if i % 2 else one).save(path)
        paths.append(path)
    return paths


def _trivial(client, n: int = 200) -> dict:
    """The cost of a task that does nothing: one at a time (latency) and many at once."""
    one = []
    for i in range(30):
        t = time.perf_counter()
        client.submit(abs, -i, pure=False).result()
        one.append(time.perf_counter() - t)
    t = time.perf_counter()
    client.gather([client.submit(abs, -i, pure=False) for i in range(n)])
    return {"round_trip_ms": 1e3 * statistics.median(one),
            "throughput_ms_per_task": 1e3 * (time.perf_counter() - t) / n}


def _child(spec: dict) -> dict:
    import numpy as np

    import kryptondb

    con = kryptondb.connect(cluster=spec["cluster"])
    con.execute(QUERY.format(what=f"('{spec['warm']}')", stride=spec["stride"]))  # load, ship
    query = QUERY.format(what=f"'{spec['dir']}/img*.png'", stride=spec["stride"])
    times, dist = [], None
    for _ in range(spec["reps"]):
        t = time.perf_counter()
        r = con.execute(query)
        times.append(time.perf_counter() - t)
        dist = next((s["distribution"] for s in r.profile.stats.values()
                     if "distribution" in s), None)
    np.save(spec["out"], np.asarray(r.table.column("probability")))
    out = {"times_s": times, "distribution": dist, "rows": r.table.num_rows}
    if con.cluster is not None:
        out["trivial"] = _trivial(con.cluster.client)
        out["workers"] = len(con.cluster.workers())
    con.close()
    return out


def _row(name: str, res: dict, images: int, base: float | None) -> list:
    if "error" in res:
        return [name, res["error"][:60], "", "", "", "", ""]
    wall = statistics.median(res["times_s"])
    d, triv = res.get("distribution"), res.get("trivial", {})
    overhead = None
    if d:  # the client's wait times the workers, less what the workers spent in tasks
        overhead = 1e3 * max(0.0, d["wall_s"] * res["workers"] - d["busy_s"]) / d["tasks"]
    return [name, f"{wall:.1f}", f"{images / wall:.3f}",
            f"{wall / base:.2f}x" if base else "1.00x",
            f"{triv['round_trip_ms']:.1f}" if triv else "",
            f"{triv['throughput_ms_per_task']:.2f}" if triv else "",
            f"{overhead:.0f}" if overhead is not None else ""]


def main(argv=None) -> int:
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--stride", type=int, default=8, help="16: a quick look")
    p.add_argument("--json", default=str(C.RESULTS_DIR / "scale.json"))
    args = p.parse_args(argv)
    results, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="kscale-") as tmp:
        paths = make_images(Path(tmp), args.images + 1)
        warm = Path(tmp) / "warm" / "img.png"  # apart: the timed glob must not match it
        warm.parent.mkdir()
        paths.pop().rename(warm)
        for cluster in CONFIGS:
            name = cluster or "1 process"
            C.progress(f"{name}: {args.images} images, {args.reps} rep(s)")
            spec = {"cluster": cluster, "dir": tmp, "warm": str(warm), "reps": args.reps,
                    "stride": args.stride, "out": f"{tmp}/{name.replace(':', '_').replace(' ', '_')}.npy"}
            res = C.run_child(__file__, spec, timeout=3600)
            if "error" not in res:
                got = np.load(spec["out"])
                ref = np.load(f"{tmp}/1_process.npy")
                res["max_abs_diff_vs_1_process"] = float(np.abs(got - ref).max())
            results[name] = res
            base = statistics.median(results["1 process"]["times_s"]) \
                if cluster and "error" not in results["1 process"] else None
            rows.append(_row(name, res, args.images, base))
    side = (224 - 16) // args.stride + 1
    print(f"{args.images} images, resnet18 PATCH 16 STRIDE {args.stride} ({side}x{side} "
          f"positions each), median of {args.reps}")
    print(C.format_table(["run", "wall s", "images/s", "vs 1 process", "trivial task ms",
                          "ms/task (200 at once)", "overhead ms/task (query)"], rows,
                         [False] + [True] * 6))
    for name, res in results.items():
        if "max_abs_diff_vs_1_process" in res:
            print(f"{name}: heatmaps differ from one process's by at most "
                  f"{res['max_abs_diff_vs_1_process']:.1e}; background cores busy "
                  f"{res.get('background_cores_during_child', 0):.2f}")
    path = C.write_json(args.json, {"machine": C.machine_info(), "images": args.images,
                                    "stride": args.stride, "reps": args.reps, "results": results})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if C.CHILD_FLAG in sys.argv:
        C.child_main(sys.argv, _child)
    else:
        sys.exit(main())
