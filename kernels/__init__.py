"""CUDA sources for the GPU backend, shipped inside the wheel."""
