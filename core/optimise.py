"""One image (or tile) at one scale: the optimiser's evaluations, in the steering's segments.

The optimiser runs where the graph's device keeps its vectors (core/device_optim.py), or on the host
for graphs without one (the benchmark's PyTorch graph, the CLI's recording one). Every evaluation is
reported to a `Meter`: before it (a cancel is honoured there) and after it (the NaN guard, progress).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

from .device_optim import OPTIMISERS as DEVICE_OPTIMISERS
from .device_optim import update_graphs
from .errors import StyleError
from .graph import LossWeights, Targets, as_nchw
from .loss import layer_grams, style_distance
from .optim import OPTIMISERS
from .scale import Balance, DeviceLoopGraph, GraphLike, graph_weights
from .steering import Steering

if TYPE_CHECKING:
    from .engine import StyleOptions


class Meter(Protocol):
    """What watches the evaluations (core/schedule.py's Run for a stylize call, a tile task's own)."""

    def begin(self) -> None:
        """Before each evaluation: raise Cancelled when asked to stop."""
        ...

    def end(self, loss: float, finite: bool, pixels: int) -> None:
        """After each: `finite` whether the gradient is; raise StyleError on a NaN or inf (check_finite)."""
        ...


def check_finite(loss: float, grad_finite: bool, where: str) -> None:
    """The NaN guard: one line saying where and what to lower."""
    if not math.isfinite(loss) or not grad_finite:
        raise StyleError(
            f"the loss became {'NaN' if math.isnan(loss) else 'infinite'} at {where}; lower the "
            f"strength or the style, content or TV weight"
        )


# run_optimiser's signature: what stylize(..., optimiser=...) may put in its place (a benchmark's
# PyTorch optimiser): (graph, start, targets, weights, steps, options, meter) -> the result image
OptimiserFn = Callable[
    [GraphLike, np.ndarray, Targets, LossWeights, int, "StyleOptions", Meter], np.ndarray
]


def run_optimiser(
    graph: GraphLike,
    start: np.ndarray,
    targets: Targets,
    weights: LossWeights,
    steps: int,
    options: StyleOptions,
    meter: Meter,
) -> np.ndarray:
    """`steps` evaluations of the options' optimiser from `start` (host or device loop)."""
    kwargs = {"lr": options.learning_rate} if options.optimizer == "adam" else {}
    pixels = start.shape[0] * start.shape[1]
    if not getattr(graph, "device_loop", False):

        def evaluate_host(x: np.ndarray) -> tuple[float, np.ndarray]:
            meter.begin()
            terms, grad = graph.loss_and_grad(x, targets, weights)
            meter.end(terms.total, bool(np.isfinite(grad).all()), pixels)
            return terms.total, grad

        return OPTIMISERS[options.optimizer](evaluate_host, start, steps, **kwargs).x
    graph = cast(DeviceLoopGraph, graph)
    updates = update_graphs(graph.concrete_device)

    def evaluate_device(x, g) -> float:
        meter.begin()
        loss = graph.loss_on_device(x, g, targets, weights)
        meter.end(loss, updates.finite(g), pixels)
        return loss

    optimiser = DEVICE_OPTIMISERS[options.optimizer]
    result = optimiser(evaluate_device, as_nchw(start), steps, updates, **kwargs)
    return result.x[0].transpose(1, 2, 0)


def optimise(
    graph: GraphLike,
    start: np.ndarray,
    targets: Targets,
    balance: Balance,
    options: StyleOptions,
    meter: Meter,
    steerer: Steering,
    optimiser: OptimiserFn = run_optimiser,
) -> np.ndarray:
    """One whole image at one scale from `start`. When the steerer is active the evaluations run in
    its segments; after each the style distance is measured (one features pass) and the gain
    corrected towards strength's target. A tile runs one segment at the run's gain instead
    (core/tiled.py: a tile's distance is not the image's)."""
    image = start
    for steps in steerer.segments(options.steps):
        weights = graph_weights(
            options, balance, targets.content, *start.shape[:2], gain=steerer.gain
        )
        image = optimiser(graph, image, targets, weights, steps, options, meter)
        if steerer.active:
            distance = style_distance(targets.grams, layer_grams(graph.features(image)))
            steerer.correct(distance / balance.distance)
    return image
