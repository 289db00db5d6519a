"""maintain_video_views: the IVM rewrite for video. Full inference on every frame becomes
incremental inference over the last frame's materialized views: per frame, the pixels that
changed (over THRESHOLD) are grouped into boxes, and only the regions they reach are recomputed
(kryptondb/orv/incremental.py). Frames with no change reuse the last result; frames whose boxes
would save too little run in full. With FEATURE THRESHOLD, changes are thresholded on feature
maps instead (kryptondb/orv/features.py). NAIVE keeps full inference.
"""

from __future__ import annotations

from dataclasses import replace

from kryptondb.plan.ops import Op
from kryptondb.plan.nodes import PlanNode, transform


def maintain_video_views(plan: PlanNode, ctx) -> PlanNode:
    if ctx.options.incremental is False:
        return plan

    def visit(n: PlanNode) -> PlanNode:
        if n.op != Op.INFERENCE or not _over_video(n):
            return n
        if n.arg("feature_scale") is not None:  # thresholds on feature maps, no pixel boxes
            return replace(n, op=Op.VIDEO_IVM)
        return replace(n, op=Op.VIDEO_IVM).with_args(threshold=n.arg("threshold", 0.0))

    return transform(plan, visit)


def _over_video(n: PlanNode) -> bool:
    child = n.children[0] if n.children else None
    return child is not None and bool(child.children) and child.children[0].op == Op.VIDEO_SCAN
