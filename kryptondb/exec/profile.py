"""What a run measured, beside the plan it ran (plans are frozen; nothing is written into
them): per physical node id, its statistics (time, FLOPs, bytes, batches, rows, and what its
operator adds), the share of the total each node took, and the setup the statement paid apart
from inference: loading models, building backend sessions, materializing views."""

from __future__ import annotations

from dataclasses import dataclass, field

SETUP = ("model_load", "sessions", "views")


@dataclass
class Profile:
    stats: dict[int, dict] = field(default_factory=dict)
    # seconds: model_load (while planning), sessions (built while nodes ran, taken out of their
    # time), views (the MaterializeViews nodes' time, also counted as theirs)
    setup: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SETUP, 0.0))

    def of(self, node) -> dict:
        """The statistics of ``node`` (a DagNode), filled in by its operator as it runs."""
        return self.stats.setdefault(node.id, {})

    def total_s(self) -> float:
        """Every node's own time, the sessions built while they ran, and the model load."""
        return sum(s.get("time_s", 0.0) for s in self.stats.values()) + \
            self.setup["model_load"] + self.setup["sessions"]

    def exclusive_times(self, dag) -> None:
        """Each node's own time: streaming operators' time inside next() less their streaming
        inputs' (measured inside it), a node that drains streams (labels, INTO) likewise; then
        the sessions built in it set apart (``setup_s``); then its share of the total."""
        inclusive = {n.id: (self.of(n).pop("inclusive_s"), self.of(n).pop("inclusive_setup_s",
                                                                           0.0))
                     for n in dag.nodes if "inclusive_s" in self.of(n)}
        for n in dag.nodes:
            s = self.of(n)
            time_in = sum(inclusive[i][0] for i in n.inputs if i in inclusive)
            setup_in = sum(inclusive[i][1] for i in n.inputs if i in inclusive)
            if n.id in inclusive:
                own, own_setup = inclusive[n.id]
                s["time_s"] = s.get("time_s", 0.0) + max(0.0, own - time_in)
                s["setup_s"] = s.get("setup_s", 0.0) + max(0.0, own_setup - setup_in)
            elif time_in:
                s["time_s"] = max(0.0, s.get("time_s", 0.0) - time_in)
                s["setup_s"] = max(0.0, s.get("setup_s", 0.0) - setup_in)
            s["time_s"] = max(0.0, s.get("time_s", 0.0) - s.get("setup_s", 0.0))
            if not s.get("setup_s"):
                s.pop("setup_s", None)
        self.setup["sessions"] = sum((s.get("setup_s", 0.0) for s in self.stats.values()), 0.0)
        self.setup["views"] = sum((self.of(n).get("time_s", 0.0) for n in dag.nodes
                                   if str(n.op) == "MaterializeViews"), 0.0)
        total = self.total_s() or 1.0
        for n in dag.nodes:
            self.of(n)["share"] = self.of(n).get("time_s", 0.0) / total
