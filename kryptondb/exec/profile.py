"""What a run measured, beside the plan it ran (plans are frozen; nothing is written into
them): per physical node id, its statistics (time, FLOPs, bytes, batches, rows, and what its
operator adds), and the share of the total each node took."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Profile:
    stats: dict[int, dict] = field(default_factory=dict)

    def of(self, node) -> dict:
        """The statistics of ``node`` (a DagNode), filled in by its operator as it runs."""
        return self.stats.setdefault(node.id, {})

    def total_s(self) -> float:
        return sum(s.get("time_s", 0.0) for s in self.stats.values())

    def exclusive_times(self, dag) -> None:
        """Streaming operators: own time = time inside next() minus their streaming inputs';
        then each node's share of the total."""
        inclusive = {n.id: self.of(n).pop("inclusive_s") for n in dag.nodes
                     if "inclusive_s" in self.of(n)}
        for n in dag.nodes:
            if n.id in inclusive:
                upstream = sum(inclusive.get(i, 0.0) for i in n.inputs)
                self.of(n)["time_s"] += max(0.0, inclusive[n.id] - upstream)
        total = self.total_s() or 1.0
        for n in dag.nodes:
            self.of(n)["share"] = self.of(n).get("time_s", 0.0) / total
