"""What the plan pictures draw: boxes with a name, printable arguments, edges to earlier boxes,
and the statistics a run measured. ``diagram`` makes one from a physical plan and its profile;
the renderers draw any diagram (tests draw made-up ones)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DiagramNode:
    """One operator as drawn: ``id`` is its position; ``inputs`` are ids of earlier boxes."""

    id: int
    op: str
    args: tuple[tuple[str, Any], ...]
    inputs: tuple[int, ...]
    stats: dict = field(default_factory=dict, compare=False)

    def arg(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)


@dataclass(frozen=True)
class Diagram:
    nodes: tuple[DiagramNode, ...]

    @property
    def root(self) -> DiagramNode:
        return self.nodes[-1]


def diagram(dag, profile=None, show=str) -> Diagram:
    """The boxes of a physical ``dag`` (kryptondb.plan.nodes.Dag), each argument shown with
    ``show`` (EXPLAIN's formatter) and the statistics ``profile`` measured for its node."""
    stats = profile.stats if profile is not None else {}
    return Diagram(tuple(DiagramNode(n.id, str(n.op), tuple((k, show(v)) for k, v in n.args
                                                    if v is not None),
                             n.inputs, dict(stats.get(n.id, {}))) for n in dag.nodes))
