"""Reading images from files and turning them into a model's input tensor."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from kryptondb.errors import ImageError
from kryptondb.files import open_regular
from kryptondb.limits import check_size, current, how_to_raise

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True, slots=True)
class Preprocess:
    """Resize the shorter side to ``resize`` (bilinear), centre-crop ``crop``, scale to [0, 1],
    normalise per channel. Matches torchvision's ImageNet evaluation transform."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, image) -> np.ndarray:
        """PIL image or path -> float32 array of shape (3, crop, crop)."""
        from PIL import Image

        img = load_image(image) if isinstance(image, (str, os.PathLike)) else image
        w, h = img.size
        scale = self.resize / min(w, h)
        size = (max(self.crop, round(w * scale)), max(self.crop, round(h * scale)))
        img = img.resize(size, Image.BILINEAR, reducing_gap=None)
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        img = img.crop((left, top, left + self.crop, top + self.crop))
        return self.normalize(np.asarray(img, np.float32) / 255.0)

    def normalize(self, hwc: np.ndarray) -> np.ndarray:
        """HxWx3 in [0, 1] -> normalised 3xHxW float32."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return np.ascontiguousarray(((hwc - mean) / std).transpose(2, 0, 1), dtype=np.float32)


def load_image(path) -> "PIL.Image.Image":  # noqa: F821
    """Open an image file as RGB; a missing file, one that is not a regular file (a FIFO, a
    device, a directory), one that is not an image, or one with more pixels than the
    ``image_pixels`` limit (kryptondb.limits, checked from the header before any pixel is
    decoded) is an ImageError."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    limit = current().image_pixels
    if Image.MAX_IMAGE_PIXELS is not None and limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit // 2 + 1  # PIL refuses over twice this: not below ours
    try:
        with open_regular(path, "image file", ImageError) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # ours is below
            with Image.open(f) as img:  # reads the header only
                check_pixels(img.size, repr(path), ImageError)
                return img.convert("RGB")
    except Image.DecompressionBombError as exc:  # PIL's own cap, over twice its limit
        raise ImageError(f"image file {path!r} is too large ({exc}); the image_pixels limit is "
                         f"{limit:,} pixels ({how_to_raise('image_pixels')})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path!r} is not a readable image ({type(exc).__name__}: {exc})") from None


def check_pixels(size: tuple[int, int], shown: str, error: type) -> None:
    """An image or frame of ``size`` (width, height) within the ``image_pixels`` limit."""
    width, height = size
    check_size(width * height, "image_pixels", f"image {shown} ({width}x{height})", error,
               unit="pixels")


def bundled_image(name: str = "chelsea.png") -> str:
    """Path of an image shipped with KryptonDB (chelsea.png: scikit-image's CC0 cat photo)."""
    return os.path.join(os.path.dirname(__file__), "data", name)
