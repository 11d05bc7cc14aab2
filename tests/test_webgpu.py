"""The webgpu device (the onnxruntime-ep-webgpu plug-in) as users meet it: on this GPU-less machine
auto never picks it and a forced webgpu is one line naming what's missing, through the engine, the CLI
and the worker; where a WebGPU adapter is listed (a GPU, or Mesa's software Vulkan with
ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER=1: docs/decisions/webgpu-ep.md), the graphs' loss and gradient
there match the CPU's."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import example_image
from PIL import Image
from test_device_optim import relative, vgg_problem
from test_worker import WorkerProcess, images, stylize_request  # noqa: F401 (images: a fixture)

from onnxstyle.core import device_optim, optim, runtime
from onnxstyle.core.errors import DeviceUnavailable
from onnxstyle.core.graph import LossWeights, StyleGraph, Targets, as_nchw
from onnxstyle.core.runtime import upload

PLUGIN = importlib.util.find_spec("onnxruntime_ep_webgpu")  # in the dev extra (Python 3.11+)


def webgpu_problem() -> str | None:
    runtime._webgpu.cache_clear()
    return runtime._webgpu().problem


@pytest.fixture
def fresh_webgpu(monkeypatch):
    """The plug-in's state found again after the test changed what it can see (the environment, an
    absent package); the library itself stays registered once per process."""
    runtime._webgpu.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    runtime._webgpu.cache_clear()


no_gpu = pytest.mark.skipif(
    webgpu_problem() is None and runtime._webgpu().gpu, reason="a GPU is listed for WebGPU here"
)
no_adapter = pytest.mark.skipif(
    webgpu_problem() is None, reason="a WebGPU adapter is listed on this machine"
)
adapter = pytest.mark.skipif(webgpu_problem() is not None, reason="no WebGPU adapter here")


@no_gpu
def test_auto_never_picks_webgpu_without_a_gpu():
    assert runtime.resolve_device("auto") == "cpu"
    # the plug-in's software switch (read when it registers: a fresh process) lists a WebGPU device
    # on the CPU; forced webgpu may take it, auto never does
    code = (
        "from onnxstyle.core import runtime; "
        "print(runtime.resolve_device('auto'), runtime._webgpu().gpu, runtime._webgpu().adapters)"
    )
    env = {**os.environ, runtime.SOFTWARE_ADAPTER: "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cpu False"), done.stdout
    if PLUGIN is not None:
        assert "software" in done.stdout  # the switch did list one


@no_adapter
def test_forcing_webgpu_here_says_what_is_missing_in_one_line():
    with pytest.raises(DeviceUnavailable) as err:
        runtime.resolve_device("webgpu")
    message = str(err.value)
    assert "\n" not in message and message == webgpu_problem()
    if PLUGIN is None:
        assert "pip install 'onnxstyle[webgpu]'" in message
    elif sys.platform.startswith("linux") and not runtime._vulkan_loader_present():
        assert "libvulkan.so.1" in message  # this machine: no Vulkan loader, no GPU


def test_without_the_plugin_the_line_names_the_extra(fresh_webgpu):
    fresh_webgpu.setitem(sys.modules, "onnxruntime_ep_webgpu", None)  # import fails: not installed
    with pytest.raises(DeviceUnavailable, match=r"pip install 'onnxstyle\[webgpu\]'") as err:
        runtime.resolve_device("webgpu")
    assert "\n" not in str(err.value)
    assert runtime.resolve_device("auto") in ("cpu", "cuda", "directml", "coreml")
    row = {r["device"]: r for r in runtime.available_devices()}["webgpu"]
    assert not row["available"] and "onnxstyle[webgpu]" in row["reason"]


@no_adapter
def test_info_lists_webgpu_with_its_reason():
    done = subprocess.run(
        [sys.executable, "-m", "onnxstyle.plugin.cli", "info"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.split()[:1] == ["webgpu"]]
    assert "WebGpuExecutionProvider" in line and f"unavailable: {webgpu_problem()}" in line
    assert any(line.split()[:1] == ["coreml"] for line in done.stdout.splitlines())


@no_adapter
def test_cli_forced_webgpu_exits_2_with_one_line(tmp_path):
    content, style, out = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "out.png"
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(content)
    Image.fromarray(np.full((40, 48, 3), 30, np.uint8)).save(style)
    done = subprocess.run(
        [sys.executable, "-m", "onnxstyle.plugin.cli", "stylize", content, style, "-o", out]
        + ["--device", "webgpu", "--steps", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and webgpu_problem() in lines[0], done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


@no_adapter
def test_worker_answers_a_forced_webgpu_with_a_device_error(images, tmp_path):  # noqa: F811
    worker = WorkerProcess()
    try:
        out = tmp_path / "result.raw"
        worker.send(stylize_request(images, "gpu", out, device="webgpu"))
        final, _ = worker.until_final("gpu")
        assert final["type"] == "error" and final["kind"] == "device", final
        assert final["message"] == webgpu_problem()
        assert not out.exists()
    finally:
        worker.close()


@adapter
def test_the_grad_graph_on_webgpu_matches_the_cpu():
    """One evaluation at 48x40 with real targets: the loss and the gradient agree with the CPU's."""
    content, style = example_image("chelsea.jpg", 48), example_image("swirls.jpg", 48)
    results = {}
    for device in ("cpu", "webgpu"):
        graph = StyleGraph.load("avg", device)
        assert graph.concrete_device == device
        targets = Targets.from_features(
            content=graph.features(content), style=graph.features(style)
        )
        weights = LossWeights(alpha=1e-3, beta=1e3, style_layer_weights=[0.2] * 5, tv_weight=1.0)
        results[device] = graph.loss_and_grad(np.clip(content + 0.05, 0, 1), targets, weights)
    (cpu_terms, cpu_grad), (gpu_terms, gpu_grad) = results["cpu"], results["webgpu"]
    assert gpu_terms.total == pytest.approx(cpu_terms.total, rel=1e-4)
    cosine = float(
        np.sum(cpu_grad * gpu_grad) / np.linalg.norm(cpu_grad) / np.linalg.norm(gpu_grad)
    )
    assert cosine > 0.9999


