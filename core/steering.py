"""Strength as a target: the style term's gain, steered during the run (docs/decisions/strength-target.md; "Strength as a
target").

Strength s asks that the style distance (core/loss.py `style_distance`, on the engine's network and
its own targets) fall to target_remaining**s of the content image's. Each scale runs its evaluations
in segments; after each, the engine measures the remaining fraction and `Steering.correct` sets the
gain for the next segment, assuming remaining ∝ gain**-exponent, by at most `step`× a correction and
within `range`× of the starting gain. The gain carries from scale to scale; tiles keep the run's gain
as it is (a tile's distance is not the image's). Strength 0 and an explicit style_weight keep a fixed
gain: nothing to steer.

    steerer = Steering(SteeringSettings(), strength=1.0, balanced=True)
    for steps in steerer.segments(150):          # [50, 50, 50]
        ...run `steps` evaluations at steerer.gain, measure the remaining fraction r...
        steerer.correct(r)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SteeringSettings:
    """The steering's numbers (measured: docs/decisions/strength-target.md)."""

    start_gain: float = 3.0
    """The balanced style term's gain at strength 1 before any correction (STYLE_GAIN)."""
    target_remaining: float = 0.26
    """Strength s asks the style distance to fall to target_remaining**s of the content image's."""
    segments: int = 3
    """At most this many segments a scale (each restarts L-BFGS: its memory belongs to the old loss)."""
    min_steps: int = 15
    """At least this many evaluations a segment: shorter runs keep one segment."""
    exponent: float = 0.3
    """The assumed slope: remaining ∝ gain**-exponent (the median over 23 pairs)."""
    step: float = 3.0
    """A correction changes the gain by at most this factor (1: the gain stays where it starts)."""
    range: float = 10.0
    """The gain stays within this factor of start_gain·strength."""
    steer: bool = True
    """False: no segments and no measurements, the gain stays start_gain·strength all run."""


class Steering:
    """The gain of one run, and how each scale's evaluations are split to correct it."""

    def __init__(self, settings: SteeringSettings, strength: float, balanced: bool) -> None:
        """balanced: the balanced style term (style_weight None). An explicit style_weight is the
        seed's raw β, and strength 0 is the content alone: neither is steered."""
        self.settings = settings
        self.strength = strength
        self.start = settings.start_gain * strength
        self.gain = self.start
        self.active = settings.steer and balanced and strength > 0

    @property
    def target(self) -> float:
        """The remaining fraction of the style distance strength asks for."""
        return self.settings.target_remaining**self.strength

    def segments(self, steps: int) -> list[int]:
        """A scale's evaluations in segments (the remainder to the last); one when not steering."""
        if not self.active:
            return [steps]
        parts = max(1, min(self.settings.segments, steps // self.settings.min_steps))
        return [steps // parts] * (parts - 1) + [steps - steps // parts * (parts - 1)]

    def correct(self, remaining: float) -> float:
        """The gain that should bring the measured remaining fraction to the target; kept, and
        returned."""
        s = self.settings
        factor = (max(remaining, 1e-6) / self.target) ** (1 / s.exponent)
        factor = min(max(factor, 1 / s.step), s.step)
        self.gain = min(max(self.gain * factor, self.start / s.range), self.start * s.range)
        return self.gain
