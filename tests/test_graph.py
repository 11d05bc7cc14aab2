"""The ONNX graphs against torch autograd, finite differences and the numpy loss (real weights, CPU)."""

import json

import numpy as np
import pytest
from helpers import random_image

from onnxstyle.core import loss as np_loss
from onnxstyle.core.errors import ImageError, ModelError
from onnxstyle.core.graph import (
    PACKAGE_MODELS,
    LossWeights,
    Manifest,
    StyleGraph,
    Targets,
    find_manifest,
)

torch = pytest.importorskip("torch")

LAYER_WEIGHTS = [0.5, 1.0, 2.0, 0.25, 1.5]  # distinct, so a layer-order mix-up shows


def _graph(request, pooling):
    return request.getfixturevalue(f"style_graph_{pooling}")


def _rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def _setup(graph, height, width, seed):
    rng = np.random.default_rng(seed)
    content, current = random_image(rng, height, width), random_image(rng, height, width)
    style = random_image(rng, 40, 52)
    targets = Targets.from_features(content=graph.features(content), style=graph.features(style))
    return current, targets


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("height,width", [(33, 47), (64, 40), (96, 96)])
def test_gradient_matches_autograd(request, reference_vgg64, pooling, height, width):
    graph = _graph(request, pooling)
    current, targets = _setup(graph, height, width, seed=height * width)
    weights = LossWeights(alpha=1.0, beta=1e3, style_layer_weights=LAYER_WEIGHTS, tv_weight=10.0)
    terms, grad = graph.loss_and_grad(current, targets, weights)

    ref = reference_vgg64[pooling]
    image = torch.from_numpy(current).double().requires_grad_(True)
    ref_targets = {
        f"gram_{layer}": torch.from_numpy(g).double() for layer, g in targets.grams.items()
    }
    ref_targets["content_relu4_2"] = torch.from_numpy(targets.content).double()
    ref_terms = ref.loss(image, ref_targets, 1.0, 1e3, LAYER_WEIGHTS, 10.0)
    ref_terms.total.backward()

    assert grad.shape == (1, 3, height, width)
    assert _rel(grad, image.grad.numpy()) <= 1e-4
    assert terms.total == pytest.approx(ref_terms.total.item(), rel=1e-4)
    assert terms.content == pytest.approx(ref_terms.content.item(), rel=1e-4)
    assert terms.tv == pytest.approx(ref_terms.tv.item(), rel=1e-5)
    np.testing.assert_allclose(terms.style, ref_terms.style.detach().numpy(), rtol=1e-4)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_features_match_reference_and_numpy(request, reference_vgg, pooling):
    graph = _graph(request, pooling)
    image = random_image(np.random.default_rng(5), 37, 50)
    feats = graph.features(image)
    ref = reference_vgg[pooling].features(torch.from_numpy(image))
    assert set(feats) == {f"gram_{layer}" for layer in graph.style_layers} | {"content_relu4_2"}
    for key, value in feats.items():
        assert value.shape == tuple(ref[key].shape)
        assert _rel(value, ref[key].numpy()) <= 1e-5
    assert feats["content_relu4_2"].shape == (1, 512, 37 // 8, 50 // 8)
    # Gram normalised by n_H·n_W, as core.loss computes it from the activations.
    acts = reference_vgg[pooling].activations(torch.from_numpy(image))
    assert (
        _rel(feats["gram_relu3_1"], np_loss.gram(acts["relu3_1"].numpy(), normalize=True)) <= 1e-5
    )


def test_loss_terms_match_numpy_loss(style_graph_avg):
    current, targets = _setup(style_graph_avg, 48, 40, seed=7)
    weights = LossWeights(alpha=2.0, beta=50.0, style_layer_weights=LAYER_WEIGHTS, tv_weight=3.0)
    terms, _ = style_graph_avg.loss_and_grad(current, targets, weights)
    feats = style_graph_avg.features(current)
    content = np_loss.content_cost(targets.content, feats["content_relu4_2"])
    style = [
        np_loss.style_layer_cost(targets.grams[layer], feats[f"gram_{layer}"])
        for layer in style_graph_avg.style_layers
    ]
    tv = np_loss.total_variation(current)
    assert terms.content == pytest.approx(content, rel=1e-4)
    np.testing.assert_allclose(terms.style, style, rtol=1e-4)
    assert terms.tv == pytest.approx(tv, rel=1e-5)
    assert terms.total == pytest.approx(
        np_loss.total_cost(content, style, 2.0, 50.0, LAYER_WEIGHTS, tv, 3.0), rel=1e-4
    )


def _central_difference(graph, x, targets, weights, v, h):
    """(L(x+hv) - L(x-hv), g·(x₊ - x₋)) in float64, using the fp32 points actually evaluated."""
    x_plus, x_minus = x + np.float32(h) * v, x - np.float32(h) * v
    plus, _ = graph.loss_and_grad(x_plus, targets, weights)
    minus, _ = graph.loss_and_grad(x_minus, targets, weights)
    return float(plus.total) - float(minus.total), x_plus.astype(np.float64) - x_minus


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_gradient_matches_finite_differences(request, pooling):
    """Central differences of the graph's own fp32 loss.

    Step 1e-4 per pixel (directions scaled to max |v| = 1): smaller steps drown in the fp32 noise
    of a ~1e10 loss; larger ones cross many ReLU (and max-pool) kinks, where the loss is not
    differentiable. Measured with the float64 torch loss at this step, the kinks alone give ~0.1%
    along the gradient and up to 5% along random directions (whose directional derivative is a
    sum of cancelling terms; max pooling adds argmax switches), hence the tolerances (5e-3 and
    0.1: they still catch a wrong sign, factor or layer); a float64 step of 1e-6 agrees to 1e-9.
    The exact check is test_gradient_matches_autograd.
    """
    graph = _graph(request, pooling)
    current, targets = _setup(graph, 35, 42, seed=11)
    weights = LossWeights(alpha=1.0, beta=1e3, style_layer_weights=LAYER_WEIGHTS, tv_weight=10.0)
    _, grad = graph.loss_and_grad(current, targets, weights)
    grad64 = grad.astype(np.float64)
    rng = np.random.default_rng(3)
    directions = [(grad / np.abs(grad).max(), 5e-3)]
    directions += [(rng.standard_normal(current.shape).astype(np.float32), 0.1) for _ in range(2)]
    for v, tolerance in directions:
        v = (v / np.abs(v).max()).astype(np.float32)
        numeric, step = _central_difference(graph, current, targets, weights, v, 1e-4)
        assert numeric == pytest.approx(float(np.sum(grad64 * step)), rel=tolerance)


def test_hwc_and_nchw_layouts_agree(style_graph_avg):
    current, targets = _setup(style_graph_avg, 32, 36, seed=2)
    weights = LossWeights(1.0, 1e3, LAYER_WEIGHTS, 1.0)
    terms, grad = style_graph_avg.loss_and_grad(current, targets, weights)
    terms_hwc, grad_hwc = style_graph_avg.loss_and_grad(
        current[0].transpose(1, 2, 0), targets, weights
    )
    assert grad_hwc.shape == (32, 36, 3)
    np.testing.assert_array_equal(grad_hwc, grad[0].transpose(1, 2, 0))
    assert terms_hwc.total == terms.total


def test_sizes_sharing_a_content_target_get_their_own_size_inputs(style_graph_avg):
    """64 and 65 px have the same relu4_2 shape, so one content target serves both; the per-size
    inputs (the Grams' n, the pool backward's pads: core/layers.py) must still follow the image."""
    rng = np.random.default_rng(6)
    content = random_image(rng, 65, 65)
    targets = Targets.from_features(
        content=style_graph_avg.features(content),
        style=style_graph_avg.features(random_image(rng, 48, 48)),
    )
    weights = LossWeights(1.0, 1e3, LAYER_WEIGHTS, 1.0)
    x65, x64 = random_image(rng, 65, 65), random_image(rng, 64, 64)
    terms65, grad65 = style_graph_avg.loss_and_grad(x65, targets, weights)
    _, grad64 = style_graph_avg.loss_and_grad(x64, targets, weights)
    again, grad65_again = style_graph_avg.loss_and_grad(x65, targets, weights)
    assert grad64.shape == (1, 3, 64, 64) and grad65.shape == (1, 3, 65, 65)
    np.testing.assert_array_equal(grad65, grad65_again)
    assert again.total == terms65.total


def test_evaluate_is_loss_and_grad(style_graph_avg):
    rng = np.random.default_rng(9)
    content, style, current = (
        random_image(rng, 32, 40),
        random_image(rng, 48, 48),
        random_image(rng, 32, 40),
    )
    terms, grad = style_graph_avg.evaluate(content, style, current, 1.0, 1e3, LAYER_WEIGHTS, 2.0)
    targets = Targets.from_features(
        style_graph_avg.features(content), style_graph_avg.features(style)
    )
    terms2, grad2 = style_graph_avg.loss_and_grad(
        current, targets, LossWeights(1.0, 1e3, LAYER_WEIGHTS, 2.0)
    )
    np.testing.assert_array_equal(grad, grad2)
    assert terms.total == terms2.total


def test_manifest_is_exposed(style_graph_avg):
    assert style_graph_avg.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert style_graph_avg.manifest.content_layer == "relu4_2"
    assert style_graph_avg.channels == {
        "relu1_1": 64,
        "relu2_1": 128,
        "relu3_1": 256,
        "relu4_1": 512,
        "relu5_1": 512,
        "relu4_2": 512,
    }
    assert style_graph_avg.manifest.pooling == "avg" and style_graph_avg.manifest.opset == 18


def test_bad_inputs_are_clear(style_graph_avg):
    with pytest.raises(ImageError, match="at least 16 px"):
        style_graph_avg.features(np.zeros((1, 3, 15, 40), np.float32))
    current, targets = _setup(style_graph_avg, 32, 32, seed=1)
    with pytest.raises(ValueError, match="same size"):
        style_graph_avg.loss_and_grad(
            np.zeros((1, 3, 48, 32), np.float32), targets, LossWeights(1.0, 1.0, LAYER_WEIGHTS)
        )
    with pytest.raises(ValueError, match="needs 5 values"):
        style_graph_avg.loss_and_grad(current, targets, LossWeights(1.0, 1.0, [1.0, 1.0]))


def test_missing_max_model_names_the_export_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXSTYLE_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="onnxstyle export --pooling max") as err:
        StyleGraph.load("max")
    assert "\n" not in str(err.value)


def test_user_model_dir_is_searched_first(tmp_path, monkeypatch, max_model_dir):
    monkeypatch.setenv("ONNXSTYLE_MODEL_DIR", str(max_model_dir))

    assert find_manifest("max") == max_model_dir / "vgg19-max.json"
    assert find_manifest("avg").parent.name == "models"  # falls through to the package's


@pytest.mark.parametrize("fmt", [1, 3, None, "2"])  # 1: graphs without the per-size inputs
def test_manifest_of_another_format_is_refused_in_one_line(tmp_path, fmt):
    info = json.loads((PACKAGE_MODELS / "vgg19-avg.json").read_text())
    if fmt is None:
        del info["format"]
    else:
        info["format"] = fmt
    path = tmp_path / "vgg19-avg.json"
    path.write_text(json.dumps(info))
    with pytest.raises(ModelError) as caught:
        Manifest.read(path)
    message = str(caught.value)
    assert "format" in message and "onnxstyle export" in message and "\n" not in message
