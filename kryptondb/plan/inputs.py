"""What an occlusion explains, bound once: one image (scanned and preprocessed as before),
several images (an ``ImageSet``: a glob, a list of paths and names, or a table's path or name
column), or a tensor already in the model's input space (a ``.npy`` file or a ``?`` value,
(C, H, W) or (N, C, H, W), checked against the model's input); and BASELINE's value.

Parameter values (``?``) are read here as arrays, never as text: a value that is not an array of
real numbers, or does not fit, is a PlanError with a caret under its ``?``.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from kryptondb.catalog import RELATIONS
from kryptondb.errors import FileError, UnknownNameError
from kryptondb.files import check_regular
from kryptondb.lang import ast
from kryptondb.limits import current, how_to_raise
from kryptondb.media.tensors import read_npy
from kryptondb.plan.nodes import PlanNode, node
from kryptondb.plan.ops import Op
from kryptondb.plan.values import ImageSet, Tensor, VideoSet

_REAL = "biuf"  # bool, integers, floats
_GLOB = "*?["


def check_images(b, model, span, instead: str) -> None:
    """A PlanError under ``span`` when image files cannot become ``model``'s input through its
    preprocessing (the declared one, or the default for its input shape)."""
    shape = tuple(model.input_shape)
    pre = model.model.preprocess
    why = pre.refuses(shape) if pre is not None else "has no preprocessing for images"
    if why:
        raise b.fail(f"model {model.name} {why}; or {instead}", span)


def input_scan(b, s: ast.ExplainOcclusion, model) -> tuple[PlanNode, int, ImageSet | None]:
    """(the node whose value is the N x C x H x W inputs, N, the image set when several images
    were named)."""
    ref = s.image
    shape = tuple(model.input_shape)
    if not isinstance(ref, ast.TensorRef):
        check_images(b, model, ref.span, "explain tensors in its input space (OF TENSOR "
                                         "'<file.npy>' or OF ?)")
    if isinstance(ref, ast.Ref):
        if ref.quoted and ref.value.lower().endswith(".npy"):
            raise b.fail(f"{ref.value!r} is a NumPy file: write OF TENSOR {ref.value!r} (a "
                         "tensor in the model's input space)", ref.span)
        b.media_path(ref, "image")  # the image must exist before anything is planned
        img = node(Op.IMAGE_SCAN, **scan_args(ref))
        return node(Op.PREPROCESS, img, model=model, shape=shape), 1, None
    if isinstance(ref, ast.Images):
        images = image_set(b, ref)
        img = node(Op.IMAGE_SCAN, images=images)
        return node(Op.PREPROCESS, img, model=model, shape=shape), len(images), images
    tensor = input_tensor(b, ref, model)
    return node(Op.TENSOR_SCAN, tensor=tensor), tensor.shape[0], None


def scan_args(ref: ast.Ref) -> dict:
    """How a scan names its media in plans: as written (stable across machines)."""
    return {"source": ref.value, "catalog": not ref.quoted}


def image_set(b, ref: ast.Images) -> ImageSet:
    """The files of OF IMAGES / PREDICT IMAGES, resolved now (so a typo fails here, with a
    caret)."""
    if ref.table is not None:
        return _table_images(b, ref.table)
    paths, names = media_files(b, ref.refs, "image")
    _count(b, len(paths), "images", ref.span)
    return ImageSet(_written(ref), paths, names)


def video_set(b, ref: ast.Videos) -> VideoSet:
    """The files of RECOGNIZE ... IN VIDEOS, resolved now."""
    paths, names = media_files(b, ref.refs, "video")
    _count(b, len(paths), "videos", ref.span)
    return VideoSet(_written(ref), paths, names)


def _written(ref: ast.Images | ast.Videos) -> str:
    """How a set was written, without spaces (what EXPLAIN shows, with the count)."""
    written = ",".join(repr(r.value) if r.quoted else r.value for r in ref.refs)
    return f"({written})" if ref.listed else written


def image_files(b, refs) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(absolute paths, names as written or matched) of image references: catalog names,
    files, patterns (OF IMAGES, TUNE ... ON IMAGES)."""
    paths, names = media_files(b, refs, "image")
    _count(b, len(paths), "images", refs[0].span if refs else None)
    return paths, names


