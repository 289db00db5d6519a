"""maintain_views: the IVM rewrite. The naive OcclusionScan (a full inference per position)
becomes an incremental scan over materialized views: the base image's output of every layer is
computed once (MaterializeViews), and each position recomputes, layer by layer, only the region
its patch reaches, up to the first global layer; the rest of the network runs in full.

The plan records the static cost model's FLOPs per position and the theoretical speedup.
Unless the query forces a plan (INCREMENTAL / NAIVE; APPROXIMATE implies INCREMENTAL), the
rewrite is made only when the calibrated cost model (kryptondb/ivm/frontier.py, measured by
``kryptondb calibrate``) predicts it faster, overheads included: per position, the gathers,
per-layer calls and small-context throughput of the layers it maintains (up to the frontier it
picks), the frontier copies and the full call after it, against one full inference; over the
whole scan, plus the plan's setup: materializing the views (one full inference per input) and,
the first time a model runs incrementally in this process on a backend that compiles
(onnxruntime), building its sessions (the per-layer and suffix sessions hold the model's
weights twice over; with few positions on a model with large weights the setup costs more than
the positions save). Sessions live as long as the model's Graph, which is cached by content
digest across connections, so later queries find them built. On a GPU (no calibration yet) a
theoretical speedup floor decides instead.
"""

from __future__ import annotations

from kryptondb.format import fmt_time
from kryptondb.graph.ir import POINTWISE, Op as GraphOp
from kryptondb.ivm import calibration
from kryptondb.ivm.cost import FLOPS_PER_S, prefix, theoretical
from kryptondb.ivm.frontier import centre_cut
from kryptondb.ivm.incremental import segments_built
from kryptondb.runtime.backends import runs_winograd
from kryptondb.plan.ops import Op
from kryptondb.plan.nodes import PlanNode, node, transform

MIN_SPEEDUP = 1.25
# On a GPU (ON GPU, the CuPy backend) per-layer launches and gathers cost more of the gain:
# Krypton's GPU plans reached 0.60 (VGG16) and 0.73 (ResNet18) of their theoretical speedup, and
# its Inception3 plan ran at 0.7x of naive. A plan predicted below 1 / 0.6 of naive's FLOPs
# would be slower than naive there, so the planner keeps NAIVE. Uncalibrated: no GPU was
# available to measure it (bench/gpu.py measures it; adjust from its achieved/theoretical).
MIN_SPEEDUP_BY_BACKEND = {"cupy": 1 / 0.6}
# Building an onnxruntime session (export, load, pre-packing), in FLOP-equivalents: measured on
# 2 cores at 17-38 GFLOP/s of inference, 150-400 per weight byte (MobileNetV2 14 MB 0.10 s,
# ResNet18 47 MB 0.26 s, AlexNet 244 MB 3.1 s, ZFNet 349 MB 8 s) plus a few ms per session.
SESSION_FLOPS_PER_BYTE = 300
SESSION_FLOPS = 200_000_000
COMPILING_BACKENDS = ("onnxruntime",)


def maintain_views(plan: PlanNode, ctx) -> PlanNode:
    def visit(n: PlanNode) -> PlanNode:
        if n.op != Op.OCCLUSION_SCAN or n.arg("mode") != "naive":
            return n
        pre, cls = n.children
        model = n.arg("model")
        graph = ctx.model(model).graph
        cost = theoretical(graph, n.arg("grid").window)
        speedup = round(cost.speedup, 2)
        predicted = _predicted(graph, n, cost)
        if ctx.options.incremental is False:
            return n.with_args(why="NAIVE forced by the query", **predicted)
        forced = _forced(ctx.options)
        why = None if forced else why_naive(graph, n.arg("grid").window, cost,
                                            n.arg("backend") or "onnxruntime", _positions(n))
        if why:
            return n.with_args(theoretical_speedup=speedup, why=why, **predicted)
        views = node(Op.MATERIALIZE_VIEWS, pre, model=model, backend=n.arg("backend"))
        return n.with_args(mode="incremental", flops_full=cost.full_flops,
                           flops_incremental=cost.incremental_flops,
                           theoretical_speedup=speedup, **predicted,
                           why=_joined(n.arg("why"), forced or _pays(predicted))).with_children(
                               pre, cls, views)

    return transform(plan, visit)


def _positions(n: PlanNode) -> tuple[int, int]:
    """(positions of the whole scan, inputs)."""
    inputs = n.arg("inputs") or 1
    return n.arg("grid").count * inputs, inputs


