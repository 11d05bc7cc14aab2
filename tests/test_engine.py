"""The engine end to end: real ONNX Runtime (CPU), the shipped VGG19 graphs, tiny images (≤ 96 px)."""

import numpy as np
import pytest
from helpers import example_image, relative_style_error
from PIL import Image

from onnxstyle.core import color, engine, schedule
from onnxstyle.core.engine import Progress, StyleOptions, stylize
from onnxstyle.core.errors import Cancelled, DeviceUnavailable, StyleError
from onnxstyle.core.graph import StyleGraph
from onnxstyle.core.layers import STYLE_LAYERS
from onnxstyle.core.loss import content_cost, style_layer_cost


@pytest.fixture(scope="module")
def content() -> np.ndarray:
    return example_image("chelsea.jpg", 64)  # 64x42


@pytest.fixture(scope="module")
def swirls() -> np.ndarray:
    return example_image("swirls.jpg", 96)


@pytest.fixture(scope="module")
def stripes() -> np.ndarray:
    """A second, very different style: saturated blue/yellow diagonal stripes."""
    y, x = np.mgrid[0:96, 0:96]
    t = (np.sin((x + y) / 3.0) > 0)[..., None]
    return np.where(t, [0.1, 0.2, 0.9], [0.95, 0.85, 0.1]).astype(np.float32)


@pytest.fixture(scope="module")
def graph(style_graph_avg) -> StyleGraph:
    return style_graph_avg  # the session's, loaded once


def fast(**overrides) -> StyleOptions:
    """Small, quick options: one scale unless asked, CPU."""
    base = dict(steps=25, scales=1, device="cpu", max_size=None, min_size=32)
    base.update(overrides)
    return StyleOptions(**base)


def style_error(graph: StyleGraph, image: np.ndarray, style: np.ndarray) -> float:
    """Σ_l J_style[l] between the image and the style (style resized like the engine does)."""
    h, w = image.shape[:2]
    target = engine.resize(style, *engine.fit_size(*style.shape[:2], max(h, w)))
    g_img, g_sty = graph.features(image), graph.features(target)
    return sum(
        style_layer_cost(g_sty[f"gram_{layer}"], g_img[f"gram_{layer}"]) for layer in STYLE_LAYERS
    )


def relu42_cost(graph: StyleGraph, a: np.ndarray, b: np.ndarray) -> float:
    return content_cost(graph.features(a)["content_relu4_2"], graph.features(b)["content_relu4_2"])


@pytest.fixture(scope="module")
def plain_run(content, swirls):
    """One default-weights run, shared by several checks: (result, progress reports)."""
    reports: list[Progress] = []
    result = stylize(content, [swirls], fast(scales=2, steps=30), progress=reports.append)
    return result, reports


def test_result_shape_range_and_progress(plain_run, content):
    result, reports = plain_run
    assert result.shape == content.shape and result.dtype == np.float32
    assert 0 <= result.min() and result.max() <= 1
    assert [r.scale for r in reports] == [1] * 30 + [2] * 30
    assert reports[-1].step == reports[-1].steps == 30 and reports[-1].scales == 2
    assert reports[-1].eta_s == pytest.approx(0, abs=1e-6) and reports[5].eta_s > 0


def test_loss_falls_within_each_scale(plain_run):
    _, reports = plain_run
    for scale in (1, 2):
        losses = [r.loss for r in reports if r.scale == scale]
        assert min(losses[-5:]) < 0.8 * losses[0]


def test_style_gets_closer_while_content_is_kept(plain_run, graph, content, swirls):
    result, _ = plain_run
    assert style_error(graph, result, swirls) < 0.6 * style_error(graph, content, swirls)
    noise = np.random.default_rng(0).uniform(0, 1, content.shape).astype(np.float32)
    # the content's relu4_2 is much closer to the result than to an unrelated image
    assert relu42_cost(graph, content, result) < 0.5 * relu42_cost(graph, content, noise)


def test_adam_also_reduces_the_style_error(graph, content, swirls):
    result = stylize(content, [swirls], fast(optimizer="adam", learning_rate=0.03, steps=30))
    assert style_error(graph, result, swirls) < 0.8 * style_error(graph, content, swirls)


def test_luminance_mode_keeps_the_content_chroma(content, stripes):
    result = stylize(content, [stripes], fast(preserve_colors="luminance", steps=15))
    iq_res, iq_con = color.rgb_to_yiq(result)[..., 1:], color.rgb_to_yiq(content)[..., 1:]
    assert np.abs(iq_res - iq_con).mean() < 0.01  # only clipping to [0,1] may touch the chroma
    assert (
        np.abs(color.luminance(result) - color.luminance(content)).mean() > 0.01
    )  # luminance did change


