"""Occlusion operators: thin adapters from the plan's typed arguments to the occlusion driver
(kryptondb/obe). The physical kind says how a scan runs (``NaiveOcclusionScan``,
``IncrementalOcclusionScan``, ``DrillDown``); the adapter builds the scan's spec (the image, the
grid, the fill, the class) and the plan's decisions, calls ``obe.scan``, and keeps exact scores
for the session so an approximate scan is scored (SSIM) against them."""

from __future__ import annotations

from kryptondb.ivm import views as V
from kryptondb.obe.incremental import views_of
from kryptondb.obe.memo import remember
from kryptondb.obe.occlusion import fill_tensor
from kryptondb.obe.render import display_image
from kryptondb.obe.scan import scan
from kryptondb.obe.spec import Scores, ScanSpec
from kryptondb.obe.strategy import DrillDown, Incremental, Naive, Runtime
from kryptondb.plan.ops import Op
from kryptondb.result import Heatmap
from kryptondb.runtime.backends import get_backend, release_freed_memory
from kryptondb.exec.inference import model_flops


def occlusion_scan(node, inputs, ctx) -> Scores:
    """Any of the three scan kinds: the driver runs the decisions ``_decisions`` reads off the
    node's kind and arguments."""
    x, cls = inputs[:2]
    model = ctx.model(node.arg("model"))
    grid, stats = node.arg("grid"), ctx.stats(node)
    fill = fill_tensor(x[0], node.arg("fill"), model.preprocess, grid.window[0])
    spec = ScanSpec(x, grid, (cls,), fill)
    rt = Runtime(model, get_backend(node.arg("backend") or "onnxruntime"), ctx.bar, stats,
                 tuple(inputs[2:3]))  # the materialized views of an incremental plan
    scores = Scores(spec, scan(spec, _decisions(node), rt), node.arg("model"))
    scores = remember(ctx.memo, scores, _approximate(node))
    if scores.ssim is not None:
        stats.update(ssim=scores.ssim)
    return scores


def _decisions(node) -> Naive | Incremental | DrillDown:
    """What the plan decided, by the node's kind: the batch and blocks, tau, the drill-down."""
    if node.op is Op.NAIVE_OCCLUSION_SCAN:
        return Naive(node.arg("batch"))
    stage = Incremental(node.arg("batch"), node.arg("block"), node.arg("tau"))
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


def materialize_views(node, inputs, ctx) -> dict:
    """The base input's output of every incremental layer a plan reads, stored as an Arrow
    view table in the catalog and reused by later queries on the same model and image. The
    view is stored once the statement has succeeded (``ExecContext.defer``): a statement that
    fails, say at its INTO, leaves the catalog as it was."""
    (x,) = inputs
    ref = node.arg("model")
    model = ctx.model(ref)
    name = V.view_name(ref, x)
    if name in ctx.db.names("view"):
        ctx.stats(node).update(reused=1)
        return V.from_arrow(ctx.db.get_table(name, "view"))
    views = views_of(model.graph, x[0], get_backend(node.arg("backend") or "onnxruntime"))
    table = V.to_arrow(views, [n.name for n in model.graph.nodes], consume=True)
    release_freed_memory()  # the pass's outputs, now in the table
    info = {"model": ref.entry, "digest": ref.digest, "layers": table.num_rows}
    ctx.defer(f"materialized views {name}",
              lambda: ctx.db.put_table(name, table, kind="view", info=info))
    ctx.stats(node).update(flops=model_flops(model), bytes=table.nbytes, rows=table.num_rows)
    return V.from_arrow(table)


def heatmap(node, inputs, ctx) -> Heatmap:
    """The scan's scores of its one input and class, with the base probability and picture."""
    scores, base, cls = inputs
    model = ctx.model(scores.model)
    probability, grid = scores.values[0, 0], scores.spec.grid
    ctx.stats(node).update(rows=probability.size)
    return Heatmap(probability, float(base[0, cls]), cls, model.label(cls), grid.window[0],
                   grid.strides[0], display_image(scores.spec.inputs[0], model.preprocess),
                   model.name, scores.approximate, scores.ssim)
