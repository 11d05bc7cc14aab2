"""Style transfer (Gatys, Ecker & Bethge 2015): optimise the pixels of a generated image G so that its
VGG19 features match the content image C at relu4_2 and the Gram matrices of the style image(s) S.

Schedule: coarse to fine. The coarsest scale has its smaller side ≥ `min_size` px; each next scale
doubles the size and starts from the previous result, upsampled; the last scale is the output size
(the input's, or smaller so the longer side ≤ `max_size`). Coarse scales settle the large structures
cheaply; the fine ones add detail. Scales bigger than the memory budget run in overlapping tiles.

The loss is DEVELOPERS.md's ("The maths"). The balance ("The balance" there): at each scale the
engine measures the content image against the targets (`_balance`) and `_graph_weights` turns strength
and the weights into the graph's α, β, λ, tv_weight so that every term is relative — the content term
is ½·(relative relu4_2 error)², each style layer's its style cost over the content image's own — so
one strength looks alike on every style picture and at every resolution. Strength is a target: the
style distance (the judge's measure on the engine's network) should fall to TARGET_REMAINING**strength
of the content image's; each scale runs in segments and the style term's gain is corrected after each
(_next_gain), so a style far from the content gets more gain and one that moves easily less. An
explicit style_weight switches back to the seed's raw β (fixed).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import color
from .device_optim import OPTIMISERS as DEVICE_OPTIMISERS
from .device_optim import update_graphs
from .errors import Cancelled, ImageError, StyleError
from .graph import LossWeights, StyleGraph, Targets, as_nchw
from .imageio import MAX_PIXELS, load_image
from .layers import CONTENT_LAYER, DOWNSAMPLING, MIN_SIDE, STYLE_LAYERS
from .optim import OPTIMISERS
from .options import (  # noqa: F401 (StyleOptions, its presets and limits: imported from here too)
    MAX_SEED,
    MAX_WEIGHT,
    PRESERVE_COLORS,
    PRESETS,
    StyleOptions,
    check_options,
)
from .runtime import cuda_free_bytes, resolve_device
from .tiling import Blender, tile_grid, tile_weights

# Peak memory of the grad graph per megapixel of image, measured (DEVELOPERS.md): what a tile costs.
TILE_GB_PER_MPX = {"cpu": 3.0, "cuda": 6.0}
# The device loop's vectors per Mpx: L-BFGS keeps 28 images (x, g, trials, d, best, 11 s/y pairs) of
# 12 bytes a pixel, and the update graphs a few temporaries.
LOOP_GB_PER_MPX = 0.4
DEFAULT_TILE_MPX = 1.0  # the tile budget on the CPU and DirectML (3 GB there)
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


# ---------------------------------------------------------------------------------------------- images


def _check_image(image: np.ndarray, what: str) -> np.ndarray:
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


def _load_init(init, height: int, width: int, rng: np.random.Generator) -> np.ndarray | None:
    """The start image at the coarsest size; None means "the content"."""
    if isinstance(init, str) and init == "content":
        return None
    if isinstance(init, str) and init == "noise":
        return rng.uniform(0, 1, (height, width, 3)).astype(np.float32)
    if isinstance(init, (str, Path)):
        init = load_image(init).rgb
    return resize(_check_image(init, "init image"), height, width)


# ------------------------------------------------------------------------------------------ the graph


def _pieces(image: np.ndarray, budget_px: int):
    """The image whole if within the budget, else non-overlapping pieces of it (sides multiples of
    16: pooling drops nothing inside)."""
    h, w = image.shape[:2]
    if h * w <= budget_px:
        yield image
        return
    side = max(256, int(math.sqrt(budget_px)) // 16 * 16)
    for y in range(0, h, side):
        for x in range(0, w, side):
            piece = image[y : y + side, x : x + side]
            if min(piece.shape[:2]) >= MIN_SIDE:
                yield piece


def _whole_features(
    graph: StyleGraph, image: np.ndarray, budget_px: int
) -> tuple[dict[str, np.ndarray], float]:
    """Normalised Grams of the whole image and the mean squared relu4_2 activation. Above the budget
    the image is cut into pieces whose Grams (and sums) are added weighted by n_H·n_W per layer — the
    whole image's up to the convolutions' padding at the cuts."""
    acc: dict[str, np.ndarray | float] = {layer: 0.0 for layer in STYLE_LAYERS}
    count = {layer: 0 for layer in STYLE_LAYERS}
    energy, elements = 0.0, 0
    for piece in _pieces(image, budget_px):
        feats = graph.features(piece)
        for layer in STYLE_LAYERS:
            n = (piece.shape[0] // DOWNSAMPLING[layer]) * (piece.shape[1] // DOWNSAMPLING[layer])
            acc[layer] = acc[layer] + feats[f"gram_{layer}"].astype(np.float64) * n
            count[layer] += n
        a = feats[f"content_{CONTENT_LAYER}"].astype(np.float64)
        energy, elements = energy + float(np.sum(a * a)), elements + a.size
    grams = {layer: (acc[layer] / count[layer]).astype(np.float32) for layer in STYLE_LAYERS}
    return grams, energy / elements


def _style_grams(graph: StyleGraph, style: np.ndarray, budget_px: int) -> dict[str, np.ndarray]:
    """Normalised Grams of the whole style image (in pieces above the budget: _whole_features)."""
    return _whole_features(graph, style, budget_px)[0]


@dataclass(frozen=True)
class Balance:
    """What one scale's loss terms are divided by (DEVELOPERS.md, "The balance"): measured on the
    whole content image at that scale, so that every tile of it is weighted alike."""

    content: float  # mean a(C)² over relu4_2: α·J_content = ½·(relative relu4_2 error)²
    style: tuple[
        float, ...
    ]  # per layer J_style[l] of the content image itself: each term starts at 1
    # the content image's style distance (_style_distance): strength's target is a fraction of it
    distance: float = 1.0


# The balanced style term's starting gain at strength 1 (DEVELOPERS.md, "The balance"); the run then
# steers it towards strength's target (_next_gain).
STYLE_GAIN = 3.0
# Strength s asks that the style distance fall to TARGET_REMAINING**s of the content image's.
TARGET_REMAINING = 0.26
# Control: each scale's evaluations in CONTROL_SEGMENTS parts (≥ CONTROL_MIN_STEPS each); after each the
# gain is corrected assuming remaining ∝ gain**-GAIN_EXPONENT, by at most GAIN_STEP×, and kept within
# GAIN_RANGE× of STYLE_GAIN·strength.
CONTROL_SEGMENTS = 3
CONTROL_MIN_STEPS = 15
GAIN_EXPONENT = 0.3
GAIN_STEP = 3.0
GAIN_RANGE = 10.0


def _balance(
    graph: StyleGraph, content: np.ndarray, grams: dict[str, np.ndarray], budget_px: int
) -> Balance:
    """One scale's normalisers: the content image's relu4_2 energy, and per style layer the content
    image's own style cost against the targets, so every layer's term starts at 1 and strength sets
    how far, relatively, the picture moves from the content's statistics towards the style's.

    Why this and not the targets' norms ‖Ĝ(S)‖² (the relative squared Gram error) or the gradient
    norm at the first step, judged on the evaluation set (DEVELOPERS.md, "The balance"): with the
    targets' norms one layer of some styles dominates (bricks: relu5_1 starts at 7x its target's norm)
    and the first-step pull varied 500x between style pictures, leaving stained glass and hatching
    unpainted; gradient calibration reached the same reductions at higher content errors, or less
    reduction at the same, and costs an evaluation per scale."""
    own, energy = _whole_features(graph, content, budget_px)
    style = []
    for layer in STYLE_LAYERS:
        target = grams[layer].astype(np.float64)
        d = own[layer].astype(np.float64) - target
        n_c = target.shape[0]
        # a content already at the target: fall back to a millionth of the target's own energy
        floor = max(1e-6 * float(np.sum(target * target)), 1e-30)
        style.append(max(float(np.sum(d * d)), floor) / (2 * n_c) ** 2)
    distance = _style_distance({f"gram_{k}": v for k, v in own.items()}, grams)
    return Balance(content=max(energy, 1e-30), style=tuple(style), distance=max(distance, 1e-30))


def _style_distance(own: dict[str, np.ndarray], grams: dict[str, np.ndarray]) -> float:
    """Σ_l ‖Ĝ_l − T_l‖/‖T_l‖ (the judge's measure, on the engine's network): how far an image's
    style statistics are from the targets."""
    total = 0.0
    for layer in STYLE_LAYERS:
        target = grams[layer].astype(np.float64)
        d = own[f"gram_{layer}"].astype(np.float64) - target
        total += float(np.linalg.norm(d)) / max(float(np.linalg.norm(target)), 1e-30)
    return total


def _controlled(options: StyleOptions) -> bool:
    """Whether the run steers its gain towards strength's target (the balanced loss, strength > 0)."""
    return options.style_weight is None and options.strength > 0


