"""Where ONNX Runtime actually puts the shipped graphs' nodes on a device, and whether it captures a
CUDA graph of the grad graph: the device check of docs/decisions/ort-review.md (tests/test_placement.py
predicts the answer on the CPU: no CPU node, no Memcpy, capture accepted).

Run on the GPU machine: python benchmarks/gpu_placement.py --device cuda [--size 256]
Per graph it prints the providers the session got, the nodes of the partitioned graph by op, and the
Memcpy nodes ORT inserted (each a host<->device copy per run); then, on CUDA, it runs the grad graph
with enable_cuda_graph on fixed bound buffers and compares the replayed result with a plain run.
Runs on the CPU too (nothing to place, no capture: a smoke test). Prints; never asserts.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import numpy as np

from onnxstyle.core import runtime
from onnxstyle.core.graph import (
    HOST_INPUTS,
    PACKAGE_MODELS,
    LossWeights,
    StyleGraph,
    Targets,
    size_feed,
)


def placement(path: Path, device: str, folder: Path) -> None:
    """The partitioned graph as ORT saves it (Memcpy nodes included) and the session's providers."""
    onnx = __import__("onnx")
    options = runtime.session_options(device)
    options.optimized_model_filepath = str(folder / path.name)
    ort = runtime.import_onnxruntime()
    providers = ["CPUExecutionProvider"]
    if device != "cpu":
        providers.insert(0, (runtime.PROVIDERS[device], runtime.provider_options(device)))
    session = ort.InferenceSession(str(path), options, providers=providers)
    ops = collections.Counter(n.op_type for n in onnx.load(folder / path.name).graph.node)
    memcpy = {op: ops.pop(op) for op in ("MemcpyFromHost", "MemcpyToHost") if op in ops}
    print(f"{path.name}: {session.get_providers()}; Memcpy {memcpy or 'none'}")
    print("    " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())))


def cuda_graph(size: int, device: str = "cuda") -> None:
    """The grad graph captured once and replayed on fixed buffers, against a plain bound run
    (on the CPU: the plain run only, a smoke test of this script)."""
    ort = runtime.import_onnxruntime()
    graph = StyleGraph.load("avg", device)
    rng = np.random.default_rng(0)
    image = rng.random((1, 3, size, size), dtype=np.float32)
    targets = Targets.from_features(graph.features(image), graph.features(image[:, :, ::-1].copy()))
    feed = {**graph._constant_feed(targets, LossWeights(1.0, 1e3, [1] * 5, 1.0))}
    feed |= size_feed(size, size)
    place = graph.place
    values = {k: ort.OrtValue.ortvalue_from_numpy(v, *(("cpu", 0) if k in HOST_INPUTS else place))
              for k, v in feed.items()}  # fmt: skip
    values["image"] = ort.OrtValue.ortvalue_from_numpy(image, *place)
    results, shapes = {}, {}
    variants = {"plain": {}}
    if device == "cuda":
        variants["cuda graph"] = {"enable_cuda_graph": "1"}
    for label, extra in variants.items():
        providers = ["CPUExecutionProvider"]
        if device != "cpu":
            options = {**runtime.provider_options(device), **extra}
            providers.insert(0, (runtime.PROVIDERS[device], options))
        try:
            session = ort.InferenceSession(
                str(graph.manifest.grad_path), runtime.session_options(device), providers=providers
            )
            binding = session.io_binding()
            for name, value in values.items():
                binding.bind_ortvalue_input(name, value)
            if not shapes:  # the outputs' shapes as ORT makes them ([] or [1]): one plain run
                for o in session.get_outputs():
                    binding.bind_output(o.name, *place)
                session.run_with_iobinding(binding)
                shapes = {
                    o.name: v.shape() for o, v in zip(session.get_outputs(), binding.get_outputs())
                }
            outputs = {  # fixed buffers: a capture replays on the addresses it saw
                name: ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, *place)
                for name, shape in shapes.items()
            }
            for name, value in outputs.items():
                binding.bind_ortvalue_output(name, value)
            for _ in range(3):  # warm-up, capture, replay
                session.run_with_iobinding(binding)
            results[label] = outputs["grad"].numpy().copy()
            print(f"{label}: ran 3 times")
        except Exception as exc:  # the answer we are after, printed in one line
            print(f"{label}: failed: {str(exc).splitlines()[0]}")
    if len(results) == 2:
        a, b = results["plain"], results["cuda graph"]
        print(f"replayed gradient vs plain: max |diff| {np.abs(a - b).max():.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda", "directml"))
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    print(f"onnxruntime {runtime.onnxruntime_version()}, device {args.device}")
    with tempfile.TemporaryDirectory() as folder:
        for path in sorted(PACKAGE_MODELS.glob("*.onnx")):
            placement(path, args.device, Path(folder))
    cuda_graph(args.size, args.device)


if __name__ == "__main__":
    main()