def media_files(b, refs, kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(absolute paths, names as written or matched) of ``kind`` references: catalog names,
    files, patterns. A pattern's matches are sorted, counted against the ``set_inputs`` limit
    and must be regular files; each error is at the pattern."""
    paths: list[str] = []
    names: list[str] = []
    for r in refs:
        if r.quoted and any(c in r.value for c in _GLOB):
            found = _matches(b, r, kind)
            paths += [os.path.abspath(f) for f in found]
            names += found
        else:
            paths.append(b.media_path(r, kind))
            names.append(r.value)
    return tuple(paths), tuple(names)


def _matches(b, r: ast.Ref, kind: str) -> list[str]:
    """The sorted files a pattern matches: at least one, at most the limit, all regular."""
    limit = current().set_inputs
    found = []
    for f in glob.iglob(os.path.expanduser(r.value)):
        found.append(f)
        if len(found) > limit:
            raise b.fail(f"pattern {r.value!r} matches more than {limit:,} files, over the "
                         f"set_inputs limit ({how_to_raise('set_inputs')})", r.span)
    if not found:
        raise b.fail(f"no {kind} file matches {r.value!r}", r.span)
    found.sort()
    for f in found:
        try:
            check_regular(f, f"{kind} file")
        except FileError as exc:
            raise b.fail(f"pattern {r.value!r}: {exc}", r.span) from None
    return found


def _count(b, n: int, what: str, span) -> None:
    limit = current().set_inputs
    if n > limit:
        raise b.fail(f"{n:,} {what} in one statement, over the set_inputs limit of {limit:,} "
                     f"({how_to_raise('set_inputs')})", span)


def _table_images(b, name: ast.Name) -> ImageSet:
    """A table's ``path`` column (files; the image column shows its ``name`` column when there
    is one), else its ``name`` column (images registered with LOAD IMAGE)."""
    table = _table(b, name)
    columns = table.column_names
    key = "path" if "path" in columns else "name" if "name" in columns else None
    if key is None:
        raise b.fail(f"table {name.value!r} has no path or name column to take images from (its "
                     f"columns: {', '.join(columns) or 'none'})", name.span)
    values = _strings(b, table, key, name)
    _count(b, len(values), "images", name.span)
    if key == "name":
        paths = [b.media_path(ast.Ref(v, False, name.span), "image") for v in values]
        return ImageSet(f"TABLE:{name.value}", tuple(paths), tuple(values))
    paths = [os.path.abspath(os.path.expanduser(v)) for v in values]
    for v, p in zip(values, paths):
        if not os.path.exists(p):
            raise b.fail(f"table {name.value!r}: image file {v!r} does not exist", name.span)
    shown = _strings(b, table, "name", name) if "name" in columns else values
    return ImageSet(f"TABLE:{name.value}", tuple(paths), tuple(shown))


def _table(b, name: ast.Name):
    if name.value.lower() in RELATIONS:
        return b.db.relation(name.value.lower())
    tables = b.db.names("table")
    if name.value not in tables:
        raise UnknownNameError("table", name.value, tables, b.text, name.span)
    return b.db.get_table(name.value)


def _strings(b, table, key: str, name: ast.Name) -> list[str]:
    values = table.column(key).to_pylist()
    if not values:
        raise b.fail(f"table {name.value!r} has no rows: no images to explain", name.span)
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v:
            raise b.fail(f"table {name.value!r}, row {i + 1}: the {key} is {v!r}, not a "
                         f"{'file path' if key == 'path' else 'name'}", name.span)
    return values


def input_tensor(b, ref: ast.TensorRef, model) -> Tensor:
    """OF TENSOR '<file.npy>' / OF ? as a (N, C, H, W) Tensor fitting the model's input."""
    src = ref.source
    if isinstance(src, ast.Param):
        what = f"parameter ?{src.index + 1}"
        array = as_array(b, b.param(src), what, src.span)
    else:
        what = f"tensor file {src.value!r}"
        try:
            array = read_npy(os.path.expanduser(src.value))
        except FileError as exc:
            raise b.fail(str(exc), src.span) from None
    shape = tuple(model.input_shape)
    batch = array[None] if array.ndim == len(shape) else array
    if batch.ndim != len(shape) + 1 or batch.shape[1:] != shape or not len(batch):
        want = " x ".join(map(str, shape))
        raise b.fail(f"{what} has shape {_shape(array)}: model {model.name} takes {want} "
                     f"(one input) or N x {want} (N >= 1)", src.span)
    array = batch
    _finite(b, array, what, src.span)
    return Tensor(array, f"?{src.index + 1}" if isinstance(src, ast.Param) else repr(src.value))


def baseline(b, s: ast.ExplainOcclusion, inputs: tuple[int, ...]) -> float | Tensor | None:
    """BASELINE's value in the model's input space: a number, or a ``?`` value broadcastable to
    the N x C x H x W inputs (a number, (C, H, W) for all inputs, (N, C, H, W) one per input)."""
    v = s.baseline
    if not isinstance(v, ast.Param):
        return v
    what = f"BASELINE ?{v.index + 1}"
    array = as_array(b, b.param(v), what, v.span)
    _finite(b, array, what, v.span)
    if array.ndim == 0:
        return float(array)
    try:
        fits = array.ndim <= len(inputs) and np.broadcast_shapes(array.shape, inputs) == inputs
    except ValueError:
        fits = False
    if not fits:
        raise b.fail(f"{what} has shape {_shape(array)}, which does not broadcast to the inputs' "
                     f"{_shape(np.empty(inputs, np.uint8))}: give a number, C x H x W (every "
                     "input) or N x C x H x W (one per input)", v.span)
    return Tensor(array, f"?{v.index + 1}")


def as_array(b, value, what: str, span) -> np.ndarray:
    """A parameter's value (a NumPy array, a torch tensor, nested lists, a number) as a float32
    array; anything else is a PlanError under its ``?``."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise b.fail(f"{what}: cannot read a {type(value).__name__} as an array ({exc})",
                     span) from None
    if array.dtype.kind not in _REAL or array.dtype.fields:
        raise b.fail(f"{what} is {_kind(value, array)}, not real numbers (give a NumPy array, "
                     "a tensor or a number)", span)
    with np.errstate(over="ignore"):  # beyond float32: inf, which the callers refuse
        return array.astype(np.float32)


def _kind(value, array: np.ndarray) -> str:
    if array.ndim == 0 and array.dtype.kind in "OSU":
        return f"a {type(value).__name__}"
    return f"an array of {array.dtype}"


def _finite(b, array: np.ndarray, what: str, span) -> None:
    if not np.isfinite(array).all():
        raise b.fail(f"{what} holds NaN or infinite values", span)


def _shape(array: np.ndarray) -> str:
    return " x ".join(map(str, array.shape)) or "() (a number)"
