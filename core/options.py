"""Every option a user can set, declared once: the engine's StyleOptions, its presets, and for each
field its type, range or choices, CLI flag, help text and whether the worker protocol takes it.

Derived from OPTIONS, nowhere else: the engine's check (`check_options`, run by `stylize`), the
CLI's flags (plugin/commands/options.py) and the protocol's checks of engine options
(plugin/protocol/requests.py: NUMBERS' "options.*" entries, ENGINE_OPTIONS). One range per
option, the same everywhere: a value one front end takes, every front end takes.

Adding an option: a StyleOptions field and its Option below (tests check each field has one).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from .errors import StyleError
from .layers import MIN_SIDE, STYLE_LAYERS
from .optim import OPTIMISERS
from .runtime import DEVICES

# Weights become float32 graph inputs: a larger one would overflow to inf in the cast.
MAX_WEIGHT = float(np.finfo(np.float32).max)
MAX_SEED = 2**63 - 1  # numpy takes any integer ≥ 0; an int64 is plenty and fits every front end
MAX_STEPS = 100_000  # steps a scale: far beyond any preset (300), yet a bounded run
MAX_COUNT = 2**31 - 1  # sizes and counts: far above any image or run, and every front end's int
PRESERVE_COLORS = (None, "luminance", "histogram")
POOLINGS = ("avg", "max")
INIT_WORDS = ("content", "noise")  # besides a file path (CLI) or an RGB array (engine)


@dataclass(frozen=True)
class Number:
    """A numeric option's type and range (the protocol's numeric fields use it too)."""

    integer: bool
    minimum: float
    maximum: float
    above_minimum: bool = False  # the minimum itself is excluded
    nullable: bool = False  # None is allowed (the option's "none" meaning)

    def describe(self) -> str:
        kind, shown = ("an integer", int) if self.integer else ("a number", lambda x: f"{x:g}")
        low = f"> {shown(self.minimum)}" if self.above_minimum else f"≥ {shown(self.minimum)}"
        return f"{kind} {low} and ≤ {shown(self.maximum)}" + (" (or null)" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        kind = numbers.Integral if self.integer else numbers.Real
        if not isinstance(value, kind) or isinstance(value, bool):  # True/False are not numbers
            return False
        if not isinstance(value, numbers.Integral) and not math.isfinite(value):
            return False  # (ints are not converted: they may exceed floats)
        # numbers.Real declares only < and <=: the bounds are compared with the value on the left
        too_low = value <= self.minimum if self.above_minimum else value < self.minimum
        return not too_low and value <= self.maximum


def _count(minimum: int, maximum: int = MAX_COUNT, nullable: bool = False) -> Number:
    return Number(integer=True, minimum=minimum, maximum=maximum, nullable=nullable)


def _weight(above_zero: bool = False, nullable: bool = False) -> Number:
    return Number(False, 0.0, MAX_WEIGHT, above_minimum=above_zero, nullable=nullable)


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
    """"auto" (the first of runtime.AUTO_ORDER that works here, else cpu) or one of runtime.DEVICES."""
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


@dataclass(frozen=True)
class Option:
    """One StyleOptions field as every front end sees it.

    `number` (its range) for a number, or for each item of a list of `count` numbers (None: one per
    style image); else `choices` (None among them: a valid value, spelled `none_word`). `none_word`:
    how the CLI (and the protocol, for choices) spell the field's None. `wire`: a stylize request's
    "options" may set it (plugin/protocol). `free_text`: the CLI also takes any other word (a path)."""

    name: str
    flags: tuple[str, ...]
    help: str
    metavar: str | None = None
    number: Number | None = None
    count: int | None = 0  # 0: a single value; else a list (None: one per style image)
    choices: tuple[Any, ...] = ()
    none_word: str | None = None
    wire: bool = True
    free_text: bool = False

    @property
    def limits(self) -> Number:
        """`number`, for an option that is numeric (or a list of numbers) by declaration."""
        assert self.number is not None, f"{self.name} is not a numeric option"
        return self.number

    def check(self, value: Any) -> None:
        """StyleError (one line) unless `value` is one this option takes (the engine's check)."""
        if self.count != 0:
            return self._check_list(value)
        if self.number is not None:
            if not self.number.accepts(value):
                raise StyleError(f"{self.name} must be {self.number.describe()}, not {value!r}")
        elif self.choices and value not in self.choices and not self._free(value):
            shown = ", ".join(self._spelled(c) for c in self.choices)
            raise StyleError(f"{self.name} must be one of {shown}, not {value!r}")

    def _spelled(self, choice: Any) -> str:
        """A choice as the user types it: None is the option's none_word."""
        if choice is None:
            assert self.none_word is not None, f"{self.name}: None among choices needs a none_word"
            return self.none_word
        return str(choice)

    def _free(self, value: Any) -> bool:
        return self.free_text and isinstance(value, (str, os.PathLike))

    def _check_list(self, value: Any) -> None:
        number = self.limits  # a list option declares its items' range
        if value is None and number.nullable:
            return
        items = tuple(value) if isinstance(value, (tuple, list)) else None
        if items is None or (self.count is not None and len(items) != self.count):
            many = f"{self.count} numbers" if self.count else "a list of numbers"
            raise StyleError(f"{self.name} needs {many}, not {value!r}")
        single = replace(number, nullable=False)
        if not all(single.accepts(item) for item in items) or sum(items) <= 0:
            raise StyleError(
                f"{self.name} must be numbers ≥ 0 and ≤ {MAX_WEIGHT:g}, not all 0, not {value!r}"
            )


OPTIONS: dict[str, Option] = {
    option.name: option
    for option in (
        Option(
            "strength",
            ("--strength",),
            "how much style: 0 gives the content, 1 a clearly stylised picture, more gives more; "
            "a strength looks alike on every style picture",
            "S",
            _weight(),
        ),
        Option(
            "steps",
            ("--steps",),
            "loss-and-gradient evaluations per scale (the unit of cost)",
            "N",
            _count(1, MAX_STEPS),
        ),
        Option(
            "scales",
            ("--scales",),
            "number of scales, coarse to fine (1 = single scale, as in the paper; "
            "default: as many as --min-size allows)",
            "N",
            _count(1, nullable=True),
        ),
        Option(
            "max_size",
            ("--max-size",),
            "longer side of the processed image and of the result; 'none' = the content's size",
            "PX",
            _count(MIN_SIDE, nullable=True),
            none_word="none",
        ),
        Option(
            "min_size",
            ("--min-size",),
            "smaller side of the coarsest scale",
            "PX",
            _count(1),
        ),
        Option(
            "content_weight",
            ("--content-weight",),
            "weight of the content cost (alpha): more keeps more of the content",
            "W",
            _weight(),
        ),
        Option(
            "style_weight",
            ("--style-weight",),
            "expert override: the seed's raw style weight (beta) instead of the balanced loss, "
            "times --strength; its right value differs by style picture (default: balanced)",
            "W",
            _weight(nullable=True),
        ),
        Option(
            "tv_weight",
            ("--tv-weight",),
            "weight of total variation (smoothness)",
            "W",
            _weight(),
        ),
        Option(
            "style_layer_weights",
            ("--style-layer-weights",),
            f"per-layer style weights for {', '.join(STYLE_LAYERS)}",
            ",".join(["W"] * len(STYLE_LAYERS)),
            _weight(),
            count=len(STYLE_LAYERS),
        ),
        Option(
            "style_blend",
            ("--style-blend",),
            "weight of each style image, one per STYLE (default: equal weights)",
            "W,W,...",
            _weight(nullable=True),
            count=None,
            wire=False,  # a request gives each style its "weight"
        ),
        Option(
            "style_scale",
            ("--style-scale",),
            "style image size relative to the result: <1 finer patterns, >1 bigger ones",
            "K",
            _weight(above_zero=True),
        ),
        Option(
            "init",
            ("--init",),
            "start image",
            "content|noise|PATH",
            choices=INIT_WORDS,
            free_text=True,  # a path on the CLI (a request can't name the worker's files)
        ),
        Option(
            "seed",
            ("--seed",),
            "seed for noise init",
            "N|random",
            _count(0, MAX_SEED, nullable=True),
            none_word="random",
        ),
        Option("optimizer", ("--optimizer",), "optimiser", choices=tuple(OPTIMISERS)),
        Option(
            "learning_rate",
            ("--learning-rate", "--lr"),
            "Adam's step in [0,1] pixel units",
            "LR",
            _weight(above_zero=True),
        ),
        Option(
            "preserve_colors",
            ("--preserve-colors", "--preserve-colours"),
            "keep the content's colours: none, luminance, histogram",
            "MODE",
            choices=PRESERVE_COLORS,
            none_word="none",
        ),
        Option("device", ("--device",), "where ONNX Runtime computes", choices=DEVICES),
        Option(
            "pooling",
            ("--pooling",),
            "VGG19 pooling (max needs 'onnxstyle export --pooling max')",
            choices=POOLINGS,
        ),
        Option(
            "model_dir",
            ("--model-dir",),
            "folder holding vgg19-<pooling>-*.onnx (default: the user model dir, then the "
            "shipped models)",
            "DIR",
            choices=(None,),
            free_text=True,
            wire=False,  # the worker's machine has its own
        ),
        Option(
            "tile_budget_mpx",
            ("--tile-budget",),
            "largest image optimised in one piece, megapixels; bigger ones run in tiles "
            "(default: 1, on CUDA what the free GPU memory holds)",
            "MPX",
            _weight(above_zero=True, nullable=True),
        ),
        Option(
            "tile_overlap",
            ("--tile-overlap",),
            "overlap of neighbouring tiles",
            "PX",
            _count(0),
        ),
    )
}
BY_PRESET = frozenset(name for values in PRESETS.values() for name in values)


def check_options(options: StyleOptions, n_styles: int) -> np.ndarray:
    """Every field against its declaration (StyleError, one line); returns the style images'
    blend weights, normalised."""
    for option in OPTIONS.values():
        value = getattr(options, option.name)
        if option.name == "init" and isinstance(value, np.ndarray):
            continue  # an RGB array: stylize checks it as an image
        option.check(value)
    if n_styles < 1:
        raise StyleError("at least one style image is needed")
    blend = options.style_blend or (1.0,) * n_styles
    if len(blend) != n_styles:
        raise StyleError(
            f"{n_styles} style image(s) but {len(blend)} blend weight(s); give one weight per style"
        )
    blend = np.asarray(blend, np.float64)
    return blend / blend.sum()
