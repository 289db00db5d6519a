"""batch_queries: the many re-inferences of one query run in batches whose size the planner
picks from the memory budget (MEMORY <n> MB), unless the query fixed it (BATCH <n>).

MEMORY bounds what an occlusion scan holds beyond the model's weights and the backend's
sessions: the materialized views, the per-position plan state, and every buffer a batch in
flight allocates (occluded inputs or gathered contexts, new regions, full maps for the global
part, the backend's activations). ``footprint`` says how many bytes that is for a plan, from
the same region sizes and layer steps the executor builds; the rule picks the largest batch
(and block of positions per incremental plan) whose footprint fits. An incremental plan that
does not fit even one position at a time becomes the naive one when the cost model chose it;
when nothing fits, the query fails with the minimum it needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from kryptondb.errors import PlanError
from kryptondb.graph.ir import WINDOWED, Op as GraphOp
from kryptondb.ivm.cost import prefix, region_sizes
from kryptondb.ivm.gather import ChannelsLastViews
from kryptondb.ivm.incremental import IncrementalPlan, read_views
from kryptondb.ivm.tail import TAIL_PER_BATCH
from kryptondb.plan.ops import Op
from kryptondb.plan.nodes import PlanNode, transform
from kryptondb.plan.option_ranges import DEFAULT_MEMORY_MB
from kryptondb.plan.values import Classes
from kryptondb.runtime.backends import runs_winograd, usable_cores

# The naive plan's batch: onnxruntime's throughput (2 threads, median ms per position, by batch)
# peaks at 16-32 and falls beyond as a batch's activations leave the caches: the 3x32x32 CNN of
# bench/obe.py --small 0.089 at 32, 0.092 at 64, 0.099 at 225 (1.11x: its default plan was 1.12x
# of naive at batch 64); squeezenet 3.96 at 32, 3.99 at 64; ResNet18 15.9 at 32, 16.1 at 64;
# MobileNetV2 flat (3.95-4.04) from 8 to 64. Larger models are held below 32 by MEMORY anyway.
MAX_BATCH = 32
MAX_INCREMENTAL_BATCH = 64  # larger batches of small contexts gained nothing, cost memory
BLOCK = 4096  # positions per incremental plan when the budget allows (fewer: more plans)
MIN_BLOCK = 256  # a smaller block only when nothing else fits: each block builds a plan
PLAN_BYTES = 96  # per position and layer of an incremental plan: regions, starts, temporaries

WINOGRAD = "Winograd weights and tiles"  # a footprint's fixed part a plan can do without


@dataclass(frozen=True)
class Allocator:
    """How a backend's runs allocate beyond the live tensors: ``slack`` multiplies them,
    ``workspace`` adds each kernel's scratch (padded copies, im2col columns)."""

    slack: float
    workspace: bool


NUMPY = Allocator(1.0, True)
# onnxruntime: no im2col (NCHWc convolutions), but layout copies and the allocator's and the
# arena's slack. Measured, a batch of 32 incremental positions (first batch after the sessions
# were built, peak over resident): VGG16 1.05x, ResNet18 1.03x, MobileNetV2 0.56x the estimate
# with slack 2; a whole-model run of 16: 0.6-1.16x with slack 1.
ONNXRUNTIME = Allocator(2.25, False)


@dataclass(frozen=True)
class Footprint:
    """Bytes a scan holds: ``fixed`` for the whole scan, ``per_position`` for every position of
    the block an incremental plan covers, ``per_item`` for every position in flight, and the
    views pass (``materialize``) that comes before it."""

    fixed: dict
    per_position: int
    per_item: int
    materialize: int = 0
    frontier: tuple[str, ...] = ()  # incremental: the last layers computed incrementally
    segments: int = 0  # incremental: backend calls per batch before the frontier

    def bytes(self, batch: int, block: int) -> int:
        scan = sum(self.fixed.values()) + block * self.per_position + batch * self.per_item
        return max(self.materialize, scan)


def _mb(n: int) -> int:
    return math.ceil(n / (1 << 20))


def nbytes(shape) -> int:
    return 4 * math.prod(shape)  # float32


def peak_live(graph, alloc: Allocator = NUMPY) -> int:
    """Peak bytes of one item while ``graph`` runs node by node, each value freed once its
    last user ran (the NumPy backend's policy; onnxruntime plans no worse), with the
    allocator's workspace and slack. Inputs and outputs stay alive throughout."""
    keep = set(graph.inputs) | set(graph.outputs)
    remaining = {k: len(v) for k, v in graph.consumers().items()}
    live = {i: nbytes(graph[i].shape) for i in graph.inputs}
    peak = sum(live.values())
    for n in graph.nodes:
        if n.name in graph.inputs:
            continue
        out = nbytes(n.shape)
        scratch = _workspace(graph, n) if alloc.workspace else 0
        peak = max(peak, sum(live.values()) + out + scratch)
        live[n.name] = out
        for i in n.inputs:
            remaining[i] -= 1
            if remaining[i] == 0 and i not in keep:
                live.pop(i, None)
    return math.ceil(alloc.slack * peak)


