"""Occlusion-based explanation: a scan spec -> the scores of every window position.

grid.py (where the window goes), spec.py (what a scan computes: ScanSpec, Scores),
strategy.py (how: Naive, Incremental, DrillDown; the Runtime), scan.py (the driver's entry),
naive.py, incremental.py, drilldown.py (the three ways), occlusion.py (fills, occluded batches),
layout.py (window values over the input: each pixel the mean of its windows),
memo.py (a session's exact scores, SSIM of approximate ones), tuning.py (tau for an accuracy
target), render.py (pictures).
"""
