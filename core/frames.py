"""Moving pictures without flicker: a sequence of frames styled one after another (Ruder,
Dosovitskiy & Brox, "Artistic style transfer for videos", GCPR 2016).

Each frame optimised on its own flickers: the texture lands somewhere else every frame. So, after
the first frame (styled as `stylize` styles a picture, all scales), each frame
- starts from the previous result, warped onto it by the optical flow of the content frames
  (core/flow.py), and runs the last scale only: the warped result is already a good start;
- adds the temporal term w·J_temporal, J_temporal = (1/D)·Σ c ⊙ (x − ω(x_prev))² (core/loss.py),
  whose mask c is 0 where the flow says a pixel was hidden or sits on a motion edge.
The style targets are one set of Grams per scale, computed once for every frame.

`FrameSequence` keeps only the previous frame's content and result: frames stream through it.
Where the temporal term runs: beside the grad graph, in numpy for the host loop (the CPU) and as
the small `temporal` update graph on a device loop (core/device_optim.py), so nothing but the loss
crosses to the host there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from . import color
from .device_optim import update_graphs
from .engine import CancelFn, ProgressFn, StyleOptions, stylize, work_size
from .errors import ImageError, StyleError
from .flow import Flow, FlowError, check_opencv, optical_flow, warp
from .graph import LossTerms, LossWeights, StyleGraph, Targets, as_nchw
from .images import check_image, resize
from .options import MAX_WEIGHT, check_options
from .scale import Grams, GraphLike, blended_grams
from .tiled import default_tile_budget, tiles_for

# The temporal term's weight w: relative to the balanced content and style terms (core/scale.py),
# on J_temporal, a mean over pixels. docs/decisions/temporal-weight.md: flicker and style error on
# the evaluation clips against the weight.
DEFAULT_TEMPORAL_WEIGHT = 150.0

FlowFn = Callable[[np.ndarray, np.ndarray], Flow]


def check_temporal_weight(weight: float) -> float:
    """The weight as a float, or one line: a number ≥ 0 and ≤ MAX_WEIGHT (0: independent frames)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise StyleError(f"temporal_weight must be a number, got {weight!r}")
    if not math.isfinite(weight) or not 0 <= weight <= MAX_WEIGHT:
        raise StyleError(f"temporal_weight must be ≥ 0 and ≤ {MAX_WEIGHT:g}, got {weight:g}")
    return float(weight)


def frame_at_work_size(
    frame: np.ndarray,
    number: int,
    first: tuple[tuple[int, ...], int] | None,
    options: StyleOptions,
) -> np.ndarray:
    """Frame `number` (from 1) checked (check_image) and resized to the work size; `first`: the
    (size as given, number) of the first frame seen, whose size every frame must have (None: this
    frame is the first)."""
    frame = check_image(frame, f"frame {number}")
    height, width = frame.shape[:2]
    if first is not None and (height, width) != tuple(first[0]):
        h, w = first[0]
        raise ImageError(
            f"frame {number} is {width}x{height} px, frame {first[1]} was {w}x{h}: every frame "
            f"must have the same size"
        )
    return resize(frame, *work_size(height, width, options))


