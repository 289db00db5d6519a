"""Helpers shared by the scripts in bench/: timing, peak memory of child processes, machine facts,
table printing and JSON output. Standard library plus NumPy only; kryptondb is never imported here,
so a benchmark's parent process stays small and its children's memory readings stay clean."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CHILD_FLAG = "--_child"  # hidden flag: the script re-invoked to do one measurement

_T0 = time.perf_counter()


def ssim_parser(doc: str, json_name: str) -> argparse.ArgumentParser:
    """The arguments the SSIM benchmarks (tuning.py, drilldown_quality.py) share: the models with
    real ImageNet weights, patch, stride, the SSIM target and where the JSON goes."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mobilenet_v2", "efficientnet_lite0"])
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--target", type=float, default=0.9, help="SSIM target q")
    p.add_argument("--json", default=str(RESULTS_DIR / json_name))
    return p


# -- timing -------------------------------------------------------------------------------------

def time_reps(fn: Callable[[], Any], reps: int, warmup: int = 1) -> tuple[list[float], Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``reps`` times timed with perf_counter.

    Returns the list of seconds per repetition and the last result (for output checks)."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return times, result


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


# -- memory -------------------------------------------------------------------------------------

def peak_rss_mib() -> float:
    """This process's peak resident set size, ru_maxrss (KiB on Linux, bytes on macOS), in MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def current_rss_mib() -> float | None:
    """This process's resident set size now (Linux /proc/self/statm), in MiB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def vm_hwm_mib() -> float | None:
    """Linux VmHWM (the peak RSS of this address space only), a cross-check of ru_maxrss: it is
    reset by exec, so it can never include memory of the parent that spawned us."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# -- other load on the machine ------------------------------------------------------------------

def cpu_busy_seconds() -> float | None:
    """CPU-seconds all CPUs spent busy since boot (Linux /proc/stat), or None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def background_cores(fn: Callable[[], Any], min_s: float = 0.5) -> tuple[Any, float | None]:
    """Run ``fn`` and say how many cores other processes kept busy meanwhile (system busy time
    minus this process's CPU time, per wall second). /proc/stat counts in 10 ms ticks, so calls
    shorter than ``min_s`` get None rather than a noise-dominated reading."""
    b0, s0, t0 = cpu_busy_seconds(), self_cpu_seconds(), time.perf_counter()
    result = fn()
    b1, s1, t1 = cpu_busy_seconds(), self_cpu_seconds(), time.perf_counter()
    if b0 is None or b1 is None or t1 - t0 < min_s:
        return result, None
    return result, max(0.0, ((b1 - b0) - (s1 - s0)) / (t1 - t0))


def thread_cpu() -> dict[str, tuple[float, int]]:
    """Per thread of this process: (CPU seconds so far, CPU it last ran on), from /proc."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    try:
        for tid in os.listdir("/proc/self/task"):
            f = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            out[tid] = ((int(f[11]) + int(f[12])) / tick, int(f[36]))
    except (OSError, IndexError, ValueError):
        pass
    return out


def thread_cpu_delta(before: dict, after: dict) -> list[list]:
    """[CPU seconds spent between the snapshots, last CPU] per thread that did any work."""
    rows = [[round(c - before.get(t, (0.0, 0))[0], 3), cpu] for t, (c, cpu) in after.items()]
    return sorted((r for r in rows if r[0] > 0), reverse=True)


def wait_for_quiet(max_wait: float, threshold: float = 0.3, sample: float = 0.5) -> float | None:
    """While this process idles, wait (up to ``max_wait`` s) until other processes use fewer than
    ``threshold`` cores; returns the last reading (cores busy), None where it cannot be read.
    A shared 2-core machine running someone's test suite would otherwise skew a row."""
    deadline, busy, told = time.perf_counter() + max_wait, None, False
    while True:
        b0 = cpu_busy_seconds()
        time.sleep(sample)
        b1 = cpu_busy_seconds()
        if b0 is None or b1 is None:
            return None
        busy = (b1 - b0) / sample
        if busy < threshold or time.perf_counter() >= deadline:
            return busy
        if not told:
            progress(f"  other processes keep {busy:.1f} cores busy; waiting up to "
                     f"{max_wait:.0f} s for quiet")
            told = True


# -- child processes ----------------------------------------------------------------------------

def run_child(script: str | Path, spec: dict, timeout: float) -> dict:
    """Run ``python script --_child SPEC`` in a fresh interpreter and return the JSON it writes.

    One measurement per child keeps each peak-RSS reading to that measurement alone. The child
    must call ``child_main`` (below). On failure the result is ``{"error": ...}``, never raised.
    The result also gets ``background_cores_during_child``: cores other processes kept busy
    while the child ran (system busy time minus the child's own CPU time, per wall second).
    """
    with tempfile.TemporaryDirectory(prefix="kbench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(dict(spec, result_path=str(out_path))))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        cmd = [sys.executable, str(script), CHILD_FLAG, str(spec_path)]
        before = _children_cpu(), cpu_busy_seconds(), time.perf_counter()
        try:
            proc = subprocess.run(cmd, env=env, cwd=REPO_ROOT, timeout=timeout,
                                  capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        after = _children_cpu(), cpu_busy_seconds(), time.perf_counter()
        if proc.returncode != 0 or not out_path.exists():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-8:]
            return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
        result = json.loads(out_path.read_text())
        if before[1] is not None and after[1] is not None:
            others = (after[1] - before[1]) - (after[0] - before[0])  # busy minus the child's
            result["background_cores_during_child"] = max(0.0, others / (after[2] - before[2]))
        return result


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def child_main(argv: Sequence[str], measure: Callable[[dict], dict]) -> None:
    """The child side of ``run_child``: read the spec, measure, add peak memory, write JSON."""
    spec = json.loads(Path(argv[argv.index(CHILD_FLAG) + 1]).read_text())
    result = measure(spec)
    result["peak_rss_mib"] = peak_rss_mib()
    result["vm_hwm_mib"] = vm_hwm_mib()
    Path(spec["result_path"]).write_text(json.dumps(result, default=_json_default))


# -- facts about the run ------------------------------------------------------------------------

def machine_info() -> dict:
    """Platform, CPUs, library versions, thread settings and load: what a reader needs to judge
    whether two result files are comparable."""
    import numpy as np

    info = {
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "numpy_blas": _numpy_blas(),
        "thread_env": {k: os.environ[k] for k in sorted(os.environ)
                       if k.endswith("_NUM_THREADS") or k in ("OMP_WAIT_POLICY",)},
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "git": _git_state(),
    }
    try:
        import onnx
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnx"] = onnx.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _numpy_blas() -> str | None:
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # show_config's layout is not a stable API
        return None


def _git_state() -> dict:
    def git(*args):
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                 timeout=10)
            return out.stdout.strip() if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    status = git("status", "--porcelain", "--", "kryptondb")
    return {"commit": git("rev-parse", "HEAD"),
            "kryptondb_dirty": None if status is None else bool(status)}


# -- output -------------------------------------------------------------------------------------

def progress(msg: str) -> None:
    """One line on stderr with the seconds since the script started."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def elapsed() -> float:
    return time.perf_counter() - _T0


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]],
                 right: Sequence[bool] | None = None) -> str:
    """An aligned plain-text table; ``right[i]`` right-aligns column i (numbers)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = right or [False] * len(headers)

    def line(r):
        return "  ".join(c.rjust(w) if a else c.ljust(w)
                         for c, w, a in zip(r, widths, right)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=_json_default) + "\n")
    return path


def _json_default(o):
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    from kryptondb.plan.explain import plain  # plan arguments (a Grid, a Fill, a bound model)

    return str(plain(o))  # as EXPLAIN prints them; paths as they are
