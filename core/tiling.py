"""Overlapping tiles with feathered (raised-cosine) blending, for images bigger than the memory budget.

Tiles overlap by `overlap` pixels; inside an overlap each tile's weight falls from 1 to 0 along a
raised cosine (½ − ½·cos), so the two weights sum to a smooth partition of unity and seams vanish.
Edges on the image border keep weight 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced tile starts covering [0, length) with at least `overlap` shared pixels."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles of at most tile×tile covering the image, neighbours overlapping by ≥ overlap."""
    if overlap >= tile:
        raise ValueError("overlap must be smaller than the tile")
    th, tw = min(tile, height), min(tile, width)
    return [
        Tile(y, y + th, x, x + tw)
        for y in _starts(height, tile, overlap)
        for x in _starts(width, tile, overlap)
    ]


def _ramp(n: int, lo_shared: int, hi_shared: int) -> np.ndarray:
    """1-D weight: raised-cosine rise over the first lo_shared pixels, fall over the last hi_shared."""
    w = np.ones(n, np.float32)
    if lo_shared > 0:
        t = (np.arange(lo_shared) + 0.5) / lo_shared
        w[:lo_shared] = 0.5 - 0.5 * np.cos(np.pi * t)
    if hi_shared > 0:
        t = (np.arange(hi_shared) + 0.5) / hi_shared
        w[n - hi_shared :] *= 0.5 + 0.5 * np.cos(np.pi * t)
    return w


def tile_weights(tile: Tile, tiles: list[Tile]) -> np.ndarray:
    """[h,w] feathering weights of one tile: ramps only where it overlaps a neighbour."""
    top = max(
        (t.y1 - tile.y0 for t in tiles if t.y0 < tile.y0 < t.y1 and t.x0 == tile.x0), default=0
    )
    bottom = max(
        (tile.y1 - t.y0 for t in tiles if t.y0 < tile.y1 < t.y1 and t.x0 == tile.x0), default=0
    )
    left = max(
        (t.x1 - tile.x0 for t in tiles if t.x0 < tile.x0 < t.x1 and t.y0 == tile.y0), default=0
    )
    right = max(
        (tile.x1 - t.x0 for t in tiles if t.x0 < tile.x1 < t.x1 and t.y0 == tile.y0), default=0
    )
    return np.outer(_ramp(tile.y1 - tile.y0, top, bottom), _ramp(tile.x1 - tile.x0, left, right))


class Blender:
    """Accumulates weighted tiles; result() divides by the summed weights."""

    def __init__(self, height: int, width: int, channels: int = 3):
        self.acc = np.zeros((height, width, channels), np.float32)
        self.wsum = np.zeros((height, width, 1), np.float32)

    def add(self, tile: Tile, image: np.ndarray, weights: np.ndarray) -> None:
        ys, xs = tile.slices
        self.acc[ys, xs] += image * weights[..., None]
        self.wsum[ys, xs] += weights[..., None]

    def result(self) -> np.ndarray:
        return self.acc / np.maximum(self.wsum, 1e-12)
