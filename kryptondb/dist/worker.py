"""What runs on a Dask worker: the model cache keyed by digest, the backend with the worker's
share of the cores, and the wrapper every task runs in (its time, its worker, its errors made
portable). Nothing here knows the database: a task gets arrays and returns arrays.

The model reaches each worker once: the client scatters its parts to every worker
(kryptondb/dist/cluster.py) and tasks carry the digest and a reference to them; the first task
on a worker builds the Model, the next ones find it in ``_MODELS``.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType

from kryptondb.errors import ClusterError, KryptonError
from kryptondb.graph.ir import Graph
from kryptondb.limits import applied
from kryptondb.model.model import Model
from kryptondb.runtime.backends import get_backend, glibc, usable_cores

_MODELS: dict[str, Model] = {}   # this worker's models, by digest
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelParts:
    """A Model as plain picklable parts (a Graph keeps its weights in a read-only mapping)."""

    name: str
    graph: tuple  # (name, nodes, outputs, weights as a dict)
    preprocess: object
    weights: str
    labels: tuple | None


def parts_of(model: Model) -> ModelParts:
    g = model.graph
    return ModelParts(model.name, (g.name, g.nodes, g.outputs, dict(g.weights)),
                      model.preprocess, model.weights, model.labels)


def model_for(digest: str, parts: ModelParts) -> Model:
    """The worker's Model of ``digest``, built from ``parts`` the first time."""
    with _LOCK:
        if digest not in _MODELS:
            name, nodes, outputs, weights = parts.graph
            graph = Graph(name, nodes, outputs, MappingProxyType(weights),
                          MappingProxyType({n.name: i for i, n in enumerate(nodes)}))
            _MODELS[digest] = Model(parts.name, graph, parts.preprocess, parts.weights,
                                    parts.labels)
        return _MODELS[digest]


def threads(hosts: dict[str, int], address: str) -> int:
    """This worker's share of its machine's cores: the cores over the workers on its host."""
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return share_of(hosts.get(host, 1))


def share_of(workers: int) -> int:
    """Cores per worker when ``workers`` workers share this machine (at least one)."""
    return max(1, usable_cores() // max(1, workers))


def backend_for(name: str, share: int):
    """The backend ``name`` on this worker. The worker process's shared onnxruntime backend
    gets ``share`` intra-op threads before its first session (onnxruntime ignores
    OMP_NUM_THREADS), so every work function that asks for it by name runs on its share."""
    ort = get_backend("onnxruntime")
    with _LOCK:
        if ort.threads is None:
            ort.threads = share
            allocate_as_one_process()
    return get_backend(name)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_FROM = 32 << 20  # glibc's own ceiling for its sliding mmap threshold on 64-bit


def allocate_as_one_process() -> bool:
    """Undo the allocator setting a Dask nanny gives its workers: ``MALLOC_TRIM_THRESHOLD_``
    (65536 by default) also freezes glibc's mmap threshold at 128 KiB, so every feature map
    above it is a fresh mmap and its pages fault in again on every use. Measured on ResNet18
    P16 S8: 2.2 s of system time per image in a worker against 0.15 s in one process, most of
    the 1-worker gap (docs/scale-out.md). The thresholds a single process reaches on its own
    are set back; kryptondb.runtime.backends.release_freed_memory still hands large frees back.
    True where it applied (glibc, and the variable set)."""
    mallopt = glibc("mallopt")
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_FROM) and mallopt(M_TRIM_THRESHOLD, 2 * MMAP_FROM))


@dataclass(frozen=True)
class Failure:
    """A KryptonError raised in a task, as plain data: rebuilt on the client with the same class
    and message (an exception's own pickling calls its constructor with its message only)."""

    module: str
    name: str
    args: tuple
    attrs: dict = field(default_factory=dict)


def portable(exc: KryptonError) -> Failure:
    attrs = {k: v for k, v in vars(exc).items() if isinstance(v, (str, int, float, tuple))}
    return Failure(type(exc).__module__, type(exc).__qualname__, exc.args, attrs)


def rebuilt(f: Failure) -> KryptonError:
    """The client-side KryptonError of a task's Failure (only kryptondb's own classes)."""
    cls = KryptonError
    if f.module.split(".")[0] == "kryptondb":
        found = getattr(importlib.import_module(f.module), f.name, None)
        if isinstance(found, type) and issubclass(found, KryptonError):
            cls = found
    exc = cls.__new__(cls)
    exc.args = f.args
    vars(exc).update(f.attrs)
    return exc


@dataclass(frozen=True)
class Outcome:
    """What a task sends back: its value or its Failure, where and how long it ran."""

    value: object
    failure: Failure | None
    worker: str
    pid: int
    seconds: float


def call(fn, args: tuple, hosts: dict[str, int], limits) -> Outcome:
    """Run ``fn(share, *args)`` on this worker (``share``: its intra-op threads) under the
    client's ``limits`` (kryptondb.limits: image pixels, tensor bytes ...)."""
    # distributed is imported lazily (~1 s); this runs only inside a Dask worker
    from distributed import get_worker

    address = get_worker().address
    t = time.perf_counter()
    share = threads(hosts, address)
    backend_for("onnxruntime", share)
    try:
        with applied(limits):
            value, failure = fn(share, *args), None
    except KryptonError as exc:
        value, failure = None, portable(exc)
    return Outcome(value, failure, address, os.getpid(), time.perf_counter() - t)


def lost(address: str, exc: BaseException) -> ClusterError:
    """A task the cluster could not finish (its worker died too often, it was cancelled)."""
    return ClusterError(f"cluster {address}: a task failed: {type(exc).__name__}: {exc}")
