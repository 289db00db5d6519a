"""The CPU backends (the NumPy reference, onnxruntime) and ``get_backend`` by name, the GPU
backend included (runtime/gpu.py); the interface is runtime/base.py's Backend. Heavy imports
happen inside the backend that needs them."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
import time
import weakref
from typing import Mapping

import numpy as np

from kryptondb.errors import BackendError
from kryptondb.graph.ir import Graph, Op
from kryptondb.runtime.base import (SESSIONS, Backend, as_asked, channels_first,  # noqa: F401
                                    check_feeds, ort_options, plain)
from kryptondb.runtime.gpu import cupy_backend
from kryptondb.runtime import winograd
from kryptondb.runtime.numpy_ops import KERNELS
from kryptondb.runtime.onnx_export import onnx_input, to_onnx, weight_arrays


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class NumpyBackend(Backend):
    """The reference: each node by its NumPy kernel, freeing values once all users ran."""

    name = "numpy"

    def run(self, graph, feeds, outputs=None):
        outputs = tuple(outputs or graph.outputs)
        names = plain(graph, outputs)
        values = channels_first(graph, check_feeds(graph, feeds))
        remaining = {k: len(v) for k, v in graph.consumers().items()}
        for node in graph.nodes:
            if node.op is Op.INPUT:
                continue
            xs = [values[i] for i in node.inputs]
            values[node.name] = np.asarray(KERNELS[node.op](node, graph, xs), dtype=np.float32)
            for i in node.inputs:
                remaining[i] -= 1
                if remaining[i] == 0 and i not in names:
                    del values[i]
        return as_asked(graph, values, outputs)


class OnnxRuntimeBackend(Backend):
    """Exports each graph once to an ONNX model with a symbolic batch axis and keeps one
    onnxruntime session per (graph, outputs); later calls only feed arrays."""

    name = "onnxruntime"
    # incremental plans feed the windowed layers' contexts channels-last: gathered 2-4x
    # faster (rows of W x C values, not W), read at no cost (see ivm/gather.py)
    channels_last = True
    # ... and run large 3x3 convolutions on them by Winograd (runtime/winograd.py): 1.4-1.8x
    # faster than its direct convolution on one core from 256 channels
    winograd = True

    def __init__(self, threads: int | None = None, spinning: bool = True, borrow: bool = False):
        self.threads, self.spinning, self.borrow = threads, spinning, borrow
        self._sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._segments: OnnxRuntimeBackend | None = None
        self._single: OnnxRuntimeBackend | None = None
        self._lock = threading.Lock()

    def for_segments(self) -> "OnnxRuntimeBackend":
        # Incremental plans keep dozens of small sessions alive; if idle sessions' workers spin,
        # they starve the busy one (measured: 3x slower on ResNet18). A whole-model session is
        # faster with spinning (25-60% at batch 1-16), so only segments turn it off. Segments
        # are pieces of a model: their sessions borrow its weights (see _borrowing).
        if not self.spinning and self.borrow:
            return self
        if self._segments is None:
            self._segments = OnnxRuntimeBackend(self.threads, spinning=False, borrow=True)
        return self._segments

    def concurrent(self) -> tuple[int, "OnnxRuntimeBackend"]:
        # Incremental plans spend a fifth of their time in NumPy gathers (one core) and the
        # rest in many small per-layer calls that two threads split poorly. One batch per core,
        # each call on one thread, keeps every core busy: measured 1.35x on ResNet18 at tau
        # 0.5 and 1.2x on exact MobileNetV2 (2 cores), identical results. The variant borrows
        # the model's weights: it runs the global suffix, a piece of the model.
        workers = min(self.threads or usable_cores(), usable_cores())
        if self._single is None:
            self._single = OnnxRuntimeBackend(threads=1 if workers > 1 else self.threads,
                                              borrow=True)
        return workers, self._single

    def session(self, graph: Graph, outputs: tuple[str, ...]):
        with self._lock:  # concurrent batches must not build the same session twice
            per_graph = self._sessions.setdefault(graph, {})
            if outputs not in per_graph:
                t = time.perf_counter()
                per_graph[outputs] = _onnxruntime(graph, "load", self._make_session, graph,
                                                  outputs)
                SESSIONS.add(time.perf_counter() - t)
            return per_graph[outputs]

    def _make_session(self, graph, outputs):
        import onnxruntime as ort  # ~25 ms to import; only onnxruntime sessions need it

        opts = ort_options(self.threads, self.spinning)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if any(n.op is Op.PAD for n in graph.nodes):
            # onnxruntime folds a Pad into the pool after it, changing the result (MaxPool pads
            # with -inf, not the Pad's value; ceil-mode sizes shift): keep the graph as written
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3  # opset-17 shape inference warns on ceil-mode pools; harmless
        if self.borrow:
            proto, borrowed = _borrowing(opts, graph, to_onnx(graph, outputs, FED_BYTES))
        else:
            proto, borrowed = to_onnx(graph, outputs).SerializeToString(), ({}, [])
        sess = ort.InferenceSession(proto, opts, providers=["CPUExecutionProvider"])
        # onnxruntime keeps the serialized model for a provider fallback a CPU-only session
        # never makes: for VGG16 that is 528 MB per session, held as long as the session.
        if getattr(sess, "_model_bytes", None) is not None:
            sess._model_bytes = None
        sess.kryptondb_fed, sess.kryptondb_borrowed = borrowed  # alive as long as the session
        del proto
        release_freed_memory()  # the export's and the parse's transient copies of the weights
        return sess

    def run(self, graph, feeds, outputs=None):
        outputs = tuple(outputs or graph.outputs)
        values = {onnx_input(graph[k]): v for k, v in check_feeds(graph, feeds).items()}
        sess = self.session(graph, outputs)
        result = _onnxruntime(graph, "run", sess.run, list(outputs), values | sess.kryptondb_fed)
        return dict(zip(outputs, result))


def _onnxruntime(graph: Graph, what: str, call, *args):
    """``call(*args)``, with onnxruntime's own exceptions (a model it refuses, a kernel that
    fails) as a BackendError naming the graph."""
    try:
        return call(*args)
    except Exception as exc:
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        message = " ".join(str(exc).split())[:600]
        raise BackendError(f"onnxruntime could not {what} graph {graph.name!r}: "
                           f"{message}") from None


@functools.lru_cache(maxsize=None)
def glibc(name: str):
    """The C library's function ``name`` (malloc_trim, mallopt), or None where there is no
    such function (not glibc)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand memory freed inside the process back to the system (glibc's malloc_trim): large
    transients (a session's exported model, a pass's outputs) otherwise stay resident as free
    heap, for VGG16 hundreds of MB. Elsewhere (no glibc) a no-op."""
    trim = glibc("malloc_trim")
    if trim is not None:
        trim(0)


FED_BYTES = 16 << 20  # segment sessions get weights this large fed at each run, never copied


def _borrowing(opts, graph: Graph, model) -> tuple[bytes, tuple[dict, list]]:
    """Segment sessions (per-layer graphs, the global suffix, the views pass) use the graph's
    own weight arrays instead of copies: without this, every session on a piece of a model
    holds its own copy of that piece (VGG16's classifier: 500 MB per suffix session). Large
    weights are graph inputs fed at each run (a session built with them as initializers
    needs two more transient copies); the others are initializers the session borrows
    (prepacking still copies those of MatMul and Gemm: at most FED_BYTES each).
    Returns the serialized model and (fed arrays by input name, borrowed OrtValues)."""
    import onnxruntime as ort  # ~25 ms to import; only onnxruntime sessions need it

    fed, borrowed = {}, []
    inputs = {i.name for i in model.graph.input}
    for name, arr in weight_arrays(graph, model).items():
        if name in inputs:
            fed[name] = arr
        elif arr.dtype == np.float32 and arr.flags.c_contiguous:
            borrowed.append(ort.OrtValue.ortvalue_from_numpy(arr))
            opts.add_initializer(name, borrowed[-1])
    return model.SerializeToString(), (fed, borrowed)


_BACKENDS = {"numpy": NumpyBackend, "onnxruntime": OnnxRuntimeBackend, "cupy": cupy_backend}
_ALIASES = {"ort": "onnxruntime", "cpu": "onnxruntime", "reference": "numpy", "gpu": "cupy"}
_INSTANCES: dict[str, Backend] = {}


def runs_winograd(name: str | Backend | None, allowed: bool | None = True) -> bool:
    """Whether incremental plans on the backend ``name`` (None: the default, onnxruntime) run
    large 3x3 convolutions by Winograd (runtime/winograd.py), without starting the backend (a
    GPU's); never where ``allowed`` is False (a plan's ``winograd`` argument: memory too tight
    for it), the one value a scan may carry that turns it off."""
    if allowed is False:
        return False
    if isinstance(name, Backend):
        return winograd.enabled(name)
    return winograd.enabled(_BACKENDS.get(_key(name or "onnxruntime")))


def _key(name: str) -> str:
    """A backend's name as _BACKENDS spells it (aliases resolved, any case)."""
    key = str(name).lower()
    return _ALIASES.get(key, key)


def get_backend(name: str | Backend = "onnxruntime") -> Backend:
    """A shared backend instance by name ('numpy', 'onnxruntime', 'cupy'; aliases 'ort', 'cpu',
    'gpu'). 'cupy' without CuPy or a CUDA device: a BackendError saying which is missing."""
    if isinstance(name, Backend):
        return name
    key = _key(name)
    if key not in _BACKENDS:
        raise BackendError(f"no backend {name!r}; known: {', '.join(sorted(_BACKENDS))}")
    if key not in _INSTANCES:
        _INSTANCES[key] = _BACKENDS[key]()
    return _INSTANCES[key]
