"""Moving pictures (Ruder et al. 2016): the optical flow and its mask, the temporal term on the host
and as the device's update graph, and FrameSequence on a tiny clip of moving textured shapes —
with the temporal term it flickers less than frames styled one by one."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers import example_clip

from onnxstyle.core.device_optim import UpdateGraphs
from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.errors import Cancelled, ImageError, StyleError
from onnxstyle.core.flow import FlowError, flicker, optical_flow, warp
from onnxstyle.core.frames import FrameSequence, TemporalGraph
from onnxstyle.core.graph import LossWeights, Targets, as_nchw
from onnxstyle.core.loss import temporal_cost

FAST = dict(steps=12, max_size=48, min_size=24)


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (h // 4, w // 4, 3)).astype(np.float32)
    return np.kron(coarse, np.ones((4, 4, 1), np.float32))


def test_flow_warps_a_shifted_picture_onto_the_next_and_masks_what_came_into_view():
    picture = _textured(64, 96)
    previous, current = picture[:, 8:72], picture[:, 4:68]  # the scene moves 4 px right
    flow = optical_flow(previous, current)
    inside = flow.mask > 0
    assert np.median(flow.backward[..., 0][inside]) == pytest.approx(-4, abs=0.5)
    assert np.abs(warp(previous, flow.backward) - current)[inside].mean() < 0.03
    assert flow.mask[:, :2].mean() < 0.5 < flow.mask[:, 8:-8].mean()  # the strip that came in


def test_flicker_is_one_for_the_content_itself_and_larger_for_noise():
    frames = list(example_clip(48, 48, 4))
    assert flicker(frames, frames) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    noisy = [np.clip(f + rng.normal(0, 0.2, f.shape), 0, 1).astype(np.float32) for f in frames]
    assert flicker(noisy, frames) > 1.5


def test_temporal_term_and_its_gradient_on_the_host_and_on_the_device(style_graph_avg):
    rng = np.random.default_rng(2)
    x, target = (rng.uniform(0, 1, (32, 40, 3)).astype(np.float32) for _ in range(2))
    mask = (rng.uniform(0, 1, (32, 40)) > 0.3).astype(np.float32)
    weight = 50.0
    expected = weight * temporal_cost(x, target, mask)
    zero = LossWeights(alpha=0.0, beta=0.0, style_layer_weights=(0.0,) * 5)
    feats = style_graph_avg.features(x)
    targets = Targets.from_features(feats, feats)
    temporal = TemporalGraph(style_graph_avg, target, mask, weight)
    terms, grad = temporal.loss_and_grad(x, targets, zero)
    assert terms.total == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(
        grad, 2 * weight / x.size * mask[..., None] * (x - target), atol=1e-6
    )
    # the device loop's path: the update graph on the CPU provider, from the grad graph's gradient
    graphs = UpdateGraphs("cpu")
    g_in = graphs.vector((1, 3, 32, 40), as_nchw(grad))
    g_out = graphs.vector((1, 3, 32, 40))
    inputs = {
        "x": graphs.vector((1, 3, 32, 40), as_nchw(x)),
        "g": g_in,
        "target": graphs.vector((1, 3, 32, 40), as_nchw(target)),
        "mask": graphs.vector((1, 1, 32, 40), mask[None, None]),
        "k": np.float32(weight / x.size),
    }
    dots = graphs.scalars("temporal", inputs, {"g_out": g_out})
    assert dots[0] == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(g_out.numpy(), as_nchw(2 * grad), rtol=1e-5, atol=1e-7)


def test_one_device_loop_evaluation_with_the_temporal_term_is_the_host_ones(style_graph_avg):
    rng = np.random.default_rng(4)
    x, target, content = (rng.uniform(0, 1, (32, 40, 3)).astype(np.float32) for _ in range(3))
    mask = (rng.uniform(0, 1, (32, 40)) > 0.3).astype(np.float32)
    targets = Targets.from_features(style_graph_avg.features(content), style_graph_avg.features(x))
    weights = LossWeights(alpha=1e-3, beta=2.0, style_layer_weights=(0.2,) * 5, tv_weight=1e-4)
    temporal = TemporalGraph(style_graph_avg, target, mask, 300.0)
    terms, grad = temporal.loss_and_grad(x, targets, weights)
    graphs = UpdateGraphs("cpu")
    x_value, g_value = graphs.vector((1, 3, 32, 40), as_nchw(x)), graphs.vector((1, 3, 32, 40))
    loss = temporal.loss_on_device(x_value, g_value, targets, weights)
    assert loss == pytest.approx(terms.total, rel=1e-5)
    np.testing.assert_allclose(g_value.numpy(), as_nchw(grad), rtol=1e-4, atol=1e-7)


def test_frames_run_on_the_device_loop_too(style_graph_avg, monkeypatch):
    frames = list(example_clip(48, 48, 2))
    style = _textured(48, 48, seed=3)
    results = {}
    for loop in (False, True):
        monkeypatch.setattr(style_graph_avg, "device_loop", loop)
        seq = FrameSequence([style], StyleOptions(**FAST), 200.0, graph=style_graph_avg)
        results[loop] = [seq.next(f) for f in frames]
    # the same problem; L-BFGS's float32 sums part the paths a little
    assert np.abs(results[True][1] - results[False][1]).mean() < 0.02


@pytest.fixture(scope="module")
def clip_results(style_graph_avg):
    """The tiny clip (48 px, 6 frames of moving textured shapes), independent and temporal."""
    frames = list(example_clip(48, 48, 6))
    style = _textured(64, 64, seed=5)
    out = {}
    for weight in (0.0, None):
        seq = FrameSequence(
            [style],
            StyleOptions(**FAST),
            *([] if weight is None else [weight]),
            graph=style_graph_avg,
        )
        out[weight] = [seq.next(f) for f in frames]
    return frames, out


def test_temporal_frames_flicker_less_than_independent_frames(clip_results):
    frames, results = clip_results
    independent, temporal = flicker(results[0.0], frames), flicker(results[None], frames)
    assert temporal < independent / 3, (temporal, independent)
    assert temporal <= 1.5


def test_temporal_weight_zero_styles_each_frame_as_stylize_does(clip_results, style_graph_avg):
    frames, results = clip_results
    alone = stylize(
        frames[3], [_textured(64, 64, seed=5)], StyleOptions(**FAST), graph=style_graph_avg
    )
    np.testing.assert_array_equal(results[0.0][3], alone)


def test_a_failing_flow_starts_the_frame_unwarped_and_says_so_once(style_graph_avg):
    def broken(previous, current):
        raise FlowError("optical flow failed: no texture")

    seq = FrameSequence(
        [_textured(48, 48)], StyleOptions(**FAST), graph=style_graph_avg, flow=broken
    )
    for frame in example_clip(48, 48, 3):
        assert seq.next(frame).shape == (48, 48, 3)
    assert seq.notes == [
        "frame 2: optical flow failed: no texture; it started from the previous result unwarped"
    ]


def test_frames_of_another_size_are_refused_in_one_line(style_graph_avg):
    seq = FrameSequence([_textured(48, 48)], StyleOptions(**FAST), graph=style_graph_avg)
    seq.next(_textured(48, 48))
    with pytest.raises(ImageError, match="frame 2 is 52x48 px, frame 1 was 48x48"):
        seq.next(_textured(48, 52))


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf"), "3", True])
def test_a_bad_temporal_weight_is_one_line(weight, style_graph_avg):
    with pytest.raises(StyleError, match="temporal_weight must be"):
        FrameSequence([_textured(48, 48)], StyleOptions(**FAST), weight, graph=style_graph_avg)


def test_a_cancelled_frame_leaves_the_sequence_where_it_was(style_graph_avg):
    frames = list(example_clip(48, 48, 2))
    seq = FrameSequence([_textured(48, 48)], StyleOptions(**FAST), graph=style_graph_avg)
    first = seq.next(frames[0])
    with pytest.raises(Cancelled):
        seq.next(frames[1], cancel=lambda: True)
    assert seq.index == 1
    again = FrameSequence([_textured(48, 48)], StyleOptions(**FAST), graph=style_graph_avg)
    again.resume(frames[0], first, 1)
    np.testing.assert_array_equal(seq.next(frames[1]), again.next(frames[1]))
    assert seq.index == again.index == 2


def test_without_opencv_the_sequence_says_what_to_install(style_graph_avg, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    with pytest.raises(FlowError, match=r"pip install 'onnxstyle\[video\]'"):
        FrameSequence([_textured(48, 48)], StyleOptions(**FAST), graph=style_graph_avg)
    FrameSequence([_textured(48, 48)], StyleOptions(**FAST), 0.0, graph=style_graph_avg)  # no flow
