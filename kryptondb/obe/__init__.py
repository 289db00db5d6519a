"""Occlusion-based explanation: positions, fills, occluded batches and heatmaps."""
