"""The backend interface: run any Graph (a whole model, a fused segment or a single operator) on
a batch of any size. Implementations: runtime/backends.py (NumPy, onnxruntime), runtime/gpu.py
(CuPy)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from kryptondb.graph.ir import Graph


class Backend:
    name = "abstract"
    # A backend that keeps the incremental plans' views on its device gathers contexts there:
    # gather(padded, ys, xs, rh, rw, new) like kryptondb.ivm.gather.gather (runtime/gpu.py);
    # None: the plans gather with NumPy on the host.
    gather = None
    # Whether incremental plans on the host feed windowed layers' contexts channels-last
    # (graph inputs made with input_node(..., channels_last=True)); every backend runs such
    # inputs, this says which prefer them.
    channels_last = False

    def run(self, graph: Graph, feeds: Mapping[str, np.ndarray],
            outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Evaluate ``graph`` on batched ``feeds`` (one array per INPUT node)."""
        raise NotImplementedError

    def host(self, arr) -> np.ndarray:
        """A result of ``run`` as a NumPy array (identity, but for a device backend)."""
        return arr

    def for_segments(self) -> "Backend":
        """The variant to use for many small per-layer graphs run in turn (incremental plans)."""
        return self

    def concurrent(self) -> tuple[int, "Backend"]:
        """(workers, backend): how many independent batches to run at once, and the variant
        each of them uses. One by default: a backend that threads inside each call gains
        nothing from running calls side by side."""
        return 1, self
