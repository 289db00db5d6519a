"""Heatmap pictures: the image (a model input back to pixels), and the probability drop over it
with a colour bar."""

from __future__ import annotations

import numpy as np

from kryptondb.files import writable_file
from kryptondb.obe.grid import Grid
from kryptondb.obe.layout import pixels


def display_image(x: np.ndarray, pre) -> np.ndarray:
    """A model input (C, H, W) back to an (H, W, 3) picture in [0, 1], undoing ``pre``'s
    normalisation (a ``Preprocess``, or None)."""
    img = x
    if pre is not None and x.shape[0] == len(pre.mean):
        img = x * np.asarray(pre.std, np.float32)[:, None, None] + \
            np.asarray(pre.mean, np.float32)[:, None, None]
    img = img[:3] if img.shape[0] >= 3 else np.repeat(img[:1], 3, axis=0)
    return np.clip(img.transpose(1, 2, 0), 0.0, 1.0)


def upsample(heatmap) -> np.ndarray:
    """The drop grid on the image's pixels: each pixel gets the mean drop of the patch
    positions covering it (Captum's layout, kryptondb/obe/layout.py); pixels no patch covers
    get 0."""
    h, w = heatmap.image.shape[:2]
    fit = Grid(h, w, heatmap.patch, heatmap.stride)
    grid = fit if fit.shape == heatmap.drop.shape else Grid(h, w, heatmap.patch, heatmap.stride,
                                                            "cut")
    return pixels(heatmap.drop, grid)


def save_heatmap_png(heatmap, path: str) -> str:
    import matplotlib  # heavy (~0.3 s): only when a picture is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    path = writable_file(path, "heatmap PNG")
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    ax0.imshow(heatmap.image)
    ax0.set_title(f"input ({heatmap.model})")
    drop = upsample(heatmap)
    lim = max(float(np.abs(drop).max()), 1e-6)
    ax1.imshow(heatmap.image)
    im = ax1.imshow(drop, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.6)
    ax1.set_title(f"occlusion: {heatmap.label!r} p={heatmap.base_probability:.2f}\n"
                  f"patch {heatmap.patch}, stride {heatmap.stride}")
    for ax in (ax0, ax1):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=ax1, label="probability drop when occluded", shrink=0.9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
