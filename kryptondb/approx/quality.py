"""Heatmap quality: SSIM between an exact and an approximate heatmap.

Both maps are divided by the exact map's range (max - min) after subtracting its minimum, and
compared with scikit-image's ``structural_similarity`` (7x7 window, data_range 1): the score
measures the structure users read off a heatmap, not its absolute probabilities.
"""

from __future__ import annotations

import numpy as np


def ssim(exact: np.ndarray, approx: np.ndarray) -> float:
    """SSIM of ``approx`` against ``exact`` (2-D heatmaps of one shape); 1.0 means identical.

    >>> h = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    >>> ssim(h, h)
    1.0
    >>> ssim(h, h[::-1]) < 0.5
    True
    """
    from skimage.metrics import structural_similarity  # heavy; only approximate scans score

    exact, approx = np.asarray(exact, np.float64), np.asarray(approx, np.float64)
    if exact.shape != approx.shape or exact.ndim != 2:
        raise ValueError(f"heatmaps must be 2-D and of one shape, got {exact.shape} and "
                         f"{approx.shape}")
    lo, span = exact.min(), float(np.ptp(exact))
    if span == 0.0:
        return 1.0 if np.array_equal(exact, approx) else 0.0
    win = min(7, *exact.shape)
    win -= 1 - win % 2  # odd
    if win < 3:  # too small for a windowed SSIM: fall back to 1 - normalised RMSE
        return float(1.0 - np.sqrt(np.mean(((exact - approx) / span) ** 2)))
    return round(float(structural_similarity((exact - lo) / span, (approx - lo) / span,
                                             data_range=1.0, win_size=win)), 6)
