"""Strength and the balanced loss (engine, issue 8): real ONNX Runtime (CPU), tiny images (≤ 64 px)."""

import numpy as np
import pytest
from helpers import example_image, relative_style_error

from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.errors import StyleError
from onnxstyle.core.graph import StyleGraph
from onnxstyle.core.steering import Steering, SteeringSettings


@pytest.fixture(scope="module")
def graph(style_graph_avg) -> StyleGraph:
    return style_graph_avg  # the session's, loaded once


@pytest.fixture(scope="module")
def content() -> np.ndarray:
    return example_image("chelsea.jpg", 48)


@pytest.fixture(scope="module")
def swirls() -> np.ndarray:
    """Dark, colourful, high contrast."""
    return example_image("swirls.jpg", 64)


@pytest.fixture(scope="module")
def grey_weave() -> np.ndarray:
    """Pale grey, very low contrast: a faint woven texture (values 0.55…0.65)."""
    y, x = np.mgrid[0:64, 0:64]
    t = 0.6 + 0.05 * np.sign(np.sin(x / 2.0)) * np.sign(np.sin(y / 3.0))
    return np.repeat(t[..., None], 3, axis=2).astype(np.float32)


def fast(**overrides) -> StyleOptions:
    base = dict(steps=20, scales=1, device="cpu", max_size=None)
    base.update(overrides)
    return StyleOptions(**base)


def reduction(graph, content, style, options, steering=None) -> float:
    result = stylize(content, [style], options, graph=graph, steering=steering)
    before = relative_style_error(graph, content, style)
    return 1 - relative_style_error(graph, result, style) / before


@pytest.mark.parametrize("scales", [1, 2])
def test_strength_zero_returns_the_content(graph, content, swirls, scales):
    result = stylize(content, [swirls], fast(strength=0, scales=scales, min_size=16), graph=graph)
    assert np.abs(result - content).max() < 2e-3


def test_more_strength_means_less_style_error(graph, content, swirls, grey_weave):
    for style in (swirls, grey_weave):
        errors = [
            relative_style_error(
                graph, stylize(content, [style], fast(strength=s), graph=graph), style
            )
            for s in (0.1, 1.0, 10.0)
        ]
        assert errors[0] > errors[1] > errors[2], errors


def test_the_balance_treats_low_and_high_contrast_styles_alike(graph, content, swirls, grey_weave):
    balanced = [reduction(graph, content, s, fast()) for s in (swirls, grey_weave)]
    assert min(balanced) > 0.3 and abs(balanced[0] - balanced[1]) < 0.2, balanced
    # the seed's raw weight, for contrast: one β can't suit both pictures
    raw = [reduction(graph, content, s, fast(style_weight=3e-5)) for s in (swirls, grey_weave)]
    assert abs(raw[0] - raw[1]) > abs(balanced[0] - balanced[1]), (raw, balanced)


def test_the_run_steers_its_gain_towards_strengths_target(graph, content, swirls):
    # 45 evaluations: three segments, two gain corrections; strength 0.5 asks for 1 − 0.26**0.5 ≈ 49%
    target = 1 - SteeringSettings().target_remaining ** 0.5
    steered = reduction(graph, content, swirls, fast(steps=45, strength=0.5))
    # the gain stays STYLE_GAIN·strength
    fixed = reduction(
        graph, content, swirls, fast(steps=45, strength=0.5), SteeringSettings(step=1.0)
    )
    assert abs(steered - target) < 0.5 * abs(fixed - target), (steered, fixed, target)


def test_short_runs_and_raw_weights_keep_one_gain():
    settings = SteeringSettings()

    def steering(**options) -> Steering:
        o = StyleOptions(**options)
        return Steering(settings, o.strength, o.style_weight is None)

    assert steering().segments(20) == [20] and steering().segments(60) == [20, 20, 20]
    assert steering().segments(50) == [16, 16, 18]
    assert not steering(style_weight=3e-5).active
    assert not steering(strength=0).active
    # a correction moves the gain by at most GAIN_STEP, and never beyond GAIN_RANGE of its start
    s = steering(strength=1)
    assert s.correct(0.9) == 3.0 * settings.step
    s.gain = 29.0
    assert s.correct(0.9) == settings.start_gain * settings.range
    s.gain = 3.0
    assert s.correct(settings.target_remaining) == pytest.approx(3.0)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "strong", True])
def test_bad_strength_is_a_one_line_error(content, swirls, bad):
    with pytest.raises(StyleError, match="strength") as err:
        stylize(content, [swirls], fast(strength=bad))
    assert "\n" not in str(err.value)
