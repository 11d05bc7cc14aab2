"""The schedule: coarse to fine, and the run's count of it (progress, ETA, cancel, the NaN guard).

The coarsest scale has its smaller side ≥ `min_size` px; each next scale doubles the size and starts
from the previous result, upsampled; the last scale is the output size (the input's, or smaller so
the longer side ≤ `max_size`). Coarse scales settle the large structures cheaply; the fine ones add
detail. Scales bigger than the memory budget run in overlapping tiles (core/tiled.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import Cancelled
from .layers import MIN_SIDE
from .optimise import check_finite

if TYPE_CHECKING:
    from .engine import StyleOptions

# Called after each evaluation with engine.Progress's fields as keywords
Report = Callable[..., None]


def scale_sizes(height: int, width: int, options: StyleOptions) -> list[tuple[int, int]]:
    """Sizes of the schedule, coarse to fine: halving from the output size while the smaller side
    stays ≥ min_size (or exactly `scales` of them)."""
    sizes = [(height, width)]
    while True:
        h, w = sizes[-1]
        if options.scales is not None and len(sizes) >= options.scales:
            break
        if options.scales is None and min(h, w) // 2 < options.min_size:
            break
        if min(h, w) // 2 < MIN_SIDE:
            break
        sizes.append((max(MIN_SIDE, round(h / 2)), max(MIN_SIDE, round(w / 2))))
    return sizes[::-1]


class Run:
    """The count of one stylize call, the Meter of its evaluations (core/optimise.py): honours a
    cancel before each, and after each guards against NaN, updates the ETA and reports progress."""

    def __init__(
        self,
        steps: int,
        sizes: list[tuple[int, int]],
        tiles_per_scale: list[int],
        report: Report | None,
        cancel: Callable[[], bool] | None,
    ):
        self.steps, self.sizes, self.tiles = steps, sizes, tiles_per_scale
        self.report, self.cancel = report, cancel
        self.scale = self.step = 0
        self.tile = 1
        self.sec_per_px = None  # wall seconds per evaluated pixel (graph + optimiser), running mean
        self.last = time.perf_counter()
        self.done_px = 0.0
        self.total_px = float(sum(steps * h * w for h, w in sizes))

    def eta(self) -> float | None:
        if self.sec_per_px is None:
            return None
        return max(0.0, (self.total_px - self.done_px) * self.sec_per_px)

    def begin(self) -> None:
        """Before each evaluation: honour a cancel."""
        if self.cancel is not None and self.cancel():
            raise Cancelled()

    def end(self, loss: float, finite: bool, pixels: int) -> None:
        """After each evaluation: the NaN guard, the ETA and the progress report."""
        check_finite(loss, finite, f"scale {self.scale}/{len(self.sizes)}, step {self.step + 1}")
        now = time.perf_counter()
        dt, self.last = (now - self.last) / pixels, now
        self.sec_per_px = dt if self.sec_per_px is None else 0.8 * self.sec_per_px + 0.2 * dt
        scale_px = self.sizes[self.scale - 1][0] * self.sizes[self.scale - 1][1]
        self.done_px += scale_px / self.tiles[self.scale - 1]
        self.step += 1
        if self.report is not None:
            self.report(
                scale=self.scale,
                scales=len(self.sizes),
                step=self.step,
                steps=self.steps * self.tiles[self.scale - 1],
                loss=loss,
                eta_s=self.eta(),
                tile=self.tile,
                tiles=self.tiles[self.scale - 1],
            )
