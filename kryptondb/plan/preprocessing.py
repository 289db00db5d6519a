"""CREATE MODEL's PREPROCESS: the declaration as written, checked, and made the ``Preprocess``
the model will run (kryptondb/media/images.py) for the input the model file declares.

Values are checked first (positive STD and SCALE, sides in range, a crop that fits in the
resize, as many MEAN as STD values), then against the model's input: IMAGENET needs a square
3-channel input; MEAN and STD have one value per channel; RESIZE and CROP make images of the
input's height and width (a bare RESIZE r, the shorter side, needs a CROP). Each error has a
caret under the step or value at fault. Without PREPROCESS nothing is declared: the model runs
its default (kryptondb/model/model.py default_preprocess).
"""

from __future__ import annotations

import os

from kryptondb.lang import ast
from kryptondb.media.images import Preprocess
from kryptondb.model.model import load_model

MAX_SIDE = 1 << 16  # RESIZE and CROP sides, in pixels
LARGEST = 1e6  # SCALE, STD and |MEAN| at most (and STD at least 1 / LARGEST): inputs stay finite


def bind_preprocess(b, s: ast.CreateModel) -> Preprocess | None:
    """The declared preprocessing of ``s`` for the model file it names, or None (undeclared)."""
    d = s.preprocess
    if d is None:
        return None
    _check_values(b, d)
    shape = load_model(os.path.abspath(os.path.expanduser(s.path.value))).input_shape
    if d.kind == "none":
        return Preprocess.none()
    if d.kind == "imagenet":
        if len(shape) != 3 or shape[0] != 3 or shape[1] != shape[2]:
            raise b.fail(f"IMAGENET is for square 3-channel inputs (resize, centre crop, ImageNet "
                         f"mean and std); {s.path.value!r} takes {_dims(shape)} inputs: declare "
                         "NONE, or the steps (RESIZE, CROP, SCALE, MEAN, STD)", d.span)
        return Preprocess.imagenet(shape[1])
    return _steps(b, d, shape)


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _at(d: ast.Preprocessing, key: str) -> ast.Span:
    return d.spans.get(key) or d.span


def _check_values(b, d: ast.Preprocessing) -> None:
    """What is wrong whatever the model: sides, SCALE, STD, the counts, crop against resize."""
    for key, word in (("resize", "RESIZE"), ("crop", "CROP")):
        for side in getattr(d, key) or ():
            if not 1 <= side <= MAX_SIDE:
                raise b.fail(f"{word} {side} is out of range: sides are 1 to {MAX_SIDE} pixels",
                             _at(d, key))
    if d.scale is not None and not 0 < d.scale <= LARGEST:
        raise b.fail(f"SCALE must be positive, at most {LARGEST:g} (pixels in [0, 1] are "
                     f"multiplied by it), got {d.scale:g}", _at(d, "scale.0"))
    for i, v in enumerate(d.std or ()):
        if not 1 / LARGEST <= v <= LARGEST:
            raise b.fail(f"STD values must be positive, from {1 / LARGEST:g} to {LARGEST:g} "
                         f"(each channel is divided by its STD), got {v:g}", _at(d, f"std.{i}"))
    for i, v in enumerate(d.mean or ()):
        if abs(v) > LARGEST:
            raise b.fail(f"MEAN values must be from {-LARGEST:g} to {LARGEST:g}, got {v:g}",
                         _at(d, f"mean.{i}"))
    if d.mean is not None and d.std is not None and len(d.mean) != len(d.std):
        raise b.fail(f"MEAN has {len(d.mean)} values and STD {len(d.std)}: give one of each "
                     "per channel", _at(d, "std"))
    if d.crop is not None and d.resize is not None:
        bound = d.resize * 2 if len(d.resize) == 1 else d.resize
        crop = d.crop * 2 if len(d.crop) == 1 else d.crop
        if any(c > r for c, r in zip(crop, bound)):
            raise b.fail(f"CROP {' '.join(map(str, d.crop))} is larger than RESIZE "
                         f"{' '.join(map(str, d.resize))}: the crop is taken from the resized "
                         "image", _at(d, "crop"))


def _steps(b, d: ast.Preprocessing, shape: tuple[int, ...]) -> Preprocess:
    """RESIZE, CROP, SCALE, MEAN and STD for a model of input ``shape``."""
    count = len(d.mean if d.mean is not None else d.std or ())
    mean, std = d.mean or (0.0,) * count, d.std or (1.0,) * count
    imaging = d.resize is not None or d.crop is not None or count
    if imaging and len(shape) != 3:
        raise b.fail(f"the model takes {_dims(shape)} inputs, not images: RESIZE, CROP, MEAN "
                     "and STD do not apply (declare NONE or SCALE)", d.span)
    if count and count != shape[0]:
        key = "mean" if d.mean is not None else "std"
        channels = f"{shape[0]} channel{'s' * (shape[0] != 1)}"
        raise b.fail(f"{key.upper()} has {count} value{'s' * (count != 1)}, but the model's "
                     f"{_dims(shape)} input has {channels}: give one per channel", _at(d, key))
    if imaging:
        _check_size(b, d, shape[1:])
    side = lambda v: None if v is None else v[0] if len(v) == 1 else v  # noqa: E731
    return Preprocess(side(d.resize), side(d.crop), mean, std,
                      1.0 if d.scale is None else d.scale)


def _check_size(b, d: ast.Preprocessing, size: tuple[int, int]) -> None:
    """RESIZE and CROP make images of the model's (height, width); nothing declared: images
    must come in that size (checked when one is read)."""
    h, w = size
    if d.crop is not None:
        made = d.crop * 2 if len(d.crop) == 1 else d.crop
        if tuple(made) != (h, w):
            raise b.fail(f"CROP {' '.join(map(str, d.crop))} makes {made[0]}x{made[1]} inputs; "
                         f"the model takes {h}x{w} (height x width)", _at(d, "crop"))
    elif d.resize is not None and len(d.resize) == 1:
        raise b.fail(f"RESIZE {d.resize[0]} sets the shorter side only, so images would come in "
                     f"many sizes: add CROP {h}{'' if h == w else f' {w}'}, or resize to "
                     f"exactly RESIZE {h} {w}", _at(d, "resize"))
    elif d.resize is not None and tuple(d.resize) != (h, w):
        raise b.fail(f"RESIZE {d.resize[0]} {d.resize[1]} makes {d.resize[0]}x{d.resize[1]} "
                     f"inputs; the model takes {h}x{w} (height x width)", _at(d, "resize"))
