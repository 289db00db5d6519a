"""Measuring a calibration (``kryptondb calibrate``): one representative layer of every kind,
on one onnxruntime thread (Winograd's on every core at once, as plans run it), at output sizes
from 1x1 to 112x112; the call overhead; the gather's and the frontier copies' bandwidth. About
half a minute on 2 cores.

Every layer runs on a context with padding 0, as the incremental plan's segments do, in calls of
``BATCH`` items (fewer on large maps, where one item is plenty of work and the rate no longer
depends on the count; by Winograd, enough contexts for ``TILES`` tiles, the products' size in
plans, whatever the FLOPs); a call's time, less the call overhead, over its FLOPs is the rate.
"""

from __future__ import annotations

import math
import os
import platform
import threading
import time

import numpy as np

from kryptondb.graph.builder import Builder
from kryptondb.graph.ir import Graph
from kryptondb.graph.shapes import node_flops
from kryptondb.ivm.calibration import (KINDS, OPTIONAL, WINOGRAD_WIDTHS, Calibration, dumps,
                                       machine_path)
from kryptondb.ivm.gather import NewValues, PaddedView, gather
from kryptondb.runtime import winograd
from kryptondb.runtime.backends import OnnxRuntimeBackend, usable_cores

SIDES = (1, 2, 3, 4, 6, 8, 11, 14, 20, 28, 40, 56, 112)
BATCH = 32  # items per call: an incremental plan's chunk (batch 64 on 2 workers)
CALL_FLOPS = 4e8  # at most this many FLOPs per timed call (large maps: fewer items)
CHANNELS = 128


def _layer(kind: str, side: int) -> Graph:
    """One ``kind`` layer computing side x side output pixels from a padless context."""
    k = 3 if kind in ("conv", "depthwise", "pool", *WINOGRAD_WIDTHS) else 1
    c = {"gemm": 512, **WINOGRAD_WIDTHS}.get(kind, CHANNELS)
    b = Builder(f"calibrate:{kind}:{side}", (c, side + k - 1, side + k - 1))
    if kind == "conv" or kind in WINOGRAD_WIDTHS:
        out = b.conv("input", "op", c, 3, bias=True)
    elif kind == "conv1x1":
        out = b.conv("input", "op", c, 1, bias=True)
    elif kind == "depthwise":
        out = b.conv("input", "op", c, 3, groups=c, bias=True)
    elif kind == "pool":
        out = b.pool("input", "max", 3, 1, name="op")
    elif kind == "elementwise":
        out = b.act("input", "relu", name="op")
    else:  # gemm: a classifier head on a pooled vector
        out = b.linear(b.flatten("input"), "op", 1000)
    return b.build(out)


def _timed(backend, graph: Graph, items: int, reps: int = 7) -> float:
    """Least seconds of one call on ``items`` random items (after a warm-up call): the least,
    not the median, since other processes on the machine only ever add time. A Winograd layer
    (``winograd``, ``winograd512``) runs as plans run it: on channels-last contexts, by
    runtime/winograd.py, in its F(2x2, 3x3) form at every size (plans price the F(4x4, 3x3)
    form, which some sizes run, at F(2x2, 3x3)'s rate: an upper bound on its time), and on
    every core at once (``_side_by_side``)."""
    x = np.random.default_rng(0).standard_normal((items, *graph.input_shape), np.float32)
    if graph.name.split(":")[1] in WINOGRAD_WIDTHS:
        return _side_by_side([_winograd_call(graph, x) for _ in range(usable_cores())], reps)
    run = lambda: backend.run(graph, {graph.inputs[0]: x})  # noqa: E731
    run()
    return float(min(_clock(run) for _ in range(reps)))


def _winograd_call(graph: Graph, x: np.ndarray):
    call, x = winograd.Winograd(graph["op"], graph), x.transpose(0, 2, 3, 1).copy()
    return lambda: call(x, winograd.F2)


