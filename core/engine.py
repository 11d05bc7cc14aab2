"""Style transfer (Gatys, Ecker & Bethge 2015): optimise the pixels of a generated image G so that its
VGG19 features match the content image C at relu4_2 and the Gram matrices of the style image(s) S.

`stylize` is the entry point. How a run goes, module by module, top to bottom:
- core/images.py: the inputs checked, resized to the work size, colour preservation, the start image;
- core/schedule.py: the scales, coarse to fine, and the run's count (progress, ETA, cancel, NaN guard);
- core/scale.py: at each scale the style targets (blended Grams), the content image's features
  (measured once), the balance and the graph's weights (DEVELOPERS.md, "The maths", "The balance");
- core/steering.py: strength as a target: the style gain corrected between segments of a scale;
- core/optimise.py: one image at one scale, host or device optimiser loop;
- core/tiled.py: a scale bigger than the memory budget in tiles, each an independent TileTask.

The options, their checks and the size limits stay here (front ends read them from here).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from . import color
from .errors import StyleError
from .graph import StyleGraph, Targets
from .imageio import MAX_PIXELS
from .images import check_image, fit_size, load_init, prepare, resize
from .layers import MIN_SIDE, STYLE_LAYERS
from .optim import OPTIMISERS
from .optimise import OptimiserFn, optimise, run_optimiser
from .runtime import resolve_device
from .scale import BalanceFn, GraphLike, balance, blended_grams, whole_features
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
# Weights become float32 graph inputs: a larger one would overflow to inf in the cast.
MAX_WEIGHT = float(np.finfo(np.float32).max)
MAX_SEED = 2**63 - 1  # numpy takes any integer ≥ 0; an int64 is plenty and fits every front end
PRESERVE_COLORS = (None, "luminance", "histogram")


@dataclass
class StyleOptions:
    """Every knob of a run. The CLI maps its flags 1:1 onto these fields; presets set a few of them."""

    steps: int = 150
    """Loss-and-gradient evaluations per scale (the unit of cost; L-BFGS usually spends one per iteration)."""
    max_size: int | None = 1024
    """Longer side of the processed image; larger inputs are downscaled first and the RESULT HAS THIS
    SIZE (callers upscale it if they need the original size). None: keep the input's size."""
    min_size: int = 64
    """Smaller side of the coarsest scale, px (the schedule halves the output size down to it)."""
    scales: int | None = None
    """Number of scales; None: as many as min_size allows. 1: single-scale, as in the paper."""
    strength: float = 1.0
    """How much style: 0 gives the content, 1 a clearly stylised picture with the content
    recognisable, more gives more. Scales the style and total-variation terms of the balanced loss
    (with an explicit style_weight, that β)."""
    content_weight: float = 1.0
    """Weight of the content cost: ½·(relative relu4_2 error)², or, with an explicit style_weight,
    ½·mean squared relu4_2 difference (the seed's raw, per-element weight)."""
    style_weight: float | None = None
    """None: the balanced style cost, mean over layers of λ_l·J_style[l] / J_style[l](content image),
    times STYLE_GAIN·strength. A number: expert override, the seed's raw β on
    Σ_l λ_l·J_style[l] (normalised Grams; its right value differs by style picture), times strength."""
    tv_weight: float = 0.1
    """Weight of total variation (mean squared neighbour difference of the [0,1] image), times
    strength: smooths the high-frequency noise the style term makes."""
    style_layer_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    """λ per style layer, in the order relu1_1, relu2_1, relu3_1, relu4_1, relu5_1."""
    style_blend: tuple[float, ...] | None = None
    """Weights of the style images (blend of their Gram targets); None: equal. Count must match."""
    style_scale: float = 1.0
    """Style image's longer side relative to the processed image's longer side at each scale:
    < 1 gives finer, smaller patterns, > 1 bigger ones."""
    init: str | np.ndarray = "content"
    """Start image: "content", "noise" (uniform, seeded), a file path, or an RGB array [H,W,3]."""
    preserve_colors: str | None = None
    """None; "luminance": transfer luminance only, keep the content's chroma (YIQ);
    "histogram": match the style's colour mean and covariance to the content's before transfer."""
    optimizer: str = "lbfgs"
    """"lbfgs" (projected L-BFGS, Armijo line search) or "adam"."""
    learning_rate: float = 0.02
    """Adam's step, in [0,1] pixel units (unused by L-BFGS)."""
    seed: int | None = 0
    """Seed for noise init; with it a CPU run is reproducible. None: a fresh random seed."""
    pooling: str = "avg"
    """"avg" (shipped model, smoother results, as the paper recommends) or "max"."""
    device: str = "auto"
    """"auto" (cuda, then directml, then cpu), "cpu", "cuda" or "directml"."""
    model_dir: str | None = None
    """Folder holding vgg19-<pooling>-*.onnx; None: the shipped models (and the user model dir)."""
    tile_budget_mpx: float | None = None
    """Largest image, in megapixels, optimised in one piece; bigger scales run in overlapping tiles of
    about this area (the grad graph's memory per Mpx: TILE_GB_PER_MPX). None: 1 Mpx, or on CUDA what
    the device's free memory holds (cuda_tile_budget)."""
    tile_overlap: int = 64
    """Overlap of neighbouring tiles, px (feathered with a raised cosine)."""

    @classmethod
    def from_preset(cls, name: str = "normal", **overrides) -> StyleOptions:
        """A preset ("draft", "normal", "high") with any field overridden by keyword."""
        if name not in PRESETS:
            raise StyleError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise StyleError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return replace(cls(**PRESETS[name]), **overrides)


