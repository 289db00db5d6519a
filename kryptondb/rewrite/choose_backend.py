"""choose_backend: every Inference runs on the backend the statement asked for (ON CPU/GPU/...)."""

from __future__ import annotations

from kryptondb.plan.ops import Op
from kryptondb.plan.nodes import PlanNode, transform


def choose_backend(plan: PlanNode, ctx) -> PlanNode:
    backend = ctx.options.backend

    def visit(n: PlanNode) -> PlanNode:
        if n.op == Op.INFERENCE and n.arg("backend") is None:
            return n.with_args(backend=backend)
        return n

    return transform(plan, visit)
