"""Reading media: video frames through PyAV."""
