"""Rewrite rules: each module holds one pure ``plan -> plan`` rule of the same name; ``RULES``
is their order. ``rewrite`` applies them and reports which changed the plan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kryptondb.model.binding import bound
from kryptondb.plan.nodes import PlanNode
from kryptondb.rewrite.batch_queries import batch_queries
from kryptondb.rewrite.choose_backend import choose_backend
from kryptondb.rewrite.drill_down import drill_down
from kryptondb.rewrite.fuse_occlusion_scan import fuse_occlusion_scan
from kryptondb.rewrite.maintain_video_views import maintain_video_views
from kryptondb.rewrite.maintain_views import maintain_views
from kryptondb.rewrite.meet_accuracy_target import meet_accuracy_target
from kryptondb.rewrite.threshold_projective_field import threshold_projective_field


@dataclass(frozen=True)
class RuleContext:
    """What rules may read besides the plan: statement options, the catalog's tunings of
    approximate settings and the statement's text (for errors with a caret). Models are bound in
    the plan (``model`` arguments are ModelRefs). Plans are kept by what they depend on
    (``kryptondb.exec.pipeline.plan_key``: the plan, the options, the calibration, the sessions
    built; a plan that read a tuning is not kept): a rule that reads anything else adds it
    there."""

    options: object  # kryptondb.plan.binder.Options
    tuning: Callable[[object, int, int], object] = lambda model, patch, stride: None
    text: str = ""  # the statement, for errors with a caret

    # a node's ``model`` argument -> the Model the binder bound it to; never a lookup by name
    model = staticmethod(bound)


RULES: tuple[Callable[[PlanNode, RuleContext], PlanNode], ...] = (
    choose_backend,
    fuse_occlusion_scan,
    meet_accuracy_target,
    maintain_views,
    maintain_video_views,
    threshold_projective_field,
    drill_down,
    batch_queries,
)


def rewrite(plan: PlanNode, ctx: RuleContext) -> tuple[PlanNode, tuple[tuple[str, PlanNode], ...]]:
    """Apply RULES in order; return the new plan and (rule, plan after it) for each rule that
    changed the plan."""
    steps = []
    for rule in RULES:
        new = rule(plan, ctx)
        if new != plan:
            steps.append((rule.__name__, new))
        plan = new
    return plan, tuple(steps)
