"""The GPU backend: every node on the device, written against an array module ``xp``.

With ``xp = cupy`` (``ON GPU``) values live in GPU memory: convolutions are an im2col RawKernel
plus ``xp.matmul`` (cuBLAS), depthwise convolutions and pools their own RawKernels, the bias and
a following activation one fused kernel (runtime/windowed.py); the other ops are array code
mirroring the NumPy reference (runtime/xp_ops.py). Each weight array is copied to the device
once. Results live where the feeds live: host feeds give host results (full inference), device
feeds device results (the incremental executor's per-layer calls, whose views stay on the
device); ``host`` brings a result back.

With ``xp = numpy`` the same Python code runs on the host with the kernels compiled by gcc
(runtime/kernels.py): the emulated backend, a test fixture that checks this code without a GPU.
"""

from __future__ import annotations

import functools
import weakref

import numpy as np

from kryptondb.errors import BackendError
from kryptondb.graph.ir import Graph, Op
from kryptondb.runtime.base import Backend, as_asked, channels_first, check_feeds, plain
from kryptondb.runtime import windowed
from kryptondb.runtime.numpy_ops import KERNELS
from kryptondb.runtime.xp_ops import XP_OPS, activation

INSTALL = "pip install 'kryptondb[gpu]'"  # the extra names cupy-cuda12x (CUDA 12)


@functools.cache
def gpu_missing() -> str | None:
    """Why ``ON GPU`` cannot run here (CuPy not importable, no CUDA device), or None."""
    try:
        import cupy  # optional: only the GPU backend needs it
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return f"CuPy is not importable ({type(exc).__name__}: {exc}); install it with {INSTALL}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, no device
        return f"no CUDA device is available ({' '.join(str(exc).split())[:200]})"
    return None if count > 0 else "no CUDA device is available (0 devices found)"


def cupy_backend() -> "XpBackend":
    """``get_backend('cupy')``: the backend on the GPU, or a BackendError saying what is missing."""
    why = gpu_missing()
    if why is not None:
        raise BackendError(f"the GPU backend (ON GPU) cannot run here: {why}")
    import cupy  # optional: only the GPU backend needs it

    return XpBackend(cupy)


class XpBackend(Backend):
    """Runs graphs with ``xp`` arrays; the interface of the NumPy and onnxruntime backends."""

    name = "cupy"

    def __init__(self, xp):
        self.xp = xp
        self._fusions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._resident: dict[int, object] = {}

    # -- where arrays live ------------------------------------------------------------------
    def device(self, arr):
        """``arr`` on the device; a host array is copied once and kept as long as it lives
        (the incremental plans' stored views, the weights), so it must not change afterwards:
        views and weights never do."""
        xp = self.xp
        if not isinstance(arr, np.ndarray) or xp is np:
            return arr
        key = id(arr)
        if key not in self._resident:
            self._resident[key] = xp.asarray(arr)
            weakref.finalize(arr, self._resident.pop, key, None)
        return self._resident[key]

    def host(self, arr) -> np.ndarray:
        """A result as a NumPy array (a device-to-host copy with CuPy)."""
        return arr if isinstance(arr, np.ndarray) else self.xp.asnumpy(arr)

    def gather(self, padded, ys, xs, rh, rw, new=None):
        """ivm.gather.gather on the device: one kernel launch for a batch's contexts."""
        return windowed.gather(self, padded, ys, xs, rh, rw, new)

    # -- running ----------------------------------------------------------------------------
    def run(self, graph, feeds, outputs=None):
        asked = tuple(outputs or graph.outputs)
        outputs = plain(graph, asked)
        on_host = all(isinstance(v, np.ndarray) for v in feeds.values())
        values = channels_first(graph, check_feeds(graph, feeds, self.xp), self.xp)
        remaining = {k: len(v) for k, v in graph.consumers().items()}
        fused = self._fused(graph, outputs)
        for node in graph.nodes:
            if node.op is Op.INPUT or node.name in fused.values():
                continue
            out = self._node(graph, node, [values[i] for i in node.inputs], fused)
            values[fused.get(node.name, node.name)] = out
            for i in node.inputs:
                remaining[i] -= 1
                if remaining[i] == 0 and i not in outputs:
                    del values[i]
        values = as_asked(graph, values, asked, self.xp)
        return {k: self.host(values[k]) if on_host else values[k] for k in asked}

    def _fused(self, graph: Graph, outputs: tuple[str, ...]) -> dict[str, str]:
        """conv -> the activation fused into its bias kernel: the convolution's only user,
        when the convolution's own value is not wanted."""
        per_graph = self._fusions.setdefault(graph, {})
        if outputs not in per_graph:
            users, pairs = graph.consumers(), {}
            for n in graph.nodes:
                u = users[n.name]
                if n.op is Op.CONV and len(u) == 1 and n.name not in outputs and \
                        activation(graph[u[0]]) is not None:
                    pairs[n.name] = u[0]
            per_graph[outputs] = pairs
        return per_graph[outputs]

    def params(self, graph: Graph, node) -> list:
        """The node's weights on the device, copied once: the per-layer segments and the suffix
        of an incremental plan share the model's weight arrays, so they share the copies."""
        return [self.device(graph.weights[p]) for p in node.params]

    def _node(self, graph: Graph, node, xs: list, fused: dict[str, str]):
        xp = self.xp
        if node.op is Op.CONV:
            act = activation(graph[fused[node.name]]) if node.name in fused else None
            return windowed.conv(self, node, xs[0], *self.params(graph, node), act)
        if node.op is Op.MAXPOOL:
            return windowed.maxpool(self, node, xs[0])
        if node.op is Op.AVGPOOL:
            return windowed.avgpool(self, node, xs[0])
        if node.op in XP_OPS:
            return XP_OPS[node.op](xp, node, self.params(graph, node), xs)
        # rare ops (LRN, ConvTranspose, Resize, LayerNorm, GELU): the reference, on the host
        out = KERNELS[node.op](node, graph, [self.host(x) for x in xs])
        return xp.asarray(np.asarray(out, dtype=np.float32))

