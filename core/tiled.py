"""A scale bigger than the memory budget, optimised in overlapping tiles (the grid and the blend:
core/tiling.py).

Each tile is optimised on its own from the same start (the previous scale, upsampled), its content
target from its own crop, at the run's gain (no steering: a tile's distance is not the image's); the
results are blended with raised-cosine weights in the overlaps. So the tiles of a scale are
independent: each is a `TileTask` (numpy arrays, floats and dataclasses only: it pickles), and
`optimise_tile` runs one with any graph on any machine. `stylize(..., tile_map=...)` hands a scale's
tasks to a caller's map (another process, other machines); the targets, the blend and the next
scale's start stay in the calling process.

Style targets are the whole style image's Grams T, shifted per tile by how the tile's statistics
differ from the whole image's at the start: T_t = T + Ĝ_t(start) − Ĝ(start). Then the tile's style
gradient F_t(Ĝ_t − T_t) = F_t(Ĝ − T) is, at the start, the untiled run's gradient (the content and TV
terms share the same n/n_t factor), so a tile of sky isn't forced to hold the whole style's palette,
neighbours evolve alike in their overlap, and tiled and untiled runs agree away from the seams
(tests/test_engine_tiling.py). Starting later tiles from their neighbours' results instead was
measured worse: they then changed far less in the same steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .errors import Cancelled
from .graph import Targets
from .layers import CONTENT_LAYER, MIN_SIDE, STYLE_LAYERS
from .optimise import Meter, OptimiserFn, check_finite, run_optimiser
from .runtime import cuda_free_bytes
from .scale import Balance, Grams, GraphLike, graph_weights, style_grams
from .tiling import Blender, Tile, tile_grid, tile_weights

if TYPE_CHECKING:
    from .engine import StyleOptions
    from .schedule import Run

# Peak memory of the grad graph per megapixel of image, measured (docs/decisions/session-settings.md): what a tile costs.
TILE_GB_PER_MPX = {"cpu": 3.0, "cuda": 6.0}
# The device loop's vectors per Mpx: L-BFGS keeps 28 images (x, g, trials, d, best, 11 s/y pairs) of
# 12 bytes a pixel, and the update graphs a few temporaries.
LOOP_GB_PER_MPX = 0.4
# What ORT's CUDA arenas keep between runs (they never shrink): the features session's activations
# (a quarter of the grad graph's on the CPU: 0.58 vs 2.27 GB/Mpx retained) and the previous scale's
# grad-graph buffers (a quarter of the area), each ~1.5 GB per Mpx of tile
# (docs/decisions/cuda-tile-budget.md).
ARENA_GB_PER_MPX = 3.0
DEFAULT_TILE_MPX = 1.0  # the tile budget on the CPU and DirectML (3 GB there)


def cuda_tile_budget(free_bytes: int) -> float:
    """Megapixels one CUDA tile may have: 80% of the free device memory (the rest: cuDNN workspaces,
    fragmentation) over what a megapixel costs the grad graph, the device loop and the arenas that
    stay allocated; at least the default."""
    per_mpx = TILE_GB_PER_MPX["cuda"] + LOOP_GB_PER_MPX + ARENA_GB_PER_MPX
    return max(DEFAULT_TILE_MPX, 0.8 * free_bytes / (per_mpx * 1e9))


def default_tile_budget(graph: GraphLike) -> float:
    """DEFAULT_TILE_MPX, or on CUDA what its free memory holds (when the CUDA runtime answers)."""
    free = cuda_free_bytes() if getattr(graph, "concrete_device", None) == "cuda" else None
    return DEFAULT_TILE_MPX if free is None else cuda_tile_budget(free)


def tiles_for(height: int, width: int, options: StyleOptions) -> list[Tile] | None:
    """The tiles of a scale of height × width, or None when it is optimised whole."""
    # stylize resolves None first (default_tile_budget asks CUDA); without a graph: the CPU's default
    budget_mpx = DEFAULT_TILE_MPX if options.tile_budget_mpx is None else options.tile_budget_mpx
    side = max(MIN_SIDE * 4, int(math.sqrt(budget_mpx * 1e6)))
    if height * width <= budget_mpx * 1e6 or max(height, width) <= side:
        return None
    overlap = min(options.tile_overlap, side // 2)
    return tile_grid(height, width, side, overlap)


@dataclass(frozen=True, eq=False)
class TileTask:
    """One tile's work at one scale: all it needs, and nothing that doesn't pickle."""

    index: int  # 1-based, in the scale's tile order
    start: np.ndarray  # the tile's crop of the scale's start image, float32 [h,w,3]
    content: np.ndarray  # the tile's crop of the content image at this scale
    grams: Grams  # the shifted style targets T_t (module doc)
    balance: Balance  # the whole scale's normalisers
    gain: float  # the run's style gain (core/steering.py) when the scale began
    options: StyleOptions  # the run's options (steps, weights, optimiser)


# stylize(..., tile_map=...): all tasks of a scale in, their results out in task order
TileMap = Callable[[Sequence[TileTask]], Iterable[np.ndarray]]


class _TileMeter:
    """A tile task's own Meter: progress(evaluations done, loss) after each evaluation, cancel()
    polled before each."""

    def __init__(self, index: int, progress, cancel) -> None:
        self.index, self.progress, self.cancel, self.step = index, progress, cancel, 0

    def begin(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled()

    def end(self, loss: float, finite: bool, pixels: int) -> None:
        check_finite(loss, finite, f"tile {self.index}, step {self.step + 1}")
        self.step += 1
        if self.progress is not None:
            self.progress(self.step, loss)


def optimise_tile(
    graph: GraphLike,
    task: TileTask,
    progress: Callable[[int, float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Run one tile task: the optimised tile, float32 [h,w,3]. progress(evaluations done, loss) is
    called after each evaluation, cancel() polled before each (True raises Cancelled); a NaN loss
    raises StyleError."""
    return _run_task(graph, task, _TileMeter(task.index, progress, cancel), run_optimiser)


