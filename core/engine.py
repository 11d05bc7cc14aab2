"""Style transfer (Gatys, Ecker & Bethge 2015): optimise the pixels of a generated image G so that its
VGG19 features match the content image C at relu4_2 and the Gram matrices of the style image(s) S.

`stylize` is the entry point. How a run goes, module by module, top to bottom:
- core/images.py: the inputs checked, resized to the work size, colour preservation, the start image;
- core/schedule.py: the scales, coarse to fine, and the run's count (progress, ETA, cancel, NaN guard);
- core/scale.py: at each scale the style targets (blended Grams), the content image's features
  (measured once), the balance and the graph's weights (DEVELOPERS.md "The maths", docs/decisions/balance.md);
- core/steering.py: strength as a target: the style gain corrected between segments of a scale;
- core/optimise.py: one image at one scale, host or device optimiser loop;
- core/tiled.py: a scale bigger than the memory budget in tiles, each an independent TileTask.

The options and their checks: core/options.py (re-exported here); the size limits stay here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import color
from .errors import StyleError
from .graph import StyleGraph, Targets
from .imageio import MAX_PIXELS
from .images import check_image, fit_size, load_init, prepare, resize
from .layers import MIN_SIDE
from .optimise import OptimiserFn, optimise, run_optimiser
from .options import (  # StyleOptions, its presets and limits: imported from here too
    MAX_SEED,
    MAX_WEIGHT,
    PRESERVE_COLORS,
    PRESETS,
    StyleOptions,
    check_options,
)
from .runtime import resolve_device
from .scale import BalanceFn, Grams, GraphLike, balance, blended_grams, whole_features
from .schedule import Run, scale_sizes
from .steering import Steering, SteeringSettings
from .tiled import (
    DEFAULT_TILE_MPX,
    TILE_GB_PER_MPX,
    TileMap,
    TileTask,
    default_tile_budget,
    optimise_tile,
    optimise_tiled,
    tile_tasks,
    tiles_for,
)

__all__ = [
    "MAX_SEED",
    "MAX_WEIGHT",
    "MAX_WORK_PIXELS",
    "PRESERVE_COLORS",
    "PRESETS",
    "TILE_GB_PER_MPX",
    "CancelFn",
    "GraphLike",
    "Progress",
    "ProgressFn",
    "SteeringSettings",
    "StyleOptions",
    "TileTask",
    "check_sizes",
    "fit_size",
    "optimise_tile",
    "resize",
    "style_side",
    "stylize",
    "work_size",
]

# The largest image the engine makes (the content at its working size, a resized style): the size
# of image it may read, so no option turns a readable input into an unbounded allocation.
MAX_WORK_PIXELS = MAX_PIXELS


@dataclass
class Progress:
    """One report per evaluation. scale/step are 1-based; steps counts all tiles of the scale."""

    scale: int
    scales: int
    step: int
    steps: int
    loss: float
    eta_s: float | None  # seconds left for the whole run; None until measured
    tile: int = 1
    tiles: int = 1


ProgressFn = Callable[[Progress], None]
CancelFn = Callable[[], bool]


def style_side(height: int, width: int, style_scale: float) -> int:
    """The longer side a style image is resized to for an image (a scale) of height × width."""
    return max(MIN_SIDE, round(max(height, width) * style_scale))


def work_size(height: int, width: int, options: StyleOptions) -> tuple[int, int]:
    """The size the engine works at (and the result's): the content's, shrunk to max_size. A
    max_size that would push the shorter side below MIN_SIDE is refused: fit_size would widen it,
    and the result would silently lose the content's aspect ratio."""
    if not options.max_size or max(height, width) <= options.max_size:
        return height, width
    longer, shorter = max(height, width), min(height, width)
    if round(shorter * options.max_size / longer) < MIN_SIDE:
        least = math.ceil((MIN_SIDE - 0.5) * longer / shorter)
        while round(shorter * least / longer) < MIN_SIDE:
            least += 1
        raise StyleError(
            f"max_size {options.max_size} would make the {width}x{height} content narrower than "
            f"the {MIN_SIDE} px the network needs, losing its aspect ratio: use at least {least}"
        )
    return fit_size(height, width, options.max_size)


def check_sizes(
    content_hw: tuple[int, int], style_hws: Sequence[tuple[int, int]], options: StyleOptions
) -> tuple[int, int]:
    """Refuse, before any image is decoded or model loaded, sizes the options would make too big
    for memory; returns the work size. Every size the user controls is bounded: the work size by
    the content, each style at the last scale (style_scale) by MAX_WORK_PIXELS, the tile by the
    machine's memory."""
    height, width = work_size(*content_hw, options)
    longer = style_side(height, width, options.style_scale)
    for i, (sh, sw) in enumerate(style_hws, 1):
        rh, rw = fit_size(sh, sw, longer)
        if rh * rw > MAX_WORK_PIXELS:
            most = options.style_scale * math.sqrt(MAX_WORK_PIXELS / (rh * rw))
            raise StyleError(
                f"style_scale {options.style_scale:g} would make style image {i} {rw}x{rh} px: "
                f"more than {MAX_WORK_PIXELS // 1_000_000} megapixels; use at most {most:.3g}"
            )
    _check_tile_budget(options)
    return height, width


def _check_tile_budget(options: StyleOptions) -> None:
    """A tile's grad graph needs TILE_GB_PER_MPX per megapixel: on the CPU it must fit in RAM."""
    memory = _physical_memory_gb()
    try:
        on_cpu = resolve_device(options.device) == "cpu"
    except StyleError:  # an unusable device: loading the graph says so, with the reason
        return
    if memory is None or not on_cpu:
        return  # a GPU's own memory is its provider's to report
    budget = DEFAULT_TILE_MPX if options.tile_budget_mpx is None else options.tile_budget_mpx
    needed = budget * TILE_GB_PER_MPX["cpu"]
    if needed > memory:
        raise StyleError(
            f"tile_budget {budget:g} Mpx needs about {needed:.0f} GB on the CPU; "
            f"this machine has {memory:.0f} GB: use at most "
            f"{memory / TILE_GB_PER_MPX['cpu']:.1f}"
        )


def _physical_memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf: no check there
        return None


def stylize(
    content: np.ndarray,
    styles: Sequence[np.ndarray],
    options: StyleOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    *,
    graph: GraphLike | None = None,
    steering: SteeringSettings | None = None,
    balance_fn: BalanceFn = balance,
    optimiser: OptimiserFn = run_optimiser,
    tile_map: TileMap | None = None,
    style_grams: Callable[[int], Grams] | None = None,
) -> np.ndarray:
    """Stylise `content` (float32 [H,W,3] RGB in [0,1]) with `styles`; returns float32 [h,w,3] in [0,1],
    where (h,w) is the content's size, shrunk so the longer side ≤ options.max_size.

    progress(Progress) is called after every evaluation; cancel() is polled before every evaluation
    and a True makes stylize raise Cancelled. User errors raise StyleError subclasses (one line).

    The seams (defaults: the engine's own):
    - graph: an already loaded StyleGraph to reuse (sessions take a second or two to create), or
      anything with its features/loss_and_grad (GraphLike: the benchmark's PyTorch reference); None
      loads the one for options.pooling and options.device;
    - steering: the strength steering's numbers (core/steering.py; steer=False: a fixed gain);
    - balance_fn: what each scale's terms are divided by (core/scale.py `balance`; the judge's variants);
    - optimiser: runs one image's evaluations (core/optimise.py `run_optimiser`; a benchmark's own);
    - tile_map: runs a tiled scale's TileTasks, results in task order (core/tiled.py; None: here, one
      after another, with per-evaluation progress and cancel);
    - style_grams(longer): the blended style targets for a scale whose style side is `longer`
      (style_side), computed once for many pictures (plugin/cluster.py); None: from `styles` here.
      Only without preserve_colors (its modes change the styles per content)."""
    options = options or StyleOptions()
    content = check_image(content, "content image")
    styles = [check_image(s, f"style image {i + 1}") for i, s in enumerate(styles)]
    blend = check_options(options, len(styles))
    height, width = check_sizes(content.shape[:2], [s.shape[:2] for s in styles], options)
    content = resize(content, height, width)  # a no-op unless max_size shrinks it
    original_content = content
    content, styles = prepare(content, styles, options.preserve_colors)

    if graph is None:
        graph = StyleGraph.load(options.pooling, options.device, options.model_dir)
    budget_mpx = options.tile_budget_mpx
    if budget_mpx is None:
        budget_mpx = default_tile_budget(graph)
        options = replace(options, tile_budget_mpx=budget_mpx)
    sizes = scale_sizes(height, width, options)
    tilings = [tiles_for(h, w, options) for h, w in sizes]
    report = None if progress is None else (lambda **fields: progress(Progress(**fields)))
    run = Run(options.steps, sizes, [len(t) if t else 1 for t in tilings], report, cancel)
    steerer = Steering(
        steering or SteeringSettings(), options.strength, options.style_weight is None
    )
    rng = np.random.default_rng(options.seed)
    image = load_init(options.init, *sizes[0], rng)
    if image is not None and options.preserve_colors == "luminance":
        image = color.gray3(color.luminance(image))
    budget_px = int(budget_mpx * 1e6)

    for index, ((h, w), tiles) in enumerate(zip(sizes, tilings), 1):
        run.scale, run.step = index, 0
        scaled_content = resize(content, h, w)
        # strength 0: the loss is the content term alone, whose minimum is the content itself
        if image is None or options.strength == 0:
            start = scaled_content
        else:
            start = resize(image, h, w)
        longer = style_side(h, w, options.style_scale)
        if style_grams is None:
            grams = blended_grams(graph, styles, blend, longer, budget_px)
        else:
            grams = style_grams(longer)
        measured = whole_features(graph, scaled_content, budget_px)  # the content's, once a scale
        normalisers = balance_fn(graph, scaled_content, grams, budget_px, measured)
        if tiles is None:
            # an untiled scale is within the budget (or one piece of whole_features): its content
            # was measured whole
            assert measured.content is not None
            targets = Targets(grams=grams, content=measured.content)
            image = optimise(graph, start, targets, normalisers, options, run, steerer, optimiser)
        else:
            tasks = tile_tasks(
                graph,
                start,
                scaled_content,
                grams,
                tiles,
                budget_px,
                normalisers,
                steerer.gain,
                options,
            )
            image = optimise_tiled(graph, tasks, tiles, run, optimiser, tile_map)

    assert image is not None  # scale_sizes gives at least one scale
    if options.preserve_colors == "luminance":
        image = color.recombine(color.luminance(image), original_content)
    return np.clip(image, 0, 1).astype(np.float32)
