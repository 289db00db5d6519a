"""meet_accuracy_target: ``APPROXIMATE WITH SSIM >= q`` / ``APPROXIMATE WITHIN <seconds>`` (and a
bare ``APPROXIMATE``, which means ``WITH SSIM >= 0.9``) become concrete settings: the model's
tuning, stored in the catalog per patch and stride, predicts SSIM and seconds for each tau with
and without drill-down; the rule picks the fastest setting predicted to meet the SSIM target, or
the most accurate one predicted to fit the time budget, and says why in the plan.
"""

from __future__ import annotations

from kryptondb.approx.drilldown import DEFAULT_RATIO, DEFAULT_TARGET
from kryptondb.obe.tuning import speedup
from kryptondb.plan.ops import Op
from kryptondb.plan.nodes import PlanNode, transform

DEFAULT_SSIM = 0.9


def meet_accuracy_target(plan: PlanNode, ctx) -> PlanNode:
    a = ctx.options.approximate
    if a is None or not a.wants_target:
        return plan

    def visit(n: PlanNode) -> PlanNode:
        if n.op != Op.OCCLUSION_SCAN:
            return n
        grid = n.arg("grid")
        tuning = ctx.tuning(n.arg("model"), grid.window[0], grid.strides[0])
        if tuning is None:  # the binder checked; a tuning dropped since is a plain error
            return n.with_args(why="no tuning for this model, patch and stride")
        drill = True if a.drilldown is not None else None
        choice = tuning.for_seconds(a.within, drill) if a.within is not None else \
            tuning.for_ssim(a.ssim if a.ssim is not None else DEFAULT_SSIM, drill)
        args = dict(tau=choice.tau, predicted_ssim=round(choice.predicted_ssim, 3),
                    predicted_seconds=round(choice.predicted_seconds, 1),
                    predicted_speedup_vs_exact=round(speedup(tuning, choice), 2), why=choice.why)
        if choice.drilldown and a.drilldown is None:
            args.update(drilldown=DEFAULT_RATIO, target=DEFAULT_TARGET)
        return n.with_args(**args)

    return transform(plan, visit)