def _run_task(graph: GraphLike, task: TileTask, meter: Meter, optimiser: OptimiserFn) -> np.ndarray:
    content_target = graph.features(task.content)[f"content_{CONTENT_LAYER}"]
    targets = Targets(grams=task.grams, content=content_target)
    h, w = task.start.shape[:2]
    weights = graph_weights(task.options, task.balance, content_target, h, w, gain=task.gain)
    return optimiser(graph, task.start, targets, weights, task.options.steps, task.options, meter)


def tile_tasks(
    graph: GraphLike,
    start: np.ndarray,
    content: np.ndarray,
    grams: Grams,
    tiles: list[Tile],
    budget_px: int,
    balance: Balance,
    gain: float,
    options: StyleOptions,
) -> list[TileTask]:
    """A scale's tasks, with each tile's shifted style targets (module doc)."""
    whole = style_grams(graph, start, budget_px)
    options = replace(options, init="content")  # the start is in the task: no init image to ship
    tasks = []
    for i, tile in enumerate(tiles, 1):
        ys, xs = tile.slices
        tile_features = graph.features(start[ys, xs])
        shifted = {
            layer: grams[layer] + tile_features[f"gram_{layer}"] - whole[layer]
            for layer in STYLE_LAYERS
        }
        tasks.append(TileTask(i, start[ys, xs], content[ys, xs], shifted, balance, gain, options))
    return tasks


def optimise_tiled(
    graph: GraphLike,
    tasks: list[TileTask],
    tiles: list[Tile],
    run: Run,
    optimiser: OptimiserFn = run_optimiser,
    tile_map: TileMap | None = None,
) -> np.ndarray:
    """The scale's tiles optimised and blended. Without a tile_map one after another here, each
    evaluation counted by the run (its `tile` set to the tile's index); with one, the map runs them
    all (their progress is the map's) and the run's cancel is polled as each result arrives."""
    if tile_map is None:
        results = []
        for task in tasks:
            run.tile = task.index
            results.append(_run_task(graph, task, run, optimiser))
        run.tile = 1
    else:
        run.begin()
        results = []
        for result in tile_map(tasks):
            results.append(np.asarray(result, np.float32))
            run.begin()
        if len(results) != len(tasks):
            raise RuntimeError(f"tile_map gave {len(results)} results for {len(tasks)} tiles")
    blender = Blender(tiles[-1].y1, tiles[-1].x1)  # the last tile ends at the image's corner
    for tile, result in zip(tiles, results):
        blender.add(tile, result, tile_weights(tile, tiles))
    return np.clip(blender.result(), 0, 1)