def _side_by_side(runs, reps: int) -> float:
    """Least over ``reps`` of the slowest of ``runs`` started together, one thread each: a
    plan runs one chunk per core, and Winograd's NumPy transforms, fast alone, slow down when
    the other core runs them too (measured on a 2-core machine, 256 channels: 1.07-1.17x
    faster than the direct convolution alone, 0.59-0.92x two at once; the direct convolution
    takes the same time either way)."""
    for run in runs:
        run()
    best = math.inf
    for _ in range(reps):
        start, spans = threading.Barrier(len(runs)), [0.0] * len(runs)

        def one(k):
            start.wait()
            spans[k] = _clock(runs[k])

        threads = [threading.Thread(target=one, args=(k,)) for k in range(len(runs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = min(best, max(spans))
    return float(best)


def call_overhead(backend) -> float:
    """Seconds of a backend call that does (almost) nothing: one 1x1 ReLU."""
    b = Builder("calibrate:call", (1, 1, 1))
    return _timed(backend, b.build(b.act("input", "relu", name="op")), 1, reps=50)


def rates(backend, kind: str, call_s: float, sides=SIDES) -> tuple:
    """((pixels, FLOPs per second), ...) of ``kind`` at each output side."""
    out = []
    wino = kind in WINOGRAD_WIDTHS
    # Winograd computes whole 2x2 tiles: even sides (the cost model counts an odd side's extra)
    sides = (1,) if kind == "gemm" else sorted({s + s % 2 for s in sides}) if wino else sides
    for side in sides:
        g = _layer(kind, side)
        op = g["op"]
        flops = node_flops(op, [g[i].shape for i in op.inputs], g.weights)
        # by Winograd as plans call it: a batch of contexts, at least TILES tiles per product
        items = min(BATCH, -(-winograd.TILES // math.prod(winograd.F2.tiles(side + 2, side + 2)))
                    ) if wino else int(max(1, min(BATCH, CALL_FLOPS // max(1, flops))))
        t = _timed(backend, g, items)
        out.append((side * side, items * flops / max(t - call_s, 0.1 * t)))
    return tuple(out)


def gather_costs() -> tuple[float, float]:
    """(bytes per second, seconds per item) of the gather: contexts of two sizes with new
    values written in, fitted to time = items * item_s + bytes / bandwidth."""
    rng = np.random.default_rng(0)
    rows = []
    for c, side, ctx, items in ((64, 56, 5, 64), (64, 56, 21, 64), (256, 28, 17, 32),
                                (16, 112, 3, 128)):
        pv = PaddedView(rng.standard_normal((c, side, side), np.float32), (0, 0, 0, 0), 0.0)
        ys = rng.integers(0, side - ctx, items)
        xs = rng.integers(0, side - ctx, items)
        new = NewValues(np.ones((items, c, ctx - 2, ctx - 2), np.float32), ys + 1, xs + 1)
        t = min(_clock(lambda: gather(pv, ys, xs, ctx, ctx, new)) for _ in range(5))
        rows.append((items, items * c * ctx * ctx * 4, t))
    a = np.array([[n, b] for n, b, _ in rows], float)
    sol, *_ = np.linalg.lstsq(a, np.array([t for *_, t in rows]), rcond=None)
    item_s, per_byte = max(sol[0], 1e-7), max(sol[1], 1e-12)
    return 1.0 / per_byte, float(item_s)


def copy_rate() -> float:
    """Bytes per second of writing a view into a batch of copies (the frontier maps)."""
    view = np.ones((256, 28, 28), np.float32)
    t = min(_clock(lambda: np.repeat(view[None], BATCH, axis=0)) for _ in range(5))
    return BATCH * view.nbytes / t


def _clock(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(say=lambda text: None, sides=None) -> Calibration:
    """This machine's calibration at output ``sides`` (default SIDES; ``say`` gets a line per
    step)."""
    backend = OnnxRuntimeBackend(threads=1)
    call_s = call_overhead(backend)
    say(f"call overhead {call_s * 1e6:.0f} us")
    table = {}
    for kind in (*KINDS, *OPTIONAL):
        table[kind] = rates(backend, kind, call_s, sides or SIDES)
        say(f"{kind}: " + ", ".join(f"{int(p ** 0.5)}x{int(p ** 0.5)} {r / 1e9:.1f}"
                                    for p, r in table[kind]) + " GFLOP/s")
    gather_bw, item_s = gather_costs()
    copy_bw = copy_rate()
    say(f"gather {gather_bw / 1e9:.2f} GB/s + {item_s * 1e6:.1f} us per item; "
        f"frontier copies {copy_bw / 1e9:.2f} GB/s")
    return Calibration(table, call_s, gather_bw, item_s, copy_bw, BATCH, usable_cores(),
                       source="measured")


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or
            platform.machine(), "cores": usable_cores(),
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def calibrate(path: str | os.PathLike | None = None, say=lambda text: None,
              sides=None) -> str:
    """Measure this machine and write its calibration to ``path`` (default ``machine_path()``,
    which the planner then reads); returns the path written."""
    cal = measure(say, sides)
    path = machine_path() if path is None else path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(dumps(cal.to_json(machine())))
    return str(path)