def _workspace(graph, n) -> int:
    """Scratch a kernel needs beside its input and output: a padded copy of the input for
    windowed ops, and im2col columns for a convolution (the NumPy kernel's; onnxruntime's
    are smaller)."""
    if n.op not in WINDOWED or not n.inputs:
        return 0
    c, h, w = graph[n.inputs[0]].shape
    pt, pl, pb, pr = n.attr("pads", (0, 0, 0, 0))
    padded = nbytes((c, h + pt + pb + 1, w + pl + pr + 1)) if any((pt, pl, pb, pr)) else 0
    if n.op is not GraphOp.CONV:
        return padded + nbytes(n.shape)
    kh, kw = n.attr("kernel")
    return padded + nbytes((c, kh, kw, *n.shape[1:])) + nbytes(n.shape)


def naive_footprint(graph, positions: int, alloc: Allocator = ONNXRUNTIME) -> Footprint:
    """The naive plan: every position's occluded input through the whole model."""
    x = nbytes(graph.input_shape)
    fixed = {"input and fill": 2 * x, "heatmap": positions * 24}
    item = x + peak_live(graph, alloc) + 8 * math.prod(graph[graph.output].shape)
    return Footprint(fixed, 0, item)


def incremental_footprint(graph, corners: np.ndarray, patch, tau=None,
                          alloc: Allocator = ONNXRUNTIME, winograd: bool = False) -> Footprint:
    """The incremental plan over ``corners`` (``winograd``: on a backend that runs eligible
    heads by Winograd): the views it reads, its per-position regions, and per position in
    flight the new regions of every step (all kept to the end of a batch) plus the larger of
    the busiest step (its contexts, side maps and segment) and the global part (the
    frontier's full maps and the suffix); Winograd's weights and, per core, one call's tiles."""
    sizes = region_sizes(graph, corners, patch, tau, BLOCK)
    views = {n: np.broadcast_to(np.float32(0), graph[n].shape) for n in prefix(graph)}
    if alloc is ONNXRUNTIME:  # its scans gather windowed layers' contexts channels-last
        views = ChannelsLastViews(views, winograd)
    plan = IncrementalPlan(graph, corners[:1], patch, views, tau, sizes)
    ph, pw = (patch, patch) if isinstance(patch, (int, np.integer)) else patch
    kept = nbytes((graph.input_shape[0], ph, pw)) + sum(
        nbytes((graph[s.name].shape[0], s.region.h, s.region.w)) for s in plan.steps)
    # a group of siblings (ivm/siblings.py) is one segment's run
    busiest = max((_step_bytes(plan, s, alloc) for s in plan.schedule), default=0)
    item = kept + max(busiest, _finish_bytes(plan, alloc)) + \
        8 * math.prod(graph[graph.output].shape)
    if plan.tail is not None:  # tail inputs wait (up to a tail call's and a batch's), are
        # joined for the call, which holds its layers' outputs: per position in flight
        outs = sum(nbytes(n.shape) for n in plan.tail.nodes if n.op is not GraphOp.INPUT)
        item += 2 * (TAIL_PER_BATCH + 1) * nbytes(graph[plan.out].shape) + TAIL_PER_BATCH * outs
    stored = sum(nbytes(graph[n].shape) for n in read_views(graph))
    x = nbytes(graph.input_shape)
    fixed = {"views": stored, "input and fill": 2 * x, "heatmap": len(corners) * 24}
    if plan.hwc is not None:
        fixed["views, channels last"] = sum(nbytes(graph[n].shape) for n in
                                            {s.inputs[0] for s in plan.steps if s.channels_last})
    if wino := [s for s in plan.steps if s.winograd is not None]:
        fixed[WINOGRAD] = sum(s.winograd.weight_bytes(*s.contexts[0][:2]) for s in wino) + \
            usable_cores() * max(s.winograd.scratch_bytes(*s.contexts[0][:2]) for s in wino)
    per_position = PLAN_BYTES * len(prefix(graph))
    # the views pass: the model run with every view as an output, then each copied into the
    # table and freed
    materialize = stored + peak_live(graph, alloc) + 2 * x
    return Footprint(fixed, per_position, item, materialize, tuple(plan.frontier),
                     len(plan.schedule))


def _step_bytes(plan, step, alloc: Allocator) -> int:
    """One position's bytes while a step (or siblings) runs: its gathered inputs and the
    segment's run."""
    if step.segment is not None:
        return peak_live(step.segment, alloc)
    ins = sum(nbytes((plan.views[s].shape[0], c[0], c[1]))
              for s, c in zip(step.inputs, step.contexts))
    return ins + nbytes((plan.graph[step.name].shape[0], step.region.h, step.region.w))


