"""Plan IR shared by the logical plan, the rewrite rules and the physical DAG.

A ``PlanNode`` is a small immutable record: an operator kind (``Op``), its arguments (sorted
key/value pairs of typed values, checked against ``ops.SCHEMA`` when the node is made), and its
children. Logical and rewritten plans are trees of them with shared subtrees; the physical plan
is the lowered nodes numbered in topological order (``Dag``). Nothing is written into a plan once
it is made: what a run measures lives beside it (``kryptondb.exec.profile``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterator

from kryptondb.plan.ops import Op, check_args


@dataclass(frozen=True, slots=True)
class PlanNode:
    op: Op
    args: tuple[tuple[str, Any], ...] = ()
    children: tuple["PlanNode", ...] = ()

    def __post_init__(self):
        check_args(self.op, self.args)

    def arg(self, key: str, default: Any = None) -> Any:
        for k, v in self.args:
            if k == key:
                return v
        return default

    def with_args(self, **changes: Any) -> "PlanNode":
        merged = dict(self.args) | changes
        return replace(self, args=tuple(sorted(merged.items())))

    def with_children(self, *children: "PlanNode") -> "PlanNode":
        return replace(self, children=tuple(children))

    def walk(self) -> Iterator["PlanNode"]:
        """Post-order, each distinct node once."""
        seen: set[int] = set()
        yield from _walk(self, seen)


def _walk(node: PlanNode, seen: set[int]) -> Iterator[PlanNode]:
    if id(node) in seen:
        return
    seen.add(id(node))
    for c in node.children:
        yield from _walk(c, seen)
    yield node


def node(op: Op, *children: PlanNode, **args: Any) -> PlanNode:
    return PlanNode(op, tuple(sorted(args.items())), tuple(children))


def transform(root: PlanNode, fn) -> PlanNode:
    """Bottom-up rewrite: ``fn(node_with_rewritten_children) -> node``; shared nodes stay shared."""
    memo: dict[int, PlanNode] = {}

    def go(n: PlanNode) -> PlanNode:
        if id(n) not in memo:
            kids = tuple(go(c) for c in n.children)
            # by identity: a child rewritten to an equal copy must still be the one shared
            same = all(k is c for k, c in zip(kids, n.children))
            memo[id(n)] = fn(n if same else replace(n, children=kids))
        return memo[id(n)]

    return go(root)


@dataclass(frozen=True)
class DagNode:
    """One physical operator: ``id`` is its position; ``inputs`` are ids of earlier nodes."""

    id: int
    op: Op
    args: tuple[tuple[str, Any], ...]
    inputs: tuple[int, ...]

    def __post_init__(self):
        check_args(self.op, self.args)

    @property
    def label(self) -> str:
        """``%5 IncrementalOcclusionScan``: how errors and profiles name the node."""
        return f"%{self.id} {self.op}"

    def arg(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)


@dataclass(frozen=True)
class Dag:
    nodes: tuple[DagNode, ...]

    @property
    def root(self) -> DagNode:
        return self.nodes[-1]

    @staticmethod
    def from_tree(root: PlanNode) -> "Dag":
        ids: dict[int, int] = {}
        out: list[DagNode] = []
        for n in root.walk():
            ids[id(n)] = len(out)
            out.append(DagNode(len(out), n.op, n.args, tuple(ids[id(c)] for c in n.children)))
        return Dag(tuple(out))
