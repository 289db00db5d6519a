"""Reading images from files and turning them into a model's input tensor."""

from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from kryptondb.errors import ImageError, KryptonError
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
    """Resize the shorter side to ``resize`` (bilinear), centre-crop ``crop``, scale to [0, 1],
    normalise per channel. Matches torchvision's ImageNet evaluation transform."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise KryptonError(f"Preprocess {name} must be a positive integer, got {value!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, numbers.Real) and math.isfinite(v)
                                          for v in value) or name == "std" and 0 in value:
                raise KryptonError(f"Preprocess {name} must be three finite numbers"
                                   f"{' (none zero)' if name == 'std' else ''}, got {value!r}")

    def __call__(self, image) -> np.ndarray:
        """PIL image or path -> float32 array of shape (3, crop, crop)."""
        img = load_image(image) if isinstance(image, (str, bytes, os.PathLike)) else _rgb(image)
        w, h = img.size
        if w < 1 or h < 1:
            raise ImageError(f"image of {w}x{h} pixels has nothing to preprocess")
        scale = self.resize / min(w, h)
        size = (max(self.crop, round(w * scale)), max(self.crop, round(h * scale)))
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        if size[0] * size[1] <= WHOLE_RESIZE_PIXELS:
            img = img.resize(size, Image.BILINEAR, reducing_gap=None)
            img = img.crop((left, top, left + self.crop, top + self.crop))
        else:  # the same pixels (up to rounding), from the crop's source region only
            sx, sy = w / size[0], h / size[1]
            box = (left * sx, top * sy, (left + self.crop) * sx, (top + self.crop) * sy)
            img = img.resize((self.crop, self.crop), Image.BILINEAR, box=box, reducing_gap=None)
        return self.normalize(np.asarray(img, np.float32) / 255.0)

    def normalize(self, hwc: np.ndarray) -> np.ndarray:
        """HxWx3 in [0, 1] -> normalised 3xHxW float32."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return np.ascontiguousarray(((hwc - mean) / std).transpose(2, 0, 1), dtype=np.float32)


def load_image(path) -> Image.Image:
    """Open an image file as RGB; a missing file, one that is not a regular file (a FIFO, a
    device, a directory), one that is not an image, or one with more pixels than the
    ``image_pixels`` limit (kryptondb.limits, checked from the header before any pixel is
    decoded) is an ImageError."""
    path = user_path(path, "image file", ImageError)
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