def _finish_bytes(plan, alloc: Allocator) -> int:
    """One position's bytes in the global part: full maps of the frontier, the suffix run."""
    maps = sum(nbytes(plan.graph[f].shape) for f in plan.frontier)
    if plan.suffix is None:
        return maps
    return maps + peak_live(plan.suffix, alloc) - \
        sum(nbytes(plan.suffix[i].shape) for i in plan.suffix.inputs)


@dataclass(frozen=True)
class Choice:
    batch: int
    block: int
    estimate: int  # bytes


def choose(fp: Footprint, budget: int, positions: int, cap: int) -> Choice | None:
    """The largest batch that fits with a block of at least MIN_BLOCK positions (fewer
    plans to build), else with any block; then the largest block (up to BLOCK) that fits."""
    target = min(positions, BLOCK) if fp.per_position else positions
    for least in (min(target, MIN_BLOCK), 1):
        for batch in range(min(cap, positions), 0, -1):
            block = _largest_block(fp, budget, batch, target)
            if block is not None and block >= least:
                return Choice(batch, block, fp.bytes(batch, block))
    return None


def choose_lean(fp: Footprint, lean, budget: int, positions: int,
                cap: int) -> tuple[Choice | None, Footprint]:
    """``choose``, and where nothing fits, the plan without Winograd (runtime/winograd.py),
    whose footprint ``lean()`` gives, if that fits: (the choice, the footprint it was made on;
    without Winograd's, the lean one whether it fits or not)."""
    choice = choose(fp, budget, positions, cap)
    if choice is not None or WINOGRAD not in fp.fixed:
        return choice, fp
    fp = lean()
    return choose(fp, budget, positions, cap), fp