PRESETS: dict[str, dict] = {
    "draft": {"steps": 60, "max_size": 512},
    "normal": {"steps": 150, "max_size": 1024},
    "high": {"steps": 300, "max_size": 2048},
}


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


def _check_options(options: StyleOptions, n_styles: int) -> np.ndarray:
    """Validate; returns the normalised style blend weights."""
    if options.preserve_colors not in PRESERVE_COLORS:
        raise StyleError(
            f"preserve_colors must be one of luminance, histogram or none, not {options.preserve_colors!r}"
        )
    if options.optimizer not in OPTIMISERS:
        raise StyleError(
            f"optimizer must be one of {', '.join(OPTIMISERS)}, not {options.optimizer!r}"
        )
    if options.steps < 1:
        raise StyleError("steps must be at least 1")
    if len(options.style_layer_weights) != len(STYLE_LAYERS):
        raise StyleError(
            f"style_layer_weights needs {len(STYLE_LAYERS)} values ({', '.join(STYLE_LAYERS)})"
        )
    for name in (
        "strength",
        "content_weight",
        "style_weight",
        "tv_weight",
        "style_scale",
        "tile_budget_mpx",
    ):
        value = getattr(options, name)
        if value is None and name in ("style_weight", "tile_budget_mpx"):
            continue  # the balanced loss; the device's own tile budget
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise StyleError(f"{name} must be a number, not {value!r}")
        if not math.isfinite(value) or value < 0:
            raise StyleError(f"{name} must be a finite number ≥ 0, not {value}")
    for name in ("strength", "content_weight", "style_weight", "tv_weight", "style_layer_weights"):
        value = getattr(options, name)
        if value is not None and max(np.atleast_1d(value)) > MAX_WEIGHT:
            raise StyleError(f"{name} must be ≤ {MAX_WEIGHT:g} (float32's largest number)")
    seed = options.seed
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED
    ):
        raise StyleError(f"seed must be an integer from 0 to {MAX_SEED}, not {seed!r}")
    if options.style_scale <= 0:
        raise StyleError("style_scale must be > 0")
    if n_styles < 1:
        raise StyleError("at least one style image is needed")
    blend = (
        np.ones(n_styles)
        if options.style_blend is None
        else np.asarray(options.style_blend, np.float64)
    )
    if blend.shape != (n_styles,):
        raise StyleError(
            f"{n_styles} style image(s) but {blend.size} blend weight(s); give one weight per style"
        )
    if (blend < 0).any() or not np.isfinite(blend).all() or blend.sum() <= 0:
        raise StyleError("style blend weights must be ≥ 0 and not all 0")
    return blend / blend.sum()


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
      after another, with per-evaluation progress and cancel)."""
    options = options or StyleOptions()
    content = check_image(content, "content image")
    styles = [check_image(s, f"style image {i + 1}") for i, s in enumerate(styles)]
    blend = _check_options(options, len(styles))
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
        grams = blended_grams(graph, styles, blend, longer, budget_px)
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
