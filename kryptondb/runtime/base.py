"""The backend interface: run any Graph (a whole model, a fused segment or a single operator) on
a batch of any size. Implementations: runtime/backends.py (NumPy, onnxruntime), runtime/gpu.py
(CuPy)."""

from __future__ import annotations

import threading
from typing import Mapping, Sequence

import numpy as np

from kryptondb.errors import ShapeError
from kryptondb.graph.ir import Graph
from kryptondb.graph.ops import fed_shape


class SetupClock:
    """Seconds this process spent building backend sessions (every backend, every thread):
    EXPLAIN PLAN ANALYZE reports them as setup, apart from the inference that triggered them."""

    def __init__(self):
        self.seconds, self.count = 0.0, 0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds
            self.count += 1


SESSIONS = SetupClock()


def ort_options(threads: int | None = None, spinning: bool = True):
    """onnxruntime SessionOptions on ``threads`` (None: its default); without ``spinning``
    its idle workers sleep and it keeps no memory arena (for the many small sessions a plan
    keeps alive: idle spinners starve the busy one, idle arenas add up)."""
    import onnxruntime as ort  # ~25 ms to import; only onnxruntime sessions need it

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.enable_cpu_mem_arena = False
    return opts


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
    # Whether incremental plans run large 3x3 convolutions on channels-last contexts by
    # Winograd's F(2x2, 3x3) or F(4x4, 3x3) with this backend's help (runtime/winograd.py).
    winograd = False

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


def check_feeds(graph: Graph, feeds: Mapping[str, np.ndarray], xp=np) -> dict:
    """Every graph input fed, with a leading batch axis and the right per-sample shape, as a
    contiguous float32 array of ``xp`` (NumPy, or CuPy for a device backend)."""
    out = {}
    for name in graph.inputs:
        if name not in feeds:
            raise ShapeError(f"graph {graph.name!r}: no value fed for input {name!r}")
        arr = xp.asarray(feeds[name], dtype=np.float32)
        want = fed_shape(graph[name])
        if arr.shape[1:] != want:
            raise ShapeError(f"graph {graph.name!r}: input {name!r} must be N x "
                             f"{' x '.join(map(str, want))}, got {' x '.join(map(str, arr.shape))}")
        out[name] = xp.ascontiguousarray(arr)
    return out


# An output asked for as ``name + NHWC`` comes back channels-last, (N, H, W, C): incremental
# plans take a layer's new values so where every reader gathers them into channels-last
# contexts (ivm/incremental.py); onnxruntime folds the transpose into its NCHWc ReorderOutput.
# A model's own tensor may end in NHWC too (names come from imported files): a name the graph
# has is always that tensor, as it is.
NHWC = "::nhwc"


def nhwc_source(graph: Graph, output: str) -> str | None:
    """The graph's name whose value ``output`` asks for channels-last, or None where it asks
    for a value as it is."""
    if output in graph or not output.endswith(NHWC):
        return None
    return output.removesuffix(NHWC)


def plain(graph: Graph, outputs: Sequence[str]) -> tuple[str, ...]:
    """The graph's names of ``outputs`` (an NHWC one without its suffix)."""
    return tuple(nhwc_source(graph, o) or o for o in outputs)


def as_asked(graph: Graph, values: dict, outputs: Sequence[str], xp=np) -> dict:
    """``values`` (by graph name) under the names asked for, NHWC ones transposed."""
    return {o: xp.ascontiguousarray(values[src].transpose(0, 2, 3, 1))
            if (src := nhwc_source(graph, o)) else values[o] for o in outputs}


def channels_first(graph: Graph, values: dict, xp=np) -> dict:
    """``values`` with every channels-last input (N, H, W, C) as the graph reads it
    (N, C, H, W), for backends that run nodes one by one."""
    for name in graph.inputs:
        if graph[name].attr("channels_last"):
            values[name] = xp.ascontiguousarray(values[name].transpose(0, 3, 1, 2))
    return values
