"""The engine's images: checking an input array, resampling, the start image and colour preservation.
Images are float32 [H,W,3] RGB in [0,1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from . import color
from .errors import ImageError
from .imageio import load_image
from .layers import MIN_SIDE


def check_image(image: np.ndarray, what: str) -> np.ndarray:
    """The image as float32 in [0,1], or an ImageError naming `what` (shape, size, NaN)."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ImageError(f"{what} must be an RGB array [H,W,3], got shape {a.shape}")
    if min(a.shape[:2]) < MIN_SIDE:
        raise ImageError(
            f"{what} is too small ({a.shape[1]}x{a.shape[0]}); at least {MIN_SIDE} px a side"
        )
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ImageError(f"{what} contains NaN or infinite values")
    return np.clip(a, 0, 1)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample an [H,W,C] float image (Lanczos when shrinking: antialiased; bicubic when enlarging)."""
    if image.shape[:2] == (height, width):
        return image
    shrink = height * width < image.shape[0] * image.shape[1]
    method = Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F").resize(
                (width, height), method
            )
        )
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(planes, axis=2), 0, 1).astype(np.float32)


def fit_size(height: int, width: int, longer: int) -> tuple[int, int]:
    """(h, w) with the longer side = `longer`, aspect kept, each side ≥ MIN_SIDE."""
    k = longer / max(height, width)
    return max(MIN_SIDE, round(height * k)), max(MIN_SIDE, round(width * k))


def load_init(init, height: int, width: int, rng: np.random.Generator) -> np.ndarray | None:
    """The start image at the coarsest size; None means "the content"."""
    if isinstance(init, str) and init == "content":
        return None
    if isinstance(init, str) and init == "noise":
        return rng.uniform(0, 1, (height, width, 3)).astype(np.float32)
    if isinstance(init, (str, Path)):
        init = load_image(init).rgb
    return resize(check_image(init, "init image"), height, width)


def prepare(content: np.ndarray, styles: list[np.ndarray], mode: str | None):
    """Colour preservation applied to the inputs: what the network sees."""
    if mode == "luminance":
        cy = color.luminance(content)
        return color.gray3(cy), [
            color.gray3(color.match_luminance(color.luminance(s), cy)) for s in styles
        ]
    if mode == "histogram":
        return content, [color.match_color_histogram(s, content) for s in styles]
    return content, styles
