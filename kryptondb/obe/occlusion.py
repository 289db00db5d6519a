"""The geometry and data of occlusion: where the patch goes, what it is filled with, and the
occluded input batches the naive plan runs in full."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kryptondb.media.images import Preprocess
from kryptondb.lang.ast import Fill


@dataclass(frozen=True, slots=True)
class Grid:
    """Patch positions: top-left corners (i * stride, j * stride) that keep the patch inside."""

    height: int
    width: int
    patch: int
    stride: int

    @property
    def rows(self) -> int:
        return (self.height - self.patch) // self.stride + 1

    @property
    def cols(self) -> int:
        return (self.width - self.patch) // self.stride + 1

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def corners(self) -> np.ndarray:
        """(count, 2) array of (y, x) pixel corners in row-major order."""
        ii, jj = np.meshgrid(np.arange(self.rows), np.arange(self.cols), indexing="ij")
        return np.stack([ii.ravel() * self.stride, jj.ravel() * self.stride], axis=1)


def fill_tensor(x: np.ndarray, fill: Fill, pre: Preprocess | None, patch: int) -> np.ndarray:
    """The (C, H, W) tensor whose pixels replace the occluded ones, in the model's input space.

    Constants are pixel values in [0, 1] (gray = 0.5), normalised like the image; MEAN is the
    image's own per-channel mean; BLUR is the image under a Gaussian of sigma = patch / 4.
    """
    c = x.shape[0]
    if fill.kind == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape).astype(np.float32)
    if fill.kind == "blur":
        return _blur(x, max(patch / 4.0, 0.5))
    value = np.full(c, fill.value, np.float32)
    if pre is not None and c == len(pre.mean):
        value = (value - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.broadcast_to(value.reshape(c, 1, 1), x.shape).astype(np.float32)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(round(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(x, ((0, 0), (radius, radius), (radius, radius)), mode="reflect")
    rows = sum(k[i] * pad[:, i:i + x.shape[1], :] for i in range(len(k)))
    return sum(k[i] * rows[:, :, i:i + x.shape[2]] for i in range(len(k))).astype(np.float32)


def occluded_batch(x: np.ndarray, fill: np.ndarray, corners: np.ndarray, patch: int) -> np.ndarray:
    """Copies of ``x`` with the patch at each corner replaced by ``fill``: (n, C, H, W)."""
    out = np.repeat(x[None], len(corners), axis=0)
    for k, (y, xx) in enumerate(corners):
        out[k, :, y:y + patch, xx:xx + patch] = fill[:, y:y + patch, xx:xx + patch]
    return out
