"""Lowering: the rewritten logical plan -> the physical operator DAG the executor runs.

Each physical operator carries the rewrite's decisions in its kind, so the executor dispatches
on it and never decides again: an ``OcclusionScan`` the rules left naive runs as
``NaiveOcclusionScan``; an incremental one as ``IncrementalOcclusionScan`` (its frontier and
segments as batch_queries sized them) or, with drill-down, as ``DrillDown`` (stage 1 over the
coarse grid, stage 2 at the requested stride where the drops are largest).

A set statement's chain (PREDICT IMAGES: ``TopK`` over an ``ImageScan`` of an ImageSet;
RECOGNIZE ... IN VIDEOS: ``FrameLabels`` over a ``VideoScan`` of a VideoSet) becomes one
``PredictImages`` / ``RecognizeVideos`` holding the chain's arguments: it runs the per-input
function (model/predict.py, orv/recognize.py) on each input in turn, the model loaded once.
"""

from __future__ import annotations

from dataclasses import replace

from kryptondb.plan.nodes import Dag, PlanNode, node, transform
from kryptondb.plan.ops import Op

# logical operator -> physical operator (others keep their kind)
PHYSICAL = {Op.IMAGE_SCAN: Op.LOAD_IMAGE, Op.INFERENCE: Op.FULL_INFERENCE,
            Op.CHOOSE_CLASS: Op.PICK_CLASS, Op.STORE: Op.STORE_TABLE,
            Op.VIDEO_IVM: Op.INCREMENTAL_VIDEO_INFERENCE}
DECIDED = ("mode", "drilldown", "coarse_stride")  # what the physical kind of a scan says


def lower(plan: PlanNode) -> Dag:
    return Dag.from_tree(transform(plan, _physical))


def _physical(n: PlanNode) -> PlanNode:
    if n.op is Op.OCCLUSION_SCAN:
        return _scan(n)
    if n.op is Op.TOP_K and _chain(n)[-1].arg("images") is not None:
        return _predict_images(n)
    if n.op is Op.FRAME_LABELS and n.arg("videos") is not None:
        return _recognize_videos(n)
    return replace(n, op=PHYSICAL.get(n.op, n.op))


def _chain(n: PlanNode) -> list[PlanNode]:
    """The (lowered) nodes under ``n``, first children down to the scan."""
    out = []
    while n.children:
        n = n.children[0]
        out.append(n)
    return out or [n]


def _predict_images(top: PlanNode) -> PlanNode:
    inference, _, scan = _chain(top)
    return node(Op.PREDICT_IMAGES, **dict(inference.args), images=scan.arg("images"),
                k=top.arg("k"))


def _recognize_videos(labels: PlanNode) -> PlanNode:
    top, inference, _, scan = _chain(labels)
    mode = "incremental" if inference.op is Op.INCREMENTAL_VIDEO_INFERENCE else "naive"
    return node(Op.RECOGNIZE_VIDEOS, **dict(inference.args), **dict(scan.args),
                k=top.arg("k"), mode=mode)


def _scan(n: PlanNode) -> PlanNode:
    args = tuple((k, v) for k, v in n.args if k not in DECIDED)
    if n.arg("mode") == "naive":
        return replace(n, op=Op.NAIVE_OCCLUSION_SCAN, args=args)
    if n.arg("drilldown") is None:
        return replace(n, op=Op.INCREMENTAL_OCCLUSION_SCAN, args=args)
    stage1 = n.arg("grid").with_strides(n.arg("coarse_stride"))
    return replace(n, op=Op.DRILL_DOWN, args=args).with_args(stage1=stage1,
                                                             ratio=n.arg("drilldown"))
