"""Full stylization: onnxstyle's engine on ONNX Runtime vs the same schedule on PyTorch autograd.

Both runs use the engine's own schedule (scales, steps, weights, the numpy L-BFGS, the same weights
file); only the loss-and-gradient evaluation differs: ONNX Runtime's grad graph vs
`onnxstyle.exporter.reference` (PyTorch autograd). Same process, same threads, run one after the other.
Prints wall time, peak memory above the start (RSS sampled every 10 ms; on CUDA the device memory
used), final loss (best of the last scale) and the ratios.

    python benchmarks/bench_stylize.py                          # CPU, 256 and 512 px, normal preset
    python benchmarks/bench_stylize.py --sizes 256 512 1024 --steps 150
    python benchmarks/bench_stylize.py --device cuda            # GPU machine: 2048 px vs torch on cuda

--device cuda needs onnxruntime-gpu (not the CPU package) and a CUDA build of torch in one environment;
ONNXSTYLE_CUDA_TF32=1 lets ONNX Runtime use TF32 (it runs in float32 by default, see core/runtime.py).
Tiling is switched off here (tile budget 64 Mpx) so both run the same whole-image schedule.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.graph import LossTerms, LossWeights, StyleGraph, Targets
from onnxstyle.exporter.reference import ReferenceVGG

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class TorchGraph:
    """A GraphLike (core/scale.py: features, loss_and_grad) computed by the PyTorch reference."""

    def __init__(self, pooling: str, device: str) -> None:
        self.device = torch.device(device)
        self.net = ReferenceVGG.load(pooling=pooling).eval().to(self.device)
        self._targets_for = None
        self._targets: dict[str, torch.Tensor] = {}

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None])).to(
            self.device
        )

    def features(self, image: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {k: v.cpu().numpy() for k, v in self.net.features(self._tensor(image)).items()}

    def loss_and_grad(self, image: np.ndarray, targets: Targets, weights: LossWeights):
        if (
            self._targets_for is not targets
        ):  # upload once per target set, like the engine's feed cache
            self._targets = {
                f"gram_{k}": torch.from_numpy(v).to(self.device) for k, v in targets.grams.items()
            }
            self._targets["content_relu4_2"] = torch.from_numpy(targets.content).to(self.device)
            self._targets_for = targets
        x = self._tensor(image).requires_grad_()
        terms = self.net.loss(
            x,
            self._targets,
            weights.alpha,
            weights.beta,
            torch.tensor(weights.style_layer_weights, device=self.device),
            weights.tv_weight,
        )
        terms.total.backward()
        out = LossTerms(
            total=float(terms.total.detach()),
            content=float(terms.content.detach()),
            style=terms.style.detach().cpu().numpy(),
            tv=float(terms.tv.detach()),
        )
        return out, x.grad[0].permute(1, 2, 0).cpu().numpy()


class PeakMemory:
    """Peak process RSS (CPU) or device memory in use (CUDA) above the level at start, in MB."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.peak, self._stop = cuda, 0, threading.Event()

    def _used(self) -> int:
        if self.cuda:
            free, total = torch.cuda.mem_get_info()
            return total - free
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self.base = self.peak = self._used()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._used())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._used())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def load(name: str, longer: int) -> np.ndarray:
    im = Image.open(EXAMPLES / name).convert("RGB")
    im = im.resize((longer, round(longer * im.height / im.width)), Image.Resampling.LANCZOS)
    return np.asarray(im, np.float32) / 255


def run_one(graph, content, style, options, cuda: bool) -> dict:
    reports = []
    with PeakMemory(cuda) as mem:
        t0 = time.perf_counter()
        stylize(content, [style], options, progress=reports.append, graph=graph)
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    last = [r.loss for r in reports if r.scale == reports[-1].scale]
    return {"wall": wall, "mem": mem.mb, "loss": min(last), "evals": len(reports)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--sizes", type=int, nargs="+", help="longer side(s), px (cpu: 256 512; cuda: 2048)"
    )
    ap.add_argument("--preset", default="normal")
    ap.add_argument("--steps", type=int, help="evaluations per scale (default: the preset's)")
    ap.add_argument(
        "--engines", nargs="+", default=["onnxruntime", "torch"], choices=["onnxruntime", "torch"]
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs per engine and size (best time kept)"
    )
    args = ap.parse_args()
    sizes = args.sizes or ([2048] if args.device == "cuda" else [256, 512])
    cuda = args.device == "cuda"
    torch.set_grad_enabled(True)
    print(
        f"device {args.device}; torch {torch.__version__} threads {torch.get_num_threads()}"
        + (f", {torch.cuda.get_device_name()}" if cuda else "")
    )

    onnx_graph = StyleGraph.load("avg", args.device)
    torch_graph = TorchGraph("avg", args.device) if "torch" in args.engines else None
    style = load("swirls.jpg", 512)
    rows = []
    for size in sizes:
        content = load("chelsea.jpg", size)
        overrides = {
            "max_size": size,
            "device": args.device,
            "tile_budget_mpx": 64.0,
        }  # no tiling here
        if args.steps:
            overrides["steps"] = args.steps
        options = StyleOptions.from_preset(args.preset, **overrides)
        # warm-up: session/graph set-up and first-shape costs stay out of the table
        for graph in (g for g in (onnx_graph, torch_graph) if g is not None):
            stylize(content[:64, :64], [style], replace(options, steps=2, max_size=64), graph=graph)
        for name, graph in (("onnxruntime", onnx_graph), ("torch", torch_graph)):
            if name not in args.engines:
                continue
            best = min(
                (run_one(graph, content, style, options, cuda) for _ in range(args.repeat)),
                key=lambda r: r["wall"],
            )
            rows.append((size, f"{content.shape[1]}x{content.shape[0]}", name, best))
            print(f"  {size}px {name}: {best['wall']:.1f}s", flush=True)

    print(
        f"\n{'size':>9} {'engine':>12} {'evals':>6} {'wall s':>8} {'peak MB':>8} {'final loss':>12}"
    )
    for _size, dims, name, r in rows:
        print(
            f"{dims:>9} {name:>12} {r['evals']:>6} {r['wall']:>8.1f} {r['mem']:>8.0f} {r['loss']:>12.5g}"
        )
    if len(args.engines) < 2:
        return
    print(
        f"\n{'size':>9} {'speed-up (torch/onnx)':>22} {'memory (onnx/torch)':>20} {'loss diff':>10}"
    )
    for i in range(0, len(rows), 2):
        (_, dims, _, o), (_, _, _, t) = rows[i], rows[i + 1]
        print(
            f"{dims:>9} {t['wall'] / o['wall']:>21.2f}x {o['mem'] / max(t['mem'], 1):>19.2f}x "
            f"{100 * (o['loss'] - t['loss']) / t['loss']:>+9.2f}%"
        )


if __name__ == "__main__":
    main()
