"""Approximation math for occlusion: adaptive drill-down's geometry and speedup, the SSIM
quality measure, the sample photos tuning uses (tuning itself: kryptondb/obe/tuning.py)."""
