"""Approximate occlusion: projective field thresholding (tau), adaptive drill-down, the SSIM
quality measure, and offline tuning of tau against an accuracy target."""
