"""Reading images from files and turning them into a model's input tensor."""

from __future__ import annotations

import math
import numbers
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from kryptondb.errors import ImageError, KryptonError, ShapeError
from kryptondb.files import open_regular, user_path
from kryptondb.limits import check_size, current, how_to_raise

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Beyond this many pixels the resized image is not made whole: only the centre crop's source
# region is resized. Photos never get there (at 256, an aspect ratio of 256:1); a 1 x 60000
# image would become 256 x 15 million pixels.
WHOLE_RESIZE_PIXELS = 1 << 24


@dataclass(frozen=True, slots=True)
class Preprocess:
    """How an image becomes a model input, in four steps, each of which may be left out:

    1. ``resize``: the shorter side to ``resize`` pixels (bilinear, keeping the aspect ratio),
       or the whole image to exactly ``(height, width)``; None: not resized;
    2. ``crop``: the centre ``crop`` x ``crop`` (or ``(height, width)``) pixels; None: none;
    3. pixels to [0, 1], times ``scale``;
    4. ``(x - mean) / std`` per channel; ``mean`` and ``std`` empty: not normalised.

    An image is read as grey (PIL's "L") when ``mean`` has one value, else as RGB. The default is
    torchvision's ImageNet evaluation transform; ``str()`` is the KQL that declares it
    (``CREATE MODEL m FROM 'm.onnx' PREPROCESS ...``, docs/models.md).

    >>> str(Preprocess()), str(Preprocess.none()), str(Preprocess.scaled(255))
    ('IMAGENET', 'NONE', 'SCALE 255')
    >>> str(Preprocess(resize=(28, 28), crop=None, mean=(0.5,), std=(0.5,)))
    '(RESIZE 28 28 MEAN (0.5) STD (0.5))'
    """

    resize: int | tuple[int, int] | None = 256
    crop: int | tuple[int, int] | None = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    scale: float = 1.0

    def __post_init__(self):
        for name in ("resize", "crop"):
            object.__setattr__(self, name, _side(getattr(self, name), name, name == "crop"))
        for name in ("mean", "std"):
            object.__setattr__(self, name, _numbers(getattr(self, name), name))
        if len(self.mean) != len(self.std):
            raise KryptonError(f"Preprocess mean and std must have one value per channel each, "
                               f"got {len(self.mean)} and {len(self.std)}")
        if not isinstance(self.scale, numbers.Real) or isinstance(self.scale, bool) \
                or not math.isfinite(self.scale) or self.scale <= 0:
            raise KryptonError(f"Preprocess scale must be a positive number, got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        if self.crop is not None and self.resize is not None and \
                not all(c <= r for c, r in zip(_pair(self.crop), self.resized_bound)):
            raise KryptonError(f"Preprocess crop {self.crop} is larger than its resize "
                               f"{self.resize}: the crop must fit in the resized image")

    @staticmethod
    def imagenet(side: int = 224) -> "Preprocess":
        """torchvision's ImageNet transform for a ``side`` x ``side`` input: the shorter side to
        side * 256 / 224, the centre crop, ImageNet mean and std."""
        return Preprocess(resize=side * 256 // 224, crop=side)

    @staticmethod
    def none() -> "Preprocess":
        """Images as [0, 1] floats, neither resized nor normalised; tensors as they are."""
        return Preprocess(None, None, (), ())

    @staticmethod
    def scaled(scale: float) -> "Preprocess":
        """Images as [0, 1] floats times ``scale`` (255: the model takes 0..255), not resized."""
        return Preprocess(None, None, (), (), scale)

    @property
    def resized_bound(self) -> tuple[int, int]:
        """What a crop must fit in: (r, r) for a shorter side r, else the (height, width)."""
        return _pair(self.resize)

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) of the images it makes; None: an image keeps its own size."""
        if self.crop is not None:
            return _pair(self.crop)
        return self.resize if isinstance(self.resize, tuple) else None

    @property
    def channels(self) -> int | None:
        """Channels of the input it makes of an image (1: grey, 3: RGB); None: it cannot (its
        mean and std have another number of channels)."""
        return {0: 3, 1: 1, 3: 3}.get(len(self.mean))

    @property
    def is_imagenet(self) -> bool:
        """The shape of ``Preprocess.imagenet(crop)`` (what ``IMAGENET`` declares)."""
        return isinstance(self.crop, int) and self == Preprocess.imagenet(self.crop)

    def __str__(self) -> str:
        return preprocess_text(self)

    def refuses(self, shape: tuple[int, ...]) -> str | None:
        """Why image files cannot become a ``shape`` input through this preprocessing (to
        follow "model m ..."), or None when they can."""
        dims = "x".join(map(str, shape))
        if len(shape) != 3:
            return f"takes {dims} inputs, not images: pass a tensor"
        c, h, w = shape
        if self.channels != c:
            reads = {1: "as grey (1 channel)", 3: "as RGB (3 channels)"}.get(
                self.channels, f"into {len(self.mean)} channels, which images do not have")
            grey = ", or declare PREPROCESS (MEAN (0) STD (1)) to read images as grey" \
                if c == 1 else ""
            return (f"takes {c}-channel inputs and its preprocessing {self} reads images "
                    f"{reads}: pass a {dims} tensor instead{grey}")
        if self.size is not None and self.size != (h, w):
            return (f"takes {h}x{w} inputs and its preprocessing {self} makes "
                    f"{self.size[0]}x{self.size[1]} images: declare one that makes {h}x{w} "
                    f"(RESIZE {h} {w}), or pass a {dims} tensor")
        return None

    def __call__(self, image) -> np.ndarray:
        """Path or PIL image -> float32 array (channels, height, width). The result for an
        image the decode cache keeps (``decoded``) is kept too, by the file and ``self``: a
        statement that reads the same unchanged file skips the resize (0.5 ms at 32x32)."""
        img = decoded(image) if isinstance(image, (str, bytes, os.PathLike)) else image
        key = _kept_key(img, self)
        if key in _PREPROCESSED:
            return _PREPROCESSED[key].copy()
        x = self._apply(_rgb(img))
        if key is not None:
            _PREPROCESSED[key] = x.copy()
            while len(_PREPROCESSED) > PREPROCESSED_KEPT:  # the oldest first
                _PREPROCESSED.pop(next(iter(_PREPROCESSED)), None)
        return x

    def _apply(self, img: Image.Image) -> np.ndarray:
        w, h = img.size
        if w < 1 or h < 1:
            raise ImageError(f"image of {w}x{h} pixels has nothing to preprocess")
        if self.channels == 1:
            img = img.convert("L")
        img = _geometry(img, self.resize, self.crop)
        return self.normalize(np.asarray(img, np.float32) / 255.0)

    def normalize(self, hwc: np.ndarray) -> np.ndarray:
        """H x W (grey) or H x W x C pixels in [0, 1] -> the model's C x H x W float32."""
        chw = hwc[None] if hwc.ndim == 2 else hwc.transpose(2, 0, 1)
        return self.from_pixels(chw)

    def from_pixels(self, x: np.ndarray) -> np.ndarray:
        """Pixel values in [0, 1], channels first ((C,) or (C, H, W)), in the model's space:
        times ``scale``, then ``(x - mean) / std``. FILL values go through this too."""
        x = np.asarray(x, np.float32) * np.float32(self.scale)
        if self.mean:
            x = (x - self._per_channel(self.mean, x)) / self._per_channel(self.std, x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def to_pixels(self, x: np.ndarray) -> np.ndarray:
        """``from_pixels`` undone: model inputs (C, ...) back to pixel values."""
        x = np.asarray(x, np.float32)
        if self.mean:
            x = x * self._per_channel(self.std, x) + self._per_channel(self.mean, x)
        return x / np.float32(self.scale)

    def _per_channel(self, values: tuple[float, ...], x: np.ndarray) -> np.ndarray:
        if x.shape[0] != len(values):
            raise ShapeError(f"preprocessing {self} normalises {len(values)} channel(s), the "
                             f"input has {x.shape[0]}")
        return np.asarray(values, np.float32).reshape((-1,) + (1,) * (x.ndim - 1))


def _side(value, name: str, square_to_int: bool):
    """A side (positive int), a (height, width) pair of them, or None."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_positive(v) for v in value):
        h, w = int(value[0]), int(value[1])
        return h if square_to_int and h == w else (h, w)
    if not _positive(value):
        raise KryptonError(f"Preprocess {name} must be a positive integer (or a (height, width) "
                           f"pair of them), got {value!r}")
    return int(value)


def _positive(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1


def _numbers(values, name: str) -> tuple[float, ...]:
    ok = isinstance(values, (tuple, list)) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        for v in values)
    if not ok or name == "std" and any(v <= 0 for v in values):
        raise KryptonError(f"Preprocess {name} must be finite numbers, one per channel"
                           f"{' (all positive)' if name == 'std' else ''}, got {values!r}")
    return tuple(float(v) for v in values)


def _pair(side) -> tuple[int, int]:
    return side if isinstance(side, tuple) else (side, side)


def resized_size(w: int, h: int, resize) -> tuple[int, int]:
    """(width, height) a ``w`` x ``h`` image has after Preprocess's ``resize`` step."""
    if resize is None:
        return (w, h)
    if isinstance(resize, tuple):
        return (resize[1], resize[0])
    scale = resize / min(w, h)
    return (max(resize, round(w * scale)), max(resize, round(h * scale)))


def _geometry(img: Image.Image, resize, crop) -> Image.Image:
    """Resize (the shorter side, or to exactly (h, w)) and centre-crop, as declared."""
    w, h = img.size
    size = resized_size(w, h, resize)
    ch, cw = _pair(crop) if crop is not None else (size[1], size[0])
    if resize is None and (cw > w or ch > h):
        raise ImageError(f"image of {w}x{h} pixels is smaller than the crop {cw}x{ch}; declare "
                         "a RESIZE before the CROP")
    left, top = (size[0] - cw) // 2, (size[1] - ch) // 2
    if resize is None:
        return img.crop((left, top, left + cw, top + ch)) if (cw, ch) != (w, h) else img
    if size[0] * size[1] <= WHOLE_RESIZE_PIXELS:
        img = img.resize(size, Image.BILINEAR, reducing_gap=None)
        return img.crop((left, top, left + cw, top + ch)) if (cw, ch) != size else img
    # the same pixels (up to rounding), from the crop's source region only
    sx, sy = w / size[0], h / size[1]
    box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
    return img.resize((cw, ch), Image.BILINEAR, box=box, reducing_gap=None)


def preprocess_text(pre: Preprocess, named: bool = True) -> str:
    """The KQL that declares ``pre``: IMAGENET, NONE, SCALE k (when ``named``), or the steps in
    parentheses."""
    if named and pre.is_imagenet:
        return "IMAGENET"
    if named and (pre.resize, pre.crop, pre.mean) == (None, None, ()):
        return "NONE" if pre.scale == 1 else f"SCALE {_number(pre.scale)}"
    steps = [f"{word} {' '.join(map(str, _pair(side) if isinstance(side, tuple) else (side,)))}"
             for word, side in (("RESIZE", pre.resize), ("CROP", pre.crop)) if side is not None]
    steps += [f"SCALE {_number(pre.scale)}"] if pre.scale != 1 else []
    steps += [f"{word} ({', '.join(map(_number, values))})"
              for word, values in (("MEAN", pre.mean), ("STD", pre.std)) if values]
    return f"({' '.join(steps)})" if steps else "NONE"


def _number(v: float) -> str:
    """The shortest text that reads back as ``v``, without an exponent (KQL numbers have none):
    255, not 255.0; 0.0001, not 1e-04."""
    return np.format_float_positional(v, trim="-")


def preprocess_to_json(pre: Preprocess) -> dict:
    """``pre`` as catalog.json stores it (lists for pairs; read back by preprocess_from_json)."""
    side = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return {"resize": side(pre.resize), "crop": side(pre.crop), "scale": pre.scale,
            "mean": list(pre.mean), "std": list(pre.std)}


def preprocess_from_json(d: dict) -> Preprocess:
    """A Preprocess from catalog.json; a malformed record is a KryptonError naming the value."""
    if not isinstance(d, dict):
        raise KryptonError(f"a preprocessing record is an object, got {type(d).__name__}")
    side = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
    return Preprocess(side(d["resize"]), side(d["crop"]), tuple(d["mean"]), tuple(d["std"]),
                      d["scale"])


def load_image(path) -> Image.Image:
    """Open an image file as RGB; a missing file, one that is not a regular file (a FIFO, a
    device, a directory), one that is not an image, or one with more pixels than the
    ``image_pixels`` limit (kryptondb.limits, checked from the header before any pixel is
    decoded) is an ImageError. The last few images decoded are kept (by path, inode, size and
    modification time), so statements that read the same file again skip the decoding."""
    return decoded(path).copy()


def decoded(path) -> Image.Image:
    """``load_image`` without the copy: the image the cache keeps is shared by every statement
    that reads the file, so it must never be changed (draw on ``load_image``'s copy)."""
    path = user_path(path, "image file", ImageError)
    key = _file_key(path)
    if key in _DECODED:  # the same file, unchanged: decoded by an earlier statement
        check_pixels(_DECODED[key].size, repr(path), ImageError)
        return _DECODED[key]
    img = _decode(path)
    if key is not None and img.size[0] * img.size[1] <= DECODED_PIXELS:
        _DECODED[key] = img
        while len(_DECODED) > DECODED_KEPT:
            del _DECODED[next(iter(_DECODED))]
    return img


DECODED_KEPT = 8  # decoded images kept for statements that read the same files again,
DECODED_PIXELS = 4_000_000  # each at most this large (12 MB)
_DECODED: dict = {}
PREPROCESSED_KEPT = 16  # model inputs made of them, by (file, preprocessing)
_PREPROCESSED: dict = {}


def _kept_key(img, pre: Preprocess):
    """(the file's key, ``pre``) when ``img`` is an image the decode cache keeps (that very
    object: its pixels are the file's), else None."""
    key = next((k for k, kept in tuple(_DECODED.items()) if kept is img), None)  # threads
    return None if key is None else (key, pre)


def _file_key(path: str):
    """What identifies a file's contents for the cache: its path, inode, size and mtime; None
    for what is not a regular file (the reader then says why it cannot read it)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) \
        if stat.S_ISREG(st.st_mode) else None


def _decode(path: str) -> Image.Image:
    limit = current().image_pixels
    if Image.MAX_IMAGE_PIXELS is not None and limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit // 2 + 1  # PIL refuses over twice this: not below ours
    try:
        with open_regular(path, "image file", ImageError) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours is below
            with Image.open(f) as img:  # reads the header only
                check_pixels(img.size, repr(path), ImageError)
                return img.convert("RGB")
    except KryptonError:
        raise
    except Image.DecompressionBombError as exc:  # PIL's own cap, over twice its limit
        raise ImageError(f"image file {path!r} is too large ({exc}); the image_pixels limit is "
                         f"{limit:,} pixels ({how_to_raise('image_pixels')})") from None
    except Exception as exc:  # PIL's decoders fail in many ways on a corrupt or odd file
        raise ImageError(f"{path!r} is not a readable image ({type(exc).__name__}: "
                         f"{exc})") from None


def _rgb(image) -> Image.Image:
    """A PIL image as RGB (a grey, palette, alpha or 16-bit one converted)."""
    if not isinstance(image, Image.Image):
        raise KryptonError(f"expected an image path or a PIL image, got {type(image).__name__}")
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(f"a {image.mode} image cannot be turned into RGB: {exc}") from None


def check_pixels(size: tuple[int, int], shown: str, error: type) -> None:
    """An image or frame of ``size`` (width, height) within the ``image_pixels`` limit."""
    width, height = size
    check_size(width * height, "image_pixels", f"image {shown} ({width}x{height})", error,
               unit="pixels")


def bundled_image(name: str = "chelsea.png") -> str:
    """Path of an image shipped with KryptonDB (chelsea.png: scikit-image's CC0 cat photo)."""
    return os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", name)