def _largest_block(fp: Footprint, budget: int, batch: int, target: int) -> int | None:
    if not fp.per_position:
        return target if fp.bytes(batch, target) <= budget else None
    room = budget - sum(fp.fixed.values()) - batch * fp.per_item
    block = min(target, room // fp.per_position)
    if block < batch or fp.bytes(batch, block) > budget:
        return None
    return int(block)


def scan_corners(n: PlanNode) -> np.ndarray:
    """Every position the scan runs: its grid, and the coarse grid of a drill-down."""
    grid = n.arg("grid")
    grids = [grid]
    if n.arg("coarse_stride"):
        grids.append(grid.with_strides(n.arg("coarse_stride")))
    return np.concatenate([g.corners() for g in grids])


def footprint(graph, n: PlanNode, mode: str | None = None, winograd: bool = True) -> Footprint:
    """The footprint of the OcclusionScan ``n`` (in ``mode``, default its own; with
    Winograd where its backend runs it, unless ``winograd`` is False), over all its inputs and
    targets."""
    mode = mode or n.arg("mode")
    alloc = NUMPY if n.arg("backend") == "numpy" else ONNXRUNTIME
    corners = scan_corners(n)
    if mode == "incremental":
        fp = incremental_footprint(graph, corners, n.arg("grid").window, n.arg("tau"), alloc,
                                   winograd and runs_winograd(n.arg("backend"), n.arg("winograd")))
    else:
        fp = naive_footprint(graph, len(corners), alloc)
    return _inputs_and_targets(fp, n.arg("inputs") or 1, _targets(graph, n))


def _inputs_and_targets(fp: Footprint, inputs: int, targets: int) -> Footprint:
    """Inputs are scanned one after the other, but the views of each (computed first) and the
    scores of every input and target stay to the end."""
    if (inputs, targets) == (1, 1):
        return fp
    fixed = {k: v if k == WINOGRAD else v * inputs for k, v in fp.fixed.items()}  # one set
    fixed["heatmap"] *= targets
    more_views = fp.fixed.get("views", 0) * (inputs - 1)
    return replace(fp, fixed=fixed, materialize=fp.materialize + more_views if fp.materialize
                   else 0)


def _targets(graph, n: PlanNode) -> int:
    """How many classes the scan scores: its ChooseClass's (each input's top one: at most one
    per input)."""
    target = n.children[1].arg("target") if len(n.children) > 1 else None
    if target == "all":
        return math.prod(graph[graph.output].shape)
    if target == "top1":
        return n.arg("inputs") or 1
    return len(target.ids) if isinstance(target, Classes) else 1


def batch_queries(plan: PlanNode, ctx) -> PlanNode:
    def visit(n: PlanNode) -> PlanNode:
        if n.op == Op.INFERENCE and n.arg("batch") is None:
            video = n.children[0].children and n.children[0].children[0].op == Op.VIDEO_SCAN
            return n.with_args(batch=16 if video else 1)
        if n.op != Op.OCCLUSION_SCAN or n.arg("batch") is not None:
            return n
        return _plan_scan(n, ctx)

    return transform(plan, visit)


def _plan_scan(n: PlanNode, ctx) -> PlanNode:
    graph = ctx.model(n.arg("model")).graph
    budget_mb = ctx.options.memory_mb
    positions = n.arg("grid").count
    fp = footprint(graph, n)
    lean = lambda: footprint(graph, n, winograd=False)  # noqa: E731
    if ctx.options.batch:  # BATCH fixes it; MEMORY, when given too, must hold it
        return _fixed_batch(n, fp, lean, ctx, budget_mb)
    budget = (budget_mb or DEFAULT_MEMORY_MB) << 20
    incremental = n.arg("mode") == "incremental"
    cap = MAX_INCREMENTAL_BATCH if incremental else MAX_BATCH
    choice, used = choose_lean(fp, lean, budget, positions, cap)
    if choice is not None:
        return _winograd_arg(_with_choice(n, used, choice, budget >> 20, cap), fp, used)
    fp = used  # without Winograd: the least the incremental plan needs
    forced = ctx.options.incremental or ctx.options.approximate is not None
    if incremental and not forced:  # the cost model's choice: fall back to the naive plan
        naive_fp = footprint(graph, n, "naive")
        naive = choose(naive_fp, budget, positions, MAX_BATCH)
        if naive is not None:
            why = f"incremental plan needs at least {_mb(fp.bytes(1, 1))} MB (MEMORY)"
            return _with_choice(_as_naive(n, why), naive_fp, naive, budget >> 20, MAX_BATCH)
        fp = naive_fp
    raise _fail(ctx, f"MEMORY {budget >> 20} MB is below the {_mb(fp.bytes(1, 1))} MB this "
                     f"{'incremental' if fp.per_position else 'naive'} scan needs for one "
                     f"position at a time ({_parts(fp)})")


def _fixed_batch(n: PlanNode, fp: Footprint, lean, ctx, budget_mb: int | None) -> PlanNode:
    """BATCH fixes it; MEMORY, when given too, must hold it (without Winograd if need be)."""
    batch, positions = ctx.options.batch, n.arg("grid").count
    block = positions if not fp.per_position else max(batch, BLOCK)
    est, used = fp.bytes(batch, min(block, positions)), fp
    if budget_mb is not None and est > budget_mb << 20 and WINOGRAD in fp.fixed:
        used = lean()
        est = used.bytes(batch, min(block, positions))
    if budget_mb is not None and est > budget_mb << 20:
        raise _fail(ctx, f"BATCH {batch} needs about {_mb(est)} MB, more than "
                         f"MEMORY {budget_mb} MB")
    chosen = _with_choice(n, used, Choice(batch, min(block, positions), est), budget_mb)
    return _winograd_arg(chosen, fp, used)


def _winograd_arg(n: PlanNode, fp: Footprint, used: Footprint) -> PlanNode:
    """``winograd=False`` where the plan fits only without Winograd (runtime/winograd.py)."""
    return n if used is fp else n.with_args(winograd=False)


def _with_choice(n: PlanNode, fp: Footprint, c: Choice, budget_mb: int | None,
                 cap: int = 0) -> PlanNode:
    args = dict(batch=c.batch, memory_estimate_mb=_mb(c.estimate))
    if n.arg("mode") == "incremental":
        args.update(frontier=fp.frontier, segments=fp.segments)
    if budget_mb is not None:
        args["memory_mb"] = budget_mb
    positions = n.arg("grid").count
    if c.block < positions and n.arg("mode") == "incremental":
        args["block"] = c.block
    if cap and c.batch < min(cap, positions):
        args["limited_by"] = "MEMORY"
    return n.with_args(**args)


def _as_naive(n: PlanNode, why: str) -> PlanNode:
    drop = ("flops_full", "flops_incremental")
    args = tuple((k, v) for k, v in n.args if k not in drop)
    return replace(n, args=args, children=n.children[:2]).with_args(mode="naive", why=why)


def _parts(fp: Footprint) -> str:
    parts = [f"{k} {_mb(v)} MB" for k, v in fp.fixed.items() if v >= 1 << 20]
    parts.append(f"{_mb(fp.per_item)} MB per position in flight")
    if fp.materialize and fp.materialize >= fp.bytes(1, 1):  # the views pass is the peak
        parts.append(f"computing the views {_mb(fp.materialize)} MB")
    return ", ".join(parts)


def _fail(ctx, message: str) -> PlanError:
    """A PlanError with a caret under MEMORY (or BATCH) where the statement wrote it."""
    span = ctx.options.spans.get("memory_mb") or ctx.options.spans.get("batch")
    if span is None:
        return PlanError(message, ctx.text)
    return PlanError(message, ctx.text, span.line, span.column, span.length)