class TemporalGraph:
    """A graph (GraphLike, and DeviceLoopGraph when its graph is) with the temporal term added to
    the loss: weight·(1/D)·Σ c ⊙ (x − target)², for images of the target's size only."""

    def __init__(self, graph: GraphLike, target: np.ndarray, mask: np.ndarray, weight: float):
        self.graph = graph
        self.target, self.mask = target, mask  # [H,W,3], [H,W]
        self.k = weight / target.size  # weight / D
        self.device_loop: bool = getattr(graph, "device_loop", False)
        self.concrete_device: str = getattr(graph, "concrete_device", "cpu")
        self._on_device: tuple | None = None  # target, mask, the grad graph's own gradient

    def __getattr__(self, name: str):
        return getattr(self.graph, name)  # the rest of the graph's face (manifest, device, ...)

    def features(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return self.graph.features(image)

    def _check(self, shape: tuple[int, ...]) -> None:
        if tuple(shape) != self.target.shape[:2]:
            raise StyleError(
                f"the temporal term is for {self.target.shape[:2]} images, not {shape}"
            )

    def loss_and_grad(
        self, image: np.ndarray, targets: Targets, weights: LossWeights
    ) -> tuple[LossTerms, np.ndarray]:
        terms, grad = self.graph.loss_and_grad(image, targets, weights)
        hwc = np.ndim(image) == 3
        x = image if hwc else image[0].transpose(1, 2, 0)
        self._check(x.shape[:2])
        masked = self.mask[..., None] * (x - self.target)
        cost = self.k * float(np.sum(masked * (x - self.target), dtype=np.float64))
        extra = (2 * self.k) * masked
        grad = grad + (extra if hwc else extra.transpose(2, 0, 1)[None])
        return replace(terms, total=terms.total + cost), grad.astype(np.float32, copy=False)

    def loss_on_device(self, x, g, targets: Targets, weights: LossWeights) -> float:
        """The grad graph writes its gradient into a spare vector; the temporal graph adds its term's
        and writes the sum into g (a graph can't write a buffer it reads)."""
        self._check(tuple(x.shape()[2:]))
        graphs = update_graphs(self.concrete_device)
        if self._on_device is None:
            target = graphs.vector(tuple(x.shape()), as_nchw(self.target))
            mask = graphs.vector((1, 1, *self.mask.shape), self.mask[None, None])
            self._on_device = (target, mask, graphs.vector(tuple(x.shape())))
        target, mask, spare = self._on_device
        loss = self.graph.loss_on_device(x, spare, targets, weights)  # type: ignore[attr-defined]
        inputs = {"x": x, "g": spare, "target": target, "mask": mask, "k": np.float32(self.k)}
        return loss + float(graphs.scalars("temporal", inputs, {"g_out": g})[0])


class FrameSequence:
    """Frames styled in order, each from the last (module doc). `next(content)` styles one frame;
    `index` counts the frames done; `notes` collects one-line notes to show once (a frame whose flow
    failed started unwarped). `grams`: a cache of the style targets to share with other sequences
    of the same styles and options. On an exception in `next` (Cancelled, StyleError) the
    sequence is as before it: the same frame may be sent again."""

    def __init__(
        self,
        styles: Sequence[np.ndarray],
        options: StyleOptions | None = None,
        temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT,
        *,
        graph: GraphLike | None = None,
        flow: FlowFn = optical_flow,
        grams: dict[int, Grams] | None = None,
    ) -> None:
        self.options = options or StyleOptions()
        self.styles = [check_image(s, f"style image {i + 1}") for i, s in enumerate(styles)]
        self.blend = check_options(self.options, len(self.styles))
        self.temporal_weight = check_temporal_weight(temporal_weight)
        if self.temporal_weight > 0 and flow is optical_flow:
            check_opencv()
        self.graph: GraphLike = graph or StyleGraph.load(
            self.options.pooling, self.options.device, self.options.model_dir
        )
        if self.options.tile_budget_mpx is None:  # stylize's own default, resolved once
            self.options = replace(self.options, tile_budget_mpx=default_tile_budget(self.graph))
        self.flow = flow
        self.flow_failed = False  # said once
        self.index = 0
        self.notes: list[str] = []
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # content, result (work size)
        # the style targets by style side, filled as needed; a dict given by the caller is shared
        # (a Ray worker's chunks of one clip)
        self._grams: dict[int, Grams] = {} if grams is None else grams
        self._first: tuple[tuple[int, ...], int] | None = None  # the first frame's size, number

    def resume(self, previous_content: np.ndarray, previous_result: np.ndarray, index: int) -> None:
        """Go on after `index` frames done earlier (a resumed run): the last one's content frame
        and its result."""
        content = self._work_content(previous_content, index)
        self._previous = (
            content,
            resize(check_image(previous_result, "result"), *content.shape[:2]),
        )
        self.index = index

    def next(
        self,
        content: np.ndarray,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> np.ndarray:
        """The next frame's result: float32 [h,w,3] at stylize's size for this content."""
        number = self.index + 1
        content = self._work_content(content, number)
        grams = None if self.options.preserve_colors else self._style_grams
        if self._previous is None or self.temporal_weight == 0:
            result = stylize(
                content, self.styles, self.options, progress, cancel,
                graph=self.graph, style_grams=grams,
            )  # fmt: skip
        else:
            start, graph = self._temporal_start(content, number)
            options = replace(self.options, scales=1, init=start)
            result = stylize(
                content, self.styles, options, progress, cancel, graph=graph, style_grams=grams
            )
        self._previous, self.index = (content, result), number
        return result

    def _work_content(self, content: np.ndarray, number: int) -> np.ndarray:
        """The frame at the work size (frame_at_work_size); no tiles (the temporal term is for
        whole frames)."""
        given = np.shape(content)[:2]
        content = frame_at_work_size(content, number, self._first, self.options)
        self._first = self._first or (given, number)
        height, width = content.shape[:2]
        if tiles_for(height, width, self.options) is not None:
            raise StyleError(
                f"frames of {width}x{height} px would be styled in tiles (tile_budget "
                f"{self.options.tile_budget_mpx:g} Mpx); raise tile_budget to "
                f"{height * width / 1e6:.2f} or lower max_size"
            )
        return content

    def _temporal_start(self, content: np.ndarray, number: int) -> tuple[np.ndarray, GraphLike]:
        """The warped previous result, and the graph with the temporal term towards it; when the
        flow fails: the previous result unwarped, no temporal term (said once, in notes)."""
        previous_content, previous = self._previous  # type: ignore[misc]
        try:
            flow = self.flow(previous_content, content)
        except FlowError as e:
            if not self.flow_failed:
                self.notes.append(
                    f"frame {number}: {e}; it started from the previous result unwarped"
                )
                self.flow_failed = True
            return previous, self.graph
        start = warp(previous, flow.backward)
        target = start
        if self.options.preserve_colors == "luminance":  # the engine optimises the luminance
            target = color.gray3(color.luminance(start))
        return start, TemporalGraph(self.graph, target, flow.mask, self.temporal_weight)

    def _style_grams(self, longer: int) -> Grams:
        """The style targets for a style side: once for all frames (without preserve_colors)."""
        if longer not in self._grams:
            budget_px = int((self.options.tile_budget_mpx or 0) * 1e6)
            self._grams[longer] = blended_grams(
                self.graph, self.styles, self.blend, longer, budget_px
            )
        return self._grams[longer]