@adapter
def test_the_device_loop_on_webgpu_follows_the_reference():
    """Where ORT keeps OrtValues on WebGPU, L-BFGS's state lives there: 10 evaluations follow the
    numpy reference on the CPU (the device-loop test's problem, smaller), and the NaN guard (whose
    IsNaN/IsInf run on the CPU inside its graph) still sees a bad gradient."""
    if not runtime.device_loop("webgpu"):
        pytest.skip("this onnxruntime keeps no OrtValues on WebGPU: the host path runs")
    updates = device_optim.update_graphs("webgpu")
    g = updates.vector((1, 3, 4, 5), np.ones((1, 3, 4, 5), np.float32))
    assert updates.finite(g)
    bad = np.ones((1, 3, 4, 5), np.float32)
    bad[0, 1, 2, 3] = np.nan
    upload(bad, into=g)
    assert not updates.finite(g)

    weights = dict(style_weight=3e-5, tv_weight=1e5, content_weight=10.0)
    content, host, _, host_points, _, _ = vgg_problem(StyleGraph.load("avg", "cpu"), 48, **weights)
    _, _, device, _, device_points, _ = vgg_problem(StyleGraph.load("avg", "webgpu"), 48, **weights)
    ref = optim.lbfgs(host, content, 10, history=3, first_step=1.0)
    got = device_optim.lbfgs(device, as_nchw(content), 10, updates, history=3, first_step=1.0)
    assert len(host_points) == len(device_points) == 10
    assert max(relative(a, b) for a, b in zip(host_points, device_points)) < 1e-4
    assert got.loss == pytest.approx(ref.loss, rel=1e-4)
