"""Object recognition in video: change detection between frames and incremental re-inference."""
