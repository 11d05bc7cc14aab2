"""Helpers the tests share (fixtures live in conftest.py)."""

import numpy as np


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float32 [1,3,H,W] in [0,1] with some spatial structure (smoothed noise), like a photo."""
    x = rng.random((1, 3, height + 2, width + 2), dtype=np.float32)
    x = (x[:, :, :-2, :-2] + x[:, :, 1:-1, 1:-1] + x[:, :, 2:, 2:] + x[:, :, 1:-1, :-2]) / 4
    return np.ascontiguousarray(x, dtype=np.float32)
