"""Lowering: the rewritten logical plan -> the physical operator DAG the executor runs."""

from __future__ import annotations

from dataclasses import replace

from kryptondb.plan.nodes import Dag, PlanNode, transform

# logical operator -> physical operator (others keep their name)
PHYSICAL = {"ImageScan": "LoadImage", "Inference": "FullInference", "ChooseClass": "PickClass",
            "Store": "StoreTable", "VideoIVM": "IncrementalVideoInference"}


def lower(plan: PlanNode) -> Dag:
    return Dag.from_tree(transform(plan, lambda n: replace(n, op=PHYSICAL.get(n.op, n.op))))
