"""Device choice and provider errors on this CPU-only machine (real ONNX Runtime, tiny model)."""

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxstyle.core import runtime
from onnxstyle.core.errors import DeviceUnavailable, ModelError


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """y = x + x: enough to open a session."""
    node = helper.make_node("Add", ["x", "x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path_factory.mktemp("m") / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def test_cpu_session_runs(tiny_model):
    sess = runtime.make_session(tiny_model, "cpu", threads=1)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    out = sess.run(None, {"x": np.array([1, 2], np.float32)})[0]
    assert out.tolist() == [2, 4]


def test_auto_is_cpu_here():
    assert runtime.resolve_device("auto") == "cpu"


@pytest.mark.parametrize("device,words", [("cuda", "onnxruntime-gpu"), ("directml", "Windows")])
def test_forcing_a_missing_gpu_says_why_in_one_line(tiny_model, device, words):
    with pytest.raises(DeviceUnavailable) as err:
        runtime.make_session(tiny_model, device)
    message = str(err.value)
    assert words in message and "\n" not in message


def test_cuda_message_names_the_extra():
    with pytest.raises(DeviceUnavailable, match=r"onnxstyle\[cuda\]"):
        runtime.resolve_device("cuda")


def test_unknown_device():
    with pytest.raises(DeviceUnavailable, match="unknown device"):
        runtime.resolve_device("tpu")


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        runtime.make_session(tmp_path / "nope.onnx")


def test_available_devices_lists_every_device():
    rows = {r["device"]: r for r in runtime.available_devices()}
    assert rows["cpu"]["available"] and not rows["cuda"]["available"] and rows["cuda"]["reason"]
    assert set(rows) == {"cpu", "cuda", "directml", "webgpu", "coreml"} == set(runtime.DEVICES[1:])


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML may be here")
def test_coreml_off_a_mac_says_so_in_one_line(tiny_model):
    with pytest.raises(DeviceUnavailable, match="macOS only") as err:
        runtime.make_session(tiny_model, "coreml")
    assert "\n" not in str(err.value)
    assert runtime.resolve_device("auto") != "coreml"


def test_coreml_options_are_ones_its_provider_knows():
    """ORT's coreml_options.cc refuses unknown keys and values: keep ours within them."""
    known = {
        "ModelFormat": {"MLProgram", "NeuralNetwork"},
        "MLComputeUnits": {"CPUAndNeuralEngine", "CPUAndGPU", "CPUOnly", "ALL"},
        "RequireStaticInputShapes": {"0", "1"},
        "EnableOnSubgraphs": {"0", "1"},
        "SpecializationStrategy": {"Default", "FastPrediction"},
        "ProfileComputePlan": {"0", "1"},
        "AllowLowPrecisionAccumulationOnGPU": {"0", "1"},
    }
    options = runtime.provider_options("coreml")
    assert options and all(value in known[key] for key, value in options.items())
    # float32 throughout: no Neural Engine (float16 only), no float16 accumulation on the GPU
    assert options["MLComputeUnits"] == "CPUAndGPU"
    assert options["AllowLowPrecisionAccumulationOnGPU"] == "0"
    assert options["RequireStaticInputShapes"] == "0"  # the image's H and W are dynamic


def test_provider_options_are_deliberate():
    cuda = runtime.provider_options("cuda")
    assert (
        cuda["cudnn_conv_algo_search"] == "HEURISTIC" and cuda["do_copy_in_default_stream"] == "1"
    )
    opts = runtime.session_options("directml")
    assert opts.enable_mem_pattern is False


def test_auto_session_runs_here(tiny_model):
    sess = runtime.make_session(tiny_model, "auto")
    assert sess.get_providers()[0] == "CPUExecutionProvider"