def test_histogram_mode_keeps_the_content_palette(plain_run, content, swirls):
    plain, _ = plain_run  # the blue swirls pull a plain run's colours towards blue
    kept = stylize(content, [swirls], fast(scales=2, steps=30, preserve_colors="histogram"))

    def chroma_shift(image):
        return np.abs(color.rgb_to_yiq(image)[..., 1:] - color.rgb_to_yiq(content)[..., 1:]).mean()

    assert chroma_shift(kept) < 0.6 * chroma_shift(plain), (chroma_shift(kept), chroma_shift(plain))


def test_histogram_matching_gives_the_content_statistics(content, swirls):
    matched = color.match_color_histogram(swirls, content)
    assert np.allclose(matched.reshape(-1, 3).mean(0), content.reshape(-1, 3).mean(0), atol=0.03)
    assert np.allclose(
        np.cov(matched.reshape(-1, 3), rowvar=False),
        np.cov(content.reshape(-1, 3), rowvar=False),
        atol=0.01,
    )


def test_blend_weights_move_the_result_between_two_styles(graph, content, swirls, stripes):
    def run(blend):
        return stylize(content, [swirls, stripes], fast(style_blend=blend, steps=20))

    only_a, only_b, half = run((1, 0)), run((0, 1)), run((0.5, 0.5))
    err_a = [relative_style_error(graph, r, swirls) for r in (only_a, half, only_b)]
    err_b = [relative_style_error(graph, r, stripes) for r in (only_a, half, only_b)]
    assert err_a[0] < err_a[1] < err_a[2]
    assert err_b[2] < err_b[1] < err_b[0]


def test_blend_count_must_match(content, swirls):
    with pytest.raises(StyleError, match="blend weight"):
        stylize(content, [swirls], fast(style_blend=(0.5, 0.5)))


def test_cancel_stops_within_one_step(content, swirls):
    reports = []
    with pytest.raises(Cancelled):
        stylize(
            content,
            [swirls],
            fast(steps=50),
            progress=reports.append,
            cancel=lambda: len(reports) >= 3,
        )
    assert len(reports) == 3  # polled before every evaluation: none ran after the cancel


def test_seed_makes_noise_runs_reproducible(content, swirls):
    def run(seed):
        return stylize(content, [swirls], fast(init="noise", seed=seed, steps=8))

    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_init_from_an_array(content, swirls):
    start = np.full((20, 30, 3), 0.5, np.float32)  # any size: resized to the coarsest scale
    result = stylize(content, [swirls], fast(init=start, steps=3))
    assert result.shape == content.shape


def test_init_from_a_file(content, swirls, tmp_path):
    path = tmp_path / "start.png"
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(path)
    first = []
    stylize(
        content, [swirls], fast(init=str(path), steps=1, content_weight=1.0), progress=first.append
    )
    from_array = []
    stylize(
        content,
        [swirls],
        fast(init=np.full((30, 40, 3), 128 / 255, np.float32), steps=1),
        progress=from_array.append,
    )
    assert first[0].loss == pytest.approx(from_array[0].loss, rel=1e-5)  # the same start image


def test_nan_or_inf_loss_is_a_clear_error(content, swirls):
    with pytest.raises(StyleError, match="infinite|NaN"):
        stylize(content, [swirls], fast(style_weight=1e38, steps=3))


def test_max_size_sets_the_processed_and_returned_size(content, swirls):
    result = stylize(content, [swirls], fast(max_size=32, steps=2))
    assert max(result.shape[:2]) == 32 and result.shape[:2] == engine.fit_size(
        *content.shape[:2], 32
    )


@pytest.mark.parametrize("device", ["cuda", "directml"])
def test_forcing_a_gpu_here_is_a_device_error(content, swirls, device):
    with pytest.raises(DeviceUnavailable) as err:
        stylize(content, [swirls], fast(device=device))
    assert "\n" not in str(err.value)


def test_presets_and_overrides():
    draft = StyleOptions.from_preset("draft", steps=5, preserve_colors="luminance")
    assert draft.steps == 5 and draft.max_size == 512 and draft.preserve_colors == "luminance"
    assert StyleOptions.from_preset("high").steps > StyleOptions.from_preset("normal").steps
    with pytest.raises(StyleError, match="preset"):
        StyleOptions.from_preset("ultra")
    with pytest.raises(StyleError, match="unknown option"):
        StyleOptions.from_preset("normal", stepz=3)


@pytest.mark.parametrize(
    "bad",
    [
        dict(preserve_colors="yes"),
        dict(optimizer="sgd"),
        dict(steps=0),
        dict(style_layer_weights=(1, 1)),
        dict(style_weight=float("nan")),
    ],
)
def test_bad_options_are_one_line_errors(content, swirls, bad):
    with pytest.raises(StyleError) as err:
        stylize(content, [swirls], fast(**bad))
    assert "\n" not in str(err.value)


def test_schedule_is_coarse_to_fine():
    sizes = schedule.scale_sizes(600, 800, StyleOptions(min_size=64))
    assert sizes == [(75, 100), (150, 200), (300, 400), (600, 800)]
    assert schedule.scale_sizes(600, 800, StyleOptions(scales=2)) == [(300, 400), (600, 800)]