def predicted_seconds(graph, window, backend: str, positions: tuple[int, int]) -> tuple:
    """(naive, incremental with its setup) wall seconds the calibrated cost model predicts for
    ``positions`` (all of them, inputs), and the sessions the incremental plan would build:
    per position, ``ivm/frontier.py``'s costs on the calibration's cores; the setup, one full
    inference per input (its views) and the sessions."""
    cal = calibration.load()
    cut, cores = centre_cut(graph, window, cal=cal, winograd=runs_winograd(backend)), cal.cores
    count, inputs = positions
    setup, sessions = setup_flops(graph, backend, 0)
    views = inputs * (cut.naive + cal.call_s)
    return (count * cut.naive / cores,
            (count * cut.predicted + views) / cores + setup / FLOPS_PER_S, sessions)


def why_naive(graph, window, cost, backend: str, positions: tuple[int, int]) -> str | None:
    """Why the naive plan is kept, or None when the incremental plan is predicted faster. On
    a GPU, below its theoretical speedup floor; elsewhere, by the calibrated cost model."""
    least = min_speedup(backend)
    if least > MIN_SPEEDUP and cost.speedup < least:
        return f"theoretical speedup {cost.speedup:.2f} below {least:.3g}"
    naive, incr, sessions = predicted_seconds(graph, window, backend, positions)
    if incr < naive:
        return None
    built = f"; first incremental run of this model: {sessions} sessions to build" \
        if sessions else ""
    return (f"incremental predicted at {fmt_time(incr)} with its setup (views{built}), naive "
            f"at {fmt_time(naive)} over {positions[0]} positions "
            f"({calibration.load().label})")


def min_speedup(backend: str | None) -> float:
    """The theoretical speedup below which the cost model keeps NAIVE on ``backend`` (a name;
    'gpu' is 'cupy')."""
    name = str(backend or "onnxruntime").lower()
    return MIN_SPEEDUP_BY_BACKEND.get("cupy" if name == "gpu" else name, MIN_SPEEDUP)


def _joined(earlier: str | None, why: str) -> str:
    """A reason an earlier rule gave (meet_accuracy_target's choice of tau), then this one's."""
    return f"{earlier}; {why}" if earlier else why


def _forced(options) -> str | None:
    """Why the query itself decided the plan, or None (the cost model decides)."""
    if options.incremental:
        return "INCREMENTAL forced by the query"
    if options.approximate is not None:
        return "APPROXIMATE implies INCREMENTAL"
    return None


def _predicted(graph, n: PlanNode, cost) -> dict:
    """The whole scan's predicted FLOPs each way: naive, one full inference per position;
    incremental, the cost model's per position plus the setup (views, sessions); and the
    calibrated cost model's predicted seconds."""
    positions, inputs = _positions(n)
    backend = n.arg("backend") or "onnxruntime"
    setup, _ = setup_flops(graph, backend, cost.full_flops)
    setup += (inputs - 1) * cost.full_flops
    naive_s, incremental_s, _ = predicted_seconds(graph, n.arg("grid").window, backend,
                                                  (positions, inputs))
    return {"cost_naive": positions * cost.full_flops,
            "cost_incremental": positions * cost.incremental_flops + setup,
            "seconds_naive": round(naive_s, 6), "seconds_incremental": round(incremental_s, 6)}


def _pays(predicted: dict) -> str:
    """Why the cost model picked the incremental plan."""
    return (f"incremental predicted at {fmt_time(predicted['seconds_incremental'])} with its "
            f"setup, naive at {fmt_time(predicted['seconds_naive'])} "
            f"({calibration.load().label})")


def setup_flops(graph, backend: str, full_flops: int) -> tuple[int, int]:
    """(FLOP-equivalents, sessions to build) of an incremental plan's setup on ``graph``."""
    if backend not in COMPILING_BACKENDS or segments_built(graph):
        return full_flops, 0
    layers = sum(1 for k in prefix(graph) if graph[k].op not in POINTWISE and
                 graph[k].op is not GraphOp.INPUT)
    weights = sum(int(w.nbytes) for w in graph.weights.values())
    sessions = layers + 2  # per-layer segments, the suffix, the views' session
    return full_flops + 2 * weights * SESSION_FLOPS_PER_BYTE + sessions * SESSION_FLOPS, sessions


def effective_speedup(graph, cost, backend: str, positions: int,
                      inputs: int = 1) -> tuple[float, int]:
    """(speedup of the incremental plan over ``positions`` once its setup is counted, sessions
    it builds): the positions' full FLOPs over their incremental FLOPs plus the setup (the
    views of every input, a full inference each, and the sessions to build)."""
    setup, sessions = setup_flops(graph, backend, cost.full_flops)
    setup += (inputs - 1) * cost.full_flops
    return positions * cost.full_flops / (positions * cost.incremental_flops + setup), sessions
