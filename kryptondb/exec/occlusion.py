"""Occlusion operators: thin adapters from the plan's typed arguments to the occlusion driver
(kryptondb/obe). The physical kind says how a scan runs (``NaiveOcclusionScan``,
``IncrementalOcclusionScan``, ``DrillDown``); the adapter builds the scan's spec (the inputs,
the grid, the fill or baseline, the classes, the score) and the plan's decisions, calls
``obe.scan``, and keeps exact scores for the session so an approximate scan is scored (SSIM)
against them."""

from __future__ import annotations

import numpy as np

from kryptondb.dist import obe as distributed
from kryptondb.ivm import views as V
from kryptondb.lang.ast import Fill
from kryptondb.obe.incremental import views_of
from kryptondb.obe.memo import remember
from kryptondb.obe.occlusion import fill_tensor
from kryptondb.obe.render import display_image
from kryptondb.obe.scan import scan
from kryptondb.obe.spec import Scores, ScanSpec
from kryptondb.obe.strategy import DrillDown, Incremental, Naive, Runtime, add
from kryptondb.plan.ops import Op
from kryptondb.plan.values import Tensor
from kryptondb.result import Heatmap, Heatmaps
from kryptondb.runtime.backends import get_backend, release_freed_memory
from kryptondb.exec.inference import model_flops


def occlusion_scan(node, inputs, ctx) -> Scores:
    """Any of the three scan kinds: the driver runs the decisions ``_decisions`` reads off the
    node's kind and arguments, over every input and every class some input is explained for."""
    x, classes = inputs[:2]
    model = ctx.model(node.arg("model"))
    grid, stats = node.arg("grid"), ctx.stats(node)
    spec = ScanSpec(x, grid, targets(classes), _baselines(node, x, model),
                    node.arg("score") or "probability")
    rt = Runtime(model, get_backend(node.arg("backend") or "onnxruntime"), ctx.bar, stats,
                 tuple(inputs[2]) if len(inputs) > 2 else ())  # an incremental plan's views
    how, ref = _decisions(node), node.arg("model")
    values = scan(spec, how, rt) if ctx.cluster is None else \
        distributed.scan(ctx.cluster, spec, how, rt, ref)  # the same scores, on the workers
    scores = Scores(spec, values, ref)
    scores = remember(ctx.memo, scores, _approximate(node))
    if scores.ssim is not None:
        stats.update(ssim=scores.ssim)
    return scores


def targets(classes: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """Every class some input is explained for, in the order first named: one scan scores
    them all (every occluded forward pass yields every class)."""
    return tuple(dict.fromkeys(c for per_input in classes for c in per_input))


def _baselines(node, x: np.ndarray, model) -> np.ndarray | float:
    """What the windows show, in the model's input space: BASELINE's number or tensor, else
    FILL's (pixel values normalised like the image; MEAN and BLUR of each input)."""
    baseline = node.arg("baseline")
    if baseline is not None:
        return baseline.array if isinstance(baseline, Tensor) else float(baseline)
    fill, window = node.arg("fill") or Fill(), node.arg("grid").window
    side = sum(window) / 2  # BLUR's sigma is a quarter of it
    if fill.kind in ("mean", "blur"):
        return np.stack([fill_tensor(one, fill, model.preprocess, side) for one in x])
    return fill_tensor(x[0], fill, model.preprocess, side)


def _decisions(node) -> Naive | Incremental | DrillDown:
    """What the plan decided, by the node's kind: the batch and blocks, tau, the drill-down."""
    if node.op is Op.NAIVE_OCCLUSION_SCAN:
        return Naive(node.arg("batch"))
    stage = Incremental(node.arg("batch"), node.arg("block"), node.arg("tau"),
                        node.arg("winograd") is not False)  # False: memory too tight for it
    if node.op is Op.INCREMENTAL_OCCLUSION_SCAN:
        return stage
    return DrillDown(node.arg("stage1"), node.arg("ratio"), stage)


def _approximate(node) -> dict:
    """The approximate settings a scan ran with (empty: exact), as its result reports them."""
    stage1 = node.arg("stage1")
    settings = {"tau": node.arg("tau"), "drilldown": node.arg("ratio"),
                "coarse_stride": stage1.strides[0] if stage1 is not None else None,
                "predicted_ssim": node.arg("predicted_ssim")}
    return {k: v for k, v in settings.items() if v is not None}


def materialize_views(node, inputs, ctx) -> tuple[dict, ...]:
    """Per input, its output of every incremental layer a plan reads, stored as an Arrow view
    table in the catalog and reused by later queries on the same model and input. A view is
    stored once the statement has succeeded (``ExecContext.defer``): a statement that fails,
    say at its INTO, leaves the catalog as it was."""
    (x,) = inputs
    ref = node.arg("model")
    model = ctx.model(ref)
    backend = get_backend(node.arg("backend") or "onnxruntime")
    done: dict[str, dict] = {}  # the same input twice in a batch is computed once
    for one in x:
        name = V.view_name(ref, one)
        if name not in done:
            done[name] = _views(node, ctx, name, model, backend, one)
    return tuple(done[V.view_name(ref, one)] for one in x)


def _views(node, ctx, name: str, model, backend, x: np.ndarray) -> dict:
    """One input's views: the stored table, or computed now and stored on success."""
    stats = ctx.stats(node)
    if name in ctx.db.names("view"):
        add(stats, reused=1)
        return V.from_arrow(ctx.db.get_table(name, "view"))
    views = views_of(model.graph, x, backend)
    table = V.to_arrow(views, [n.name for n in model.graph.nodes], consume=True)
    release_freed_memory()  # the pass's outputs, now in the table
    ref = node.arg("model")
    info = {"model": ref.entry, "digest": ref.digest, "layers": table.num_rows}
    ctx.defer(f"materialized views {name}",
              lambda: ctx.db.put_table(name, table, kind="view", info=info))
    add(stats, flops=model_flops(model), bytes=table.nbytes, rows=table.num_rows)
    return V.from_arrow(table)


def heatmap(node, inputs, ctx) -> Heatmap | Heatmaps:
    """The scan's scores, per input and class it was explained for, with the base score and
    the picture: one Heatmap, or Heatmaps keyed by image and class (the node's ``keys``)."""
    scores, base, classes = inputs
    model = ctx.model(scores.model)
    spec, grid = scores.spec, scores.spec.grid
    names = node.arg("images").names if node.arg("images") else range(len(spec))
    where = {c: k for k, c in enumerate(spec.targets)}
    maps = []
    for n, per_input in enumerate(classes):
        picture = display_image(spec.inputs[n], model.preprocess)
        maps += [Heatmap(scores.values[n, where[c]], float(base[n, c]), c, model.label(c),
                         grid.window[0], grid.strides[0], picture, model.name,
                         scores.approximate, scores.ssim, grid=grid, score=spec.score,
                         layout=node.arg("layout") or "windows", source=names[n])
                 for c in per_input]
    ctx.stats(node).update(rows=sum(m.probability.size for m in maps))
    keys = node.arg("keys") or ()
    return Heatmaps(tuple(maps), keys) if keys else maps[0]
