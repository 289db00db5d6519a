"""The house's floor plan: KryptonDB's rooms (folders and top-level modules), lowest first.

A room may import only rooms listed before it, never one after it: the query's path goes up
this list (text -> lang -> plan -> rewrite -> exec, which calls down into obe/orv -> ivm ->
model -> runtime -> graph), and the helpers everyone needs sit at the bottom. tests/test_layers.py
parses every module's imports (top-level and inside functions) and fails on an import of a later
room, which also rules out cycles between rooms.

Function-local imports remain only for optional or slow-to-import third-party packages
(tests/test_layers.py's LAZY: onnx with google.protobuf, onnxruntime, av, matplotlib, scipy,
skimage, duckdb, prompt_toolkit, dask, distributed; cupy, torch, captum, pandas, polars), each
with a one-line reason, so that `import kryptondb` stays light.
"""

from __future__ import annotations

ROOMS: tuple[str, ...] = (
    # files shipped inside the wheel: the bundled image, the grammar, CUDA kernels
    "data", "grammar", "kernels",
    # helpers every room may use
    "version", "errors", "format", "progress", "limits", "files", "tables",
    # the CNN: its graph IR, how tensors are computed, where inputs come from, models
    "graph",      # IR, shape inference, BN folding, the graph builder
    "runtime",    # backends (onnxruntime, NumPy kernels), ONNX export, worker pools
    "media",      # images and video frames
    "model",      # loading models (zoo, checkpoints, ONNX import), binding names to digests
    # the methods
    "ivm",        # incremental view maintenance over per-layer feature maps
    "approx",     # approximation math: drill-down geometry, SSIM
    "obe",        # occlusion-based explanations: scan spec -> heatmap, tuning
    "orv",        # object recognition in videos
    "result",     # what a statement returns
    "dist",       # the same work on a Dask cluster: tasks, model shipping, per-worker time
    # the database
    "catalog",    # on-disk catalog: models, media, tables, views
    "lang",       # the query language: grammar, parser, AST
    "sql",        # plain SELECT over results, in a DuckDB sandbox
    "plan",       # binding, typed plan IR, EXPLAIN text
    "rewrite",    # one rule per module
    "exec",       # runs physical plans: operators are thin adapters over obe/, orv/
    "attr",       # Captum's attribution API (Occlusion) over the occlusion driver
    "viz",        # plan pictures (SVG, DOT, HTML)
    # the doors
    "connection",  # the query pipeline: text in, a Result out
    "__init__",    # the public API: connect(), execute(), load_model() ...
    "repl", "cli", "__main__", "layers",
)


def room(module: str) -> str:
    """The room of a dotted module name inside the package: ``kryptondb.ivm.gather`` -> ``ivm``,
    ``kryptondb.errors`` -> ``errors``, ``kryptondb`` -> ``__init__``."""
    parts = module.split(".")
    if parts[0] != "kryptondb":
        raise ValueError(f"{module!r} is not a kryptondb module")
    return parts[1] if len(parts) > 1 else "__init__"


def rank(name: str) -> int:
    """Position of a room in ROOMS (lower: more basic)."""
    return ROOMS.index(name)
