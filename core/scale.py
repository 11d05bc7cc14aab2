"""One scale's problem: the style targets, what the loss terms are divided by (the balance) and the
graph's weights (DEVELOPERS.md "The maths", docs/decisions/balance.md).

At each scale the engine measures the content image against the targets (`balance`) and
`graph_weights` turns strength and the weights into the graph's α, β, λ, tv_weight so that every term
is relative — the content term is ½·(relative relu4_2 error)², each style layer's its style cost over
the content image's own — so one strength looks alike on every style picture and at every resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .graph import LossTerms, LossWeights, Targets
from .images import fit_size, resize
from .layers import CONTENT_LAYER, DOWNSAMPLING, MIN_SIDE, STYLE_LAYERS
from .loss import style_distance, style_layer_cost
from .steering import SteeringSettings

if TYPE_CHECKING:
    from .engine import StyleOptions

Grams = dict[str, np.ndarray]  # {layer: normalised Gram Ĝ [C,C]}


class GraphLike(Protocol):
    """What the engine needs of a graph: core/graph.py's StyleGraph, or any other (the benchmarks'
    PyTorch reference). A graph may also keep the optimiser's vectors on its device: DeviceLoopGraph."""

    def features(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """{"gram_<layer>": Ĝ [C,C] per style layer, "content_relu4_2": [1,C,h,w]}."""
        ...

    def loss_and_grad(
        self, image: np.ndarray, targets: Targets, weights: LossWeights
    ) -> tuple[LossTerms, np.ndarray]:
        """The loss's terms and d loss / d image, in the image's layout."""
        ...


class DeviceLoopGraph(GraphLike, Protocol):
    """A graph whose device keeps the optimiser's vectors (StyleGraph on CUDA, or when asked): the
    engine runs core/device_optim.py's loop on it when `device_loop` is True."""

    device_loop: bool
    concrete_device: str  # "cpu", "cuda", "directml": which update graphs to load

    def loss_on_device(self, x, g, targets: Targets, weights: LossWeights) -> float:
        """The total loss at x, d loss / d x written into g (x, g: OrtValues [1,3,H,W] on the device)."""
        ...


@dataclass(frozen=True)
class WholeFeatures:
    """An image's features measured whole (in pieces above the memory budget)."""

    grams: Grams
    energy: float  # mean squared relu4_2 activation
    content: np.ndarray | None  # relu4_2 [1,C,h,w]; None when measured in pieces


def _pieces(image: np.ndarray, budget_px: int) -> Iterator[np.ndarray]:
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


def whole_features(graph: GraphLike, image: np.ndarray, budget_px: int) -> WholeFeatures:
    """Normalised Grams of the whole image and its mean squared relu4_2 activation. Above the budget
    the image is cut into pieces whose Grams (and sums) are added weighted by n_H·n_W per layer — the
    whole image's up to the convolutions' padding at the cuts."""
    acc = {layer: np.zeros(()) for layer in STYLE_LAYERS}  # float64 sums; 0-d: broadcast to [C,C]
    count = {layer: 0 for layer in STYLE_LAYERS}
    energy, elements, pieces = 0.0, 0, 0
    for piece in _pieces(image, budget_px):
        feats = graph.features(piece)
        for layer in STYLE_LAYERS:
            n = (piece.shape[0] // DOWNSAMPLING[layer]) * (piece.shape[1] // DOWNSAMPLING[layer])
            acc[layer] = acc[layer] + feats[f"gram_{layer}"].astype(np.float64) * n
            count[layer] += n
        a = feats[f"content_{CONTENT_LAYER}"].astype(np.float64)
        energy, elements, pieces = energy + float(np.sum(a * a)), elements + a.size, pieces + 1
    grams = {layer: (acc[layer] / count[layer]).astype(np.float32) for layer in STYLE_LAYERS}
    content = feats[f"content_{CONTENT_LAYER}"] if pieces == 1 else None
    return WholeFeatures(grams=grams, energy=energy / elements, content=content)


def style_grams(graph: GraphLike, style: np.ndarray, budget_px: int) -> Grams:
    """Normalised Grams of the whole style image (in pieces above the budget: whole_features)."""
    return whole_features(graph, style, budget_px).grams


def blended_grams(
    graph: GraphLike,
    styles: list[np.ndarray],
    blend: np.ndarray,
    longer: int,
    budget_px: int,
) -> Grams:
    """Target Grams for one scale: each style resized to `longer` px (engine.style_side), then the
    blend-weighted mean of their Grams (Gatys et al. 2017, §4: mixing styles by their Gram targets)."""
    # float64 sums (the blend is float64), 0-d: broadcast to [C,C]; at least one weight is > 0
    # (_check_options)
    out = {layer: np.zeros(()) for layer in STYLE_LAYERS}
    for style, weight in zip(styles, blend):
        if weight == 0:
            continue
        height, width = style.shape[:2]
        grams = style_grams(graph, resize(style, *fit_size(height, width, longer)), budget_px)
        for layer in STYLE_LAYERS:
            out[layer] = out[layer] + weight * grams[layer]
    return {layer: out[layer].astype(np.float32) for layer in STYLE_LAYERS}


@dataclass(frozen=True)
class Balance:
    """What one scale's loss terms are divided by (docs/decisions/balance.md): measured on the
    whole content image at that scale, so that every tile of it is weighted alike."""

    content: float  # mean a(C)² over relu4_2: α·J_content = ½·(relative relu4_2 error)²
    style: tuple[float, ...]  # per layer J_style[l] of the content image itself: each starts at 1
    # the content image's style distance (loss.style_distance): strength's target is a fraction of it
    distance: float = 1.0


def balance(
    graph: GraphLike,
    content: np.ndarray,
    grams: Grams,
    budget_px: int,
    features: WholeFeatures | None = None,
) -> Balance:
    """One scale's normalisers: the content image's relu4_2 energy, and per style layer the content
    image's own style cost against the targets, so every layer's term starts at 1 and strength sets
    how far, relatively, the picture moves from the content's statistics towards the style's.
    features: the content's, when already measured (whole_features), else measured here.

    Why this and not the targets' norms ‖Ĝ(S)‖² (the relative squared Gram error) or the gradient
    norm at the first step, judged on the evaluation set (docs/decisions/balance.md): with the
    targets' norms one layer of some styles dominates (bricks: relu5_1 starts at 7x its target's norm)
    and the first-step pull varied 500x between style pictures, leaving stained glass and hatching
    unpainted; gradient calibration reached the same reductions at higher content errors, or less
    reduction at the same, and costs an evaluation per scale."""
    features = features or whole_features(graph, content, budget_px)
    style = []
    for layer in STYLE_LAYERS:
        target = grams[layer]
        n_c = target.shape[0]
        # a content already at the target: fall back to a millionth of the target's own energy
        floor = 1e-6 * style_layer_cost(target, np.zeros_like(target))
        cost = style_layer_cost(target, features.grams[layer])
        style.append(max(cost, floor, 1e-30 / (2 * n_c) ** 2))
    distance = style_distance(grams, features.grams)
    return Balance(
        content=max(features.energy, 1e-30), style=tuple(style), distance=max(distance, 1e-30)
    )


# The engine's balance, or a benchmark's variant (benchmarks/judge.py): stylize(..., balance_fn=...)
BalanceFn = Callable[[GraphLike, np.ndarray, Grams, int, WholeFeatures], Balance]


def graph_weights(
    options: StyleOptions,
    balance: Balance,
    content_target: np.ndarray,
    height: int,
    width: int,
    gain: float | None = None,
) -> LossWeights:
    """The graph's α, β, λ, tv_weight for one image (or tile): sums become means per element, the
    balanced terms relative to the scale's targets (module doc). A tile's α and TV share the factor
    n/n_tile with its Gram-normalised style term, as untiled (core/tiled.py). gain: the balanced style
    term's β (core/steering.py); None: the starting gain."""
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
        beta=SteeringSettings().start_gain * options.strength if gain is None else gain,
        style_layer_weights=tuple(
            w / (n * norm) for w, norm in zip(options.style_layer_weights, balance.style)
        ),
        tv_weight=tv,
    )