def _next_gain(options: StyleOptions, gain: float, remaining: float) -> float:
    """The gain that should bring the style distance's remaining fraction to the target."""
    target = TARGET_REMAINING**options.strength
    factor = (max(remaining, 1e-6) / target) ** (1 / GAIN_EXPONENT)
    factor = min(max(factor, 1 / GAIN_STEP), GAIN_STEP)
    start = STYLE_GAIN * options.strength
    return min(max(gain * factor, start / GAIN_RANGE), start * GAIN_RANGE)


def _segments(steps: int) -> list[int]:
    """A scale's evaluations split for the control (the remainder to the last part)."""
    parts = max(1, min(CONTROL_SEGMENTS, steps // CONTROL_MIN_STEPS))
    return [steps // parts] * (parts - 1) + [steps - steps // parts * (parts - 1)]


def _graph_weights(
    options: StyleOptions,
    balance: Balance,
    content_target: np.ndarray,
    height: int,
    width: int,
    gain: float | None = None,
) -> LossWeights:
    """The graph's α, β, λ, tv_weight for one image (or tile): sums become means per element, the
    balanced terms relative to the scale's targets (module doc). A tile's α and TV share the factor
    n/n_tile with its Gram-normalised style term, as untiled (see _optimise_tiled)."""
    tv = options.strength * options.tv_weight / (3 * height * width)
    if options.style_weight is not None:  # expert override: the seed's raw weights
        return LossWeights(
            alpha=options.content_weight / content_target.size,
            beta=options.style_weight * options.strength,
            style_layer_weights=tuple(options.style_layer_weights),
            tv_weight=tv,
        )
    n = len(STYLE_LAYERS)
    return LossWeights(
        alpha=options.content_weight / (content_target.size * balance.content),
        beta=STYLE_GAIN * options.strength if gain is None else gain,
        style_layer_weights=tuple(
            w / (n * norm) for w, norm in zip(options.style_layer_weights, balance.style)
        ),
        tv_weight=tv,
    )


# ------------------------------------------------------------------------------------------ the run


class _Run:
    """State of one stylize call: progress, ETA, cancel, NaN guard."""

    def __init__(
        self,
        options: StyleOptions,
        sizes: list[tuple[int, int]],
        tiles_per_scale: list[int],
        progress: ProgressFn | None,
        cancel: CancelFn | None,
    ):
        self.options, self.sizes, self.tiles = options, sizes, tiles_per_scale
        self.progress, self.cancel = progress, cancel
        self.scale = self.step = 0
        self.tile = 1
        # the balanced style term's β: starts at STYLE_GAIN·strength, steered after each segment
        self.gain = STYLE_GAIN * options.strength
        self.sec_per_px = None  # wall seconds per evaluated pixel (graph + optimiser), running mean
        self.last = time.perf_counter()
        self.done_px = 0.0
        self.total_px = float(sum(options.steps * h * w for h, w in sizes))

    def eta(self) -> float | None:
        if self.sec_per_px is None:
            return None
        return max(0.0, (self.total_px - self.done_px) * self.sec_per_px)

    def evaluate(
        self, graph: StyleGraph, image: np.ndarray, targets: Targets, weights: LossWeights
    ) -> tuple[float, np.ndarray]:
        """One evaluation for the host optimisers (core/optim.py)."""
        self.begin()
        terms, grad = graph.loss_and_grad(image, targets, weights)
        self.end(terms.total, bool(np.isfinite(grad).all()), image.shape[0] * image.shape[1])
        return terms.total, grad

    def begin(self) -> None:
        """Before each evaluation: honour a cancel."""
        if self.cancel is not None and self.cancel():
            raise Cancelled()

    def end(self, loss: float, grad_finite: bool, pixels: int) -> None:
        """After each evaluation: the NaN guard, the ETA and the progress report."""
        if not math.isfinite(loss) or not grad_finite:
            raise StyleError(
                f"the loss became {'NaN' if math.isnan(loss) else 'infinite'} at scale "
                f"{self.scale}/{len(self.sizes)}, step {self.step + 1}; lower the strength or the "
                f"style, content or TV weight"
            )
        now = time.perf_counter()
        dt, self.last = (now - self.last) / pixels, now
        self.sec_per_px = dt if self.sec_per_px is None else 0.8 * self.sec_per_px + 0.2 * dt
        scale_px = self.sizes[self.scale - 1][0] * self.sizes[self.scale - 1][1]
        self.done_px += scale_px / self.tiles[self.scale - 1]
        self.step += 1
        if self.progress is not None:
            self.progress(
                Progress(
                    self.scale,
                    len(self.sizes),
                    self.step,
                    self.options.steps * self.tiles[self.scale - 1],
                    loss,
                    self.eta(),
                    self.tile,
                    self.tiles[self.scale - 1],
                )
            )


def _optimise(
    run: _Run,
    graph: StyleGraph,
    start: np.ndarray,
    content: np.ndarray,
    grams: dict[str, np.ndarray],
    balance: Balance,
    control: bool = True,
) -> np.ndarray:
    """One image (or tile) at one scale: content target from `content`, style targets `grams`.
    With the balanced loss the evaluations run in segments; after each the style distance is measured
    and the gain corrected towards strength's target (_next_gain; tiles keep the run's gain).
    The optimiser runs where the graph's device keeps its vectors (core/device_optim.py), or on the
    host for graphs without one (the benchmark's PyTorch graph, the CLI's recording one)."""
    content_target = graph.features(content)[f"content_{CONTENT_LAYER}"]
    targets = Targets(grams=grams, content=content_target)
    steering = control and _controlled(run.options)
    image = start
    for steps in _segments(run.options.steps) if steering else [run.options.steps]:
        weights = _graph_weights(
            run.options, balance, content_target, *start.shape[:2], gain=run.gain
        )
        image = _run_optimiser(run, graph, image, targets, weights, steps)
        if steering:
            own = graph.features(image)
            remaining = _style_distance(own, grams) / balance.distance
            run.gain = _next_gain(run.options, run.gain, remaining)
    return image


def _run_optimiser(
    run: _Run,
    graph: StyleGraph,
    start: np.ndarray,
    targets: Targets,
    weights: LossWeights,
    steps: int,
) -> np.ndarray:
    """`steps` evaluations of the options' optimiser from `start` (host or device loop)."""
    kwargs = {"lr": run.options.learning_rate} if run.options.optimizer == "adam" else {}
    if not getattr(graph, "device_loop", False):
        optimiser = OPTIMISERS[run.options.optimizer]
        result = optimiser(
            lambda x: run.evaluate(graph, x, targets, weights), start, steps, **kwargs
        )
        return result.x
    updates = update_graphs(graph.concrete_device)
    pixels = start.shape[0] * start.shape[1]

    def evaluate(x, g) -> float:
        run.begin()
        loss = graph.loss_on_device(x, g, targets, weights)
        run.end(loss, updates.finite(g), pixels)
        return loss

    optimiser = DEVICE_OPTIMISERS[run.options.optimizer]
    result = optimiser(evaluate, as_nchw(start), steps, updates, **kwargs)
    return result.x[0].transpose(1, 2, 0)


def cuda_tile_budget(free_bytes: int) -> float:
    """Megapixels one CUDA tile may have: 80% of the free device memory (the rest: cuDNN workspaces,
    fragmentation) over what a megapixel costs the grad graph and the device loop; at least the
    default."""
    return max(
        DEFAULT_TILE_MPX, 0.8 * free_bytes / ((TILE_GB_PER_MPX["cuda"] + LOOP_GB_PER_MPX) * 1e9)
    )


def _default_tile_budget(graph: StyleGraph) -> float:
    """DEFAULT_TILE_MPX, or on CUDA what its free memory holds (when the CUDA runtime answers)."""
    free = cuda_free_bytes() if getattr(graph, "concrete_device", None) == "cuda" else None
    return DEFAULT_TILE_MPX if free is None else cuda_tile_budget(free)


def _tile_side(options: StyleOptions) -> int:
    return max(MIN_SIDE * 4, int(math.sqrt(options.tile_budget_mpx * 1e6)))


def _tiles_for(height: int, width: int, options: StyleOptions):
    side = _tile_side(options)
    if height * width <= options.tile_budget_mpx * 1e6 or max(height, width) <= side:
        return None
    overlap = min(options.tile_overlap, side // 2)
    return tile_grid(height, width, side, overlap)


def _optimise_tiled(
    run: _Run,
    graph: StyleGraph,
    start: np.ndarray,
    content: np.ndarray,
    grams: dict[str, np.ndarray],
    tiles,
    budget_px: int,
    balance: Balance,
) -> np.ndarray:
    """Each tile optimised on its own from the same start (the previous scale, upsampled), content
    target from its own crop; results blended with raised-cosine weights in the overlaps.

    Style targets are the whole style image's Grams T, shifted per tile by how the tile's statistics
    differ from the whole image's at the start: T_t = T + Ĝ_t(start) − Ĝ(start). Then the tile's style
    gradient F_t(Ĝ_t − T_t) = F_t(Ĝ − T) is, at the start, the untiled run's gradient (the content and
    TV terms share the same n/n_t factor), so a tile of sky isn't forced to hold the whole style's
    palette, neighbours evolve alike in their overlap, and tiled and untiled runs agree away from the
    seams (tests/test_engine_tiling.py). Starting later tiles from their neighbours' results instead
    was measured worse: they then changed far less in the same steps."""
    whole = _style_grams(graph, start, budget_px)
    blender = Blender(*start.shape[:2])
    for i, tile in enumerate(tiles, 1):
        run.tile = i
        ys, xs = tile.slices
        own = graph.features(start[ys, xs])
        shifted = {
            layer: grams[layer] + own[f"gram_{layer}"] - whole[layer] for layer in STYLE_LAYERS
        }
        blender.add(
            tile,
            _optimise(run, graph, start[ys, xs], content[ys, xs], shifted, balance, control=False),
            tile_weights(tile, tiles),
        )
    run.tile = 1
    return np.clip(blender.result(), 0, 1)


def _prepare(content: np.ndarray, styles: list[np.ndarray], mode: str | None):
    """Colour preservation applied to the inputs: what the network sees."""
    if mode == "luminance":
        cy = color.luminance(content)
        return color.gray3(cy), [
            color.gray3(color.match_luminance(color.luminance(s), cy)) for s in styles
        ]
    if mode == "histogram":
        return content, [color.match_color_histogram(s, content) for s in styles]
    return content, styles


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
    graph: StyleGraph | None = None,
) -> np.ndarray:
    """Stylise `content` (float32 [H,W,3] RGB in [0,1]) with `styles`; returns float32 [h,w,3] in [0,1],
    where (h,w) is the content's size, shrunk so the longer side ≤ options.max_size.

    progress(Progress) is called after every evaluation; cancel() is polled before every evaluation
    and a True makes stylize raise Cancelled. User errors raise StyleError subclasses (one line).
    graph: an already loaded StyleGraph to reuse (sessions take a second or two to create); None loads
    the one for options.pooling and options.device (anything with its features/loss_and_grad will do:
    the benchmark passes the PyTorch reference)."""
    options = options or StyleOptions()
    content = _check_image(content, "content image")
    styles = [_check_image(s, f"style image {i + 1}") for i, s in enumerate(styles)]
    blend = check_options(options, len(styles))
    height, width = check_sizes(content.shape[:2], [s.shape[:2] for s in styles], options)
    content = resize(content, height, width)  # a no-op unless max_size shrinks it
    original_content = content
    content, styles = _prepare(content, styles, options.preserve_colors)

    if graph is None:
        graph = StyleGraph.load(options.pooling, options.device, options.model_dir)
    if options.tile_budget_mpx is None:
        options = replace(options, tile_budget_mpx=_default_tile_budget(graph))
    sizes = scale_sizes(height, width, options)
    tilings = [_tiles_for(h, w, options) for h, w in sizes]
    run = _Run(options, sizes, [len(t) if t else 1 for t in tilings], progress, cancel)
    rng = np.random.default_rng(options.seed)
    image = _load_init(options.init, *sizes[0], rng)
    if image is not None and options.preserve_colors == "luminance":
        image = color.gray3(color.luminance(image))
    budget_px = int(options.tile_budget_mpx * 1e6)

    for index, ((h, w), tiles) in enumerate(zip(sizes, tilings), 1):
        run.scale, run.step = index, 0
        scaled_content = resize(content, h, w)
        # strength 0: the loss is the content term alone, whose minimum is the content itself
        fresh = image is None or options.strength == 0
        start = scaled_content if fresh else resize(image, h, w)
        grams = _blended_grams(graph, styles, blend, h, w, options.style_scale, budget_px)
        balance = _balance(graph, scaled_content, grams, budget_px)
        if tiles is None:
            image = _optimise(run, graph, start, scaled_content, grams, balance)
        else:
            image = _optimise_tiled(
                run, graph, start, scaled_content, grams, tiles, budget_px, balance
            )

    if options.preserve_colors == "luminance":
        image = color.recombine(color.luminance(image), original_content)
    return np.clip(image, 0, 1).astype(np.float32)


def _blended_grams(
    graph: StyleGraph,
    styles: list[np.ndarray],
    blend: np.ndarray,
    height: int,
    width: int,
    style_scale: float,
    budget_px: int,
) -> dict[str, np.ndarray]:
    """Target Grams for one scale: each style resized relative to the image's current size, then the
    blend-weighted mean of their Grams (Gatys et al. 2017, §4: mixing styles by their Gram targets)."""
    longer = style_side(height, width, style_scale)
    out = {layer: 0.0 for layer in STYLE_LAYERS}  # at least one weight is > 0 (check_options)
    for style, weight in zip(styles, blend):
        if weight == 0:
            continue
        grams = _style_grams(graph, resize(style, *fit_size(*style.shape[:2], longer)), budget_px)
        for layer in STYLE_LAYERS:
            out[layer] = out[layer] + weight * grams[layer]
    return {layer: out[layer].astype(np.float32) for layer in STYLE_LAYERS}
