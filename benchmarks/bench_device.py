"""The optimiser on the device vs on the host vs PyTorch: ms per evaluation split, and a run end to end.

Three ways to run the engine's projected L-BFGS (or Adam) on the same loss, in one process, one after
the other, on the same device:
  device  the device loop (core/device_optim.py): state in OrtValues, update graphs, scalars back;
  host    the grad graph on the device, the optimiser in numpy on the host (core/optim.py);
  torch   the same loss by PyTorch autograd (exporter/reference.py) and the same optimiser written
          with torch tensors on the same device (torch_lbfgs below; Adam: torch_adam).

Tables:
  1. per evaluation at each size: ms in the grad graph, in the update graphs (host: the numpy
     optimiser), in host↔device copies, and the rest (Python, binding); transfers per evaluation;
  2. end to end: stylize(--e2e-preset) on chelsea.jpg upscaled to --e2e-size (2048 px: 2048×1362)
     at one fixed style gain (fixed_gain), so the paths' final losses compare;
     with each path: wall time, evaluations, final loss (best of the last scale), ratios;
  3. CUDA only: the grad graph alone with the levers (--levers): CUDA graphs, prefer_nhwc, TF32;
     --tf32 also runs the end-to-end device path with TF32 and writes both results to --out so the
     strength issue's judge can compare them (the table compares final losses at equal evaluations).

    python benchmarks/bench_device.py                           # CPU: 256/512 px, short end-to-end
    python benchmarks/bench_device.py --sizes 128 --evals 3 --e2e-size 128 --e2e-steps 3  # smoke
    python benchmarks/bench_device.py --device cuda --tf32 --levers   # GPU (benchmarks/gpu-run.sh)

--device cuda needs onnxruntime-gpu and a CUDA build of torch in one environment. Machine sharing
matters on a CPU: compare ratios from one run, not absolute times.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from bench_stylize import TorchGraph, load

from onnxstyle.core import device_optim, graph, optim, runtime, scale, tiled
from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.graph import LossWeights, StyleGraph, Targets, as_nchw
from onnxstyle.core.imageio import save_image
from onnxstyle.core.images import fit_size, resize
from onnxstyle.core.optimise import OptimiserFn
from onnxstyle.core.schedule import scale_sizes
from onnxstyle.core.steering import SteeringSettings

COLUMNS = ("grad", "updates", "copies")


# ------------------------------------------------------------------------------ timing by patching


class Clock:
    """Seconds per bucket, filled by the wrappers that `timing` puts around the measured calls."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(COLUMNS, 0.0)

    def wrap(self, owner, name: str, bucket: str):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[bucket] += time.perf_counter() - t0

        setattr(owner, name, timed)
        return owner, name, original


@contextmanager
def timing(style_graph: StyleGraph, updates: device_optim.UpdateGraphs | None):
    """Time the grad graph's runs, the update graphs' runs and the counted copies."""
    clock, undo = Clock(), []
    undo.append(clock.wrap(style_graph._grad, "run", "grad"))
    undo.append(clock.wrap(style_graph._grad, "run_with_iobinding", "grad"))
    for session in updates._sessions.values() if updates else ():
        undo.append(clock.wrap(session, "run_with_iobinding", "updates"))
    for module, name in ((device_optim, "upload"), (device_optim, "download"), (graph, "download")):
        undo.append(clock.wrap(module, name, "copies"))
    try:
        yield clock
    finally:
        for owner, name, original in reversed(undo):
            if isinstance(owner, ModuleType):
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # the instance attribute hid the class's method


# ------------------------------------------------------------------------------ PyTorch baseline


class TorchDeviceGraph(TorchGraph):
    """TorchGraph with the loss on device tensors: x [1,3,H,W] in, (loss, gradient tensor) out."""

    def tensor_loss(self, targets: Targets, weights: LossWeights):
        want = {f"gram_{k}": v for k, v in targets.grams.items()}
        want["content_relu4_2"] = targets.content
        on_device = {k: torch.from_numpy(v).to(self.device) for k, v in want.items()}
        lam = torch.tensor(weights.style_layer_weights, device=self.device)

        def fun(x: torch.Tensor) -> tuple[float, torch.Tensor]:
            x = x.detach().requires_grad_()
            terms = self.net.loss(x, on_device, weights.alpha, weights.beta, lam, weights.tv_weight)
            terms.total.backward()
            return float(terms.total.detach()), x.grad

        return fun


def torch_lbfgs(fun, x0: torch.Tensor, max_evals: int, lower=0.0, upper=1.0, history=10,
                first_step=0.05, c1=1e-4, max_backtracks=8, tol=1e-10):  # fmt: skip
    """core/optim.py's lbfgs written with torch tensors (same steps; .item() where it reads a number)."""
    best = {"f": math.inf, "x": None, "evals": 0}

    def budget(x):
        if best["evals"] >= max_evals:
            raise optim._Spent
        best["evals"] += 1
        f, g = fun(x)
        if f < best["f"]:
            best["f"], best["x"] = f, x.clone()
        return f, g

    x, pairs = x0.clamp(lower, upper), deque(maxlen=history)
    try:
        f, g = budget(x)
        while True:
            free = ~(((x <= lower) & (g > 0)) | ((x >= upper) & (g < 0)))
            gf = torch.where(free, g, 0)
            gf_max = gf.abs().max().item()
            if gf_max <= tol:
                break
            q = gf.flatten().clone()
            alphas = []
            for s, y, rho, _ in reversed(pairs):
                alphas.append(rho * torch.dot(s, q).item())
                q -= alphas[-1] * y
            if pairs:
                q *= pairs[-1][3]
            for (s, y, rho, _), a in zip(pairs, reversed(alphas)):
                q += (a - rho * torch.dot(y, q).item()) * s
            d = -q.reshape(x.shape) * free
            if not pairs or torch.dot(gf.flatten(), d.flatten()).item() >= 0:
                pairs.clear()
                d = -gf * (first_step / gf_max)
            t, accepted = 1.0, False
            for _ in range(max_backtracks):
                x_new = (x + t * d).clamp(lower, upper)
                f_new, g_new = budget(x_new)
                armijo = torch.dot(g.flatten(), (x_new - x).flatten()).item()
                if math.isfinite(f_new) and f_new <= f + c1 * armijo:
                    accepted = True
                    break
                t *= 0.5
            if not accepted:
                if not pairs:
                    break
                pairs.clear()
                continue
            s, y = (x_new - x).flatten(), (g_new - g).flatten()
            sy, yy = torch.dot(s, y).item(), torch.dot(y, y).item()
            if sy > 1e-10 * yy:
                pairs.append((s, y, 1.0 / sy, sy / yy))
            x, f, g = x_new, f_new, g_new
    except optim._Spent:
        pass
    return best["x"] if best["x"] is not None else x


def torch_adam(fun, x0: torch.Tensor, max_evals: int, lower=0.0, upper=1.0, lr=0.02, beta1=0.9,
               beta2=0.999, eps=1e-12):  # fmt: skip
    """core/optim.py's adam written with torch tensors."""
    x, best = x0.clamp(lower, upper), (math.inf, None)
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    for k in range(1, max_evals + 1):
        f, g = fun(x)
        if f < best[0]:
            best = (f, x.clone())
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        step = lr * (m / (1 - beta1**k)) / ((v / (1 - beta2**k)).sqrt() + eps)
        x = (x - step).clamp(lower, upper)
    return best[1] if best[1] is not None else x


TORCH_OPTIMISERS = {"lbfgs": torch_lbfgs, "adam": torch_adam}


def torch_optimiser(torch_graph: TorchDeviceGraph) -> OptimiserFn:
    """The engine's schedule, balance and steering, each optimiser run (a scale's segment, a tile)
    made by the torch optimiser on the device: stylize(..., optimiser=torch_optimiser(graph))."""

    def run_optimiser(_graph, start, targets, weights, steps, options, meter):
        loss, pixels = torch_graph.tensor_loss(targets, weights), start.shape[0] * start.shape[1]

        def evaluate(x):
            meter.begin()
            f, g = loss(x)
            meter.end(f, bool(torch.isfinite(g).all()), pixels)
            return f, g

        kwargs = {"lr": options.learning_rate} if options.optimizer == "adam" else {}
        x0 = torch.from_numpy(as_nchw(start)).to(torch_graph.device)
        x = TORCH_OPTIMISERS[options.optimizer](evaluate, x0, steps, **kwargs)
        return x[0].permute(1, 2, 0).cpu().numpy()

    return run_optimiser


# No steering: every path optimises the same loss, so their final losses compare (a steered run's
# gain follows its own iterates): stylize(..., steering=FIXED_GAIN)
FIXED_GAIN = SteeringSettings(steer=False)


# ------------------------------------------------------------------------------ 1. per evaluation


def problem(style_graph: StyleGraph, size: int, style: np.ndarray):
    """Start image (the content), targets and weights at one size, as the engine makes them."""
    content = load("chelsea.jpg", size)
    h, w = content.shape[:2]
    grams = scale.style_grams(style_graph, resize(style, *fit_size(*style.shape[:2], size)), 1 << 40)  # fmt: skip
    target = style_graph.features(content)["content_relu4_2"]
    balance = scale.balance(style_graph, content, grams, 1 << 40)
    weights = scale.graph_weights(StyleOptions(), balance, target, h, w)
    return content, Targets(grams=grams, content=target), weights


def per_eval(path: str, style_graph, torch_graph, start, targets, weights, evals, name, sync):
    """Run `evals` evaluations on one path; returns ms per evaluation by bucket and transfers."""
    updates = device_optim.update_graphs(style_graph.concrete_device)
    if path == "torch":
        loss = torch_graph.tensor_loss(targets, weights)
        grad_s = [0.0]

        def fun(x):
            t0 = time.perf_counter()
            f, g = loss(x)
            bool(torch.isfinite(g).all())
            sync()
            grad_s[0] += time.perf_counter() - t0
            return f, g

        x0 = torch.from_numpy(as_nchw(start)).to(torch_graph.device)
        t0 = time.perf_counter()
        TORCH_OPTIMISERS[name](fun, x0, evals)
        sync()
        wall = time.perf_counter() - t0
        return {"total": wall, "grad": grad_s[0], "updates": 0.0, "copies": 0.0}, None
    moved = {}  # copies after the first evaluation (image and constants are up by then)
    with timing(style_graph, updates if path == "device" else None) as clock:
        t0 = time.perf_counter()
        if path == "device":

            def evaluate(x, g):
                loss = style_graph.loss_on_device(x, g, targets, weights)
                updates.finite(g)
                copies = runtime.TRANSFERS.uploads + runtime.TRANSFERS.downloads
                if moved:
                    moved["largest"] = max(moved["largest"], runtime.TRANSFERS.largest)
                moved.setdefault("first", copies)
                moved.update(last=copies, largest=moved.get("largest", 0))
                runtime.TRANSFERS.largest = 0
                return loss

            device_optim.OPTIMISERS[name](evaluate, as_nchw(start), evals, updates)
        else:

            def fun(x):
                terms, grad = style_graph.loss_and_grad(x, targets, weights)
                bool(np.isfinite(grad).all())
                return terms.total, grad

            optim.OPTIMISERS[name](fun, start, evals)
        wall = time.perf_counter() - t0
    if not moved:
        return {"total": wall, **clock.seconds}, None
    return {"total": wall, **clock.seconds}, (
        (moved["last"] - moved["first"]) / max(1, evals - 1),
        moved["largest"],
    )


def table_per_eval(args, style_graph, torch_graph, style, sync) -> None:
    print(
        f"\n1. per evaluation ({args.optimizer}, {args.evals} evaluations, best of {args.repeat})"
    )
    print(f"{'size':>10} {'path':>7} {'ms/eval':>9} {'grad':>8} {'updates':>8} {'copies':>7} {'other':>7} {'outside':>8}  transfers/eval after the first")  # fmt: skip
    for size in args.sizes:
        start, targets, weights = problem(style_graph, size, style)
        dims = f"{start.shape[1]}x{start.shape[0]}"
        best = {}
        for path in args.paths:  # warm-up: first-shape costs (allocation plans, cuDNN) stay out
            per_eval(path, style_graph, torch_graph, start, targets, weights, 2, args.optimizer, sync)  # fmt: skip
        for _ in range(args.repeat):
            for path in args.paths:
                ms, moved = per_eval(path, style_graph, torch_graph, start, targets, weights, args.evals, args.optimizer, sync)  # fmt: skip
                ms = {k: 1e3 * v / args.evals for k, v in ms.items()}
                if path not in best or ms["total"] < best[path][0]["total"]:
                    best[path] = (ms, moved)
        for path, (ms, moved) in best.items():
            other = ms["total"] - ms["grad"] - ms["updates"] - ms["copies"]
            outside = 100 * (ms["total"] - ms["grad"]) / ms["total"]
            moved = "" if moved is None else f"{moved[0]:.1f} copies, largest {moved[1]} B"
            label = {"host": "host", "device": "device", "torch": "torch"}[path]
            print(f"{dims:>10} {label:>7} {ms['total']:>9.1f} {ms['grad']:>8.1f} {ms['updates']:>8.1f} {ms['copies']:>7.1f} {other:>7.1f} {outside:>7.1f}%  {moved}", flush=True)  # fmt: skip
        if "host" in best and "device" in best:
            h, d = best["host"][0], best["device"][0]
            print(f"{dims:>10} host/device: {h['total'] / d['total']:.3f}x per evaluation, outside the grad graph {h['total'] - h['grad']:.1f} vs {d['total'] - d['grad']:.1f} ms")  # fmt: skip
    print(
        "   host: 'grad' includes the image upload and gradient download on a GPU (bound CPU I/O);"
    )
    print(
        "   'updates' is the numpy optimiser there, inside 'other'; torch: 'grad' = forward+backward"
    )


# ------------------------------------------------------------------------------ 2. end to end


def run_e2e(label: str, runner, content, style, options, sync) -> dict:
    reports = []
    t0 = time.perf_counter()
    result = runner(content, [style], options, progress=reports.append)
    sync()
    wall = time.perf_counter() - t0
    last = [r.loss for r in reports if r.scale == reports[-1].scale]
    print(f"  {label}: {wall:.1f} s", flush=True)
    return {"wall": wall, "evals": len(reports), "loss": min(last), "result": result}


def table_e2e(args, style_graph, torch_graph, style, sync) -> None:
    content = load("chelsea.jpg", args.e2e_size)
    budget = args.tile_budget or tiled.default_tile_budget(style_graph)
    overrides = {"max_size": args.e2e_size, "device": style_graph.concrete_device}
    overrides.update(tile_budget_mpx=budget, optimizer=args.optimizer)
    if args.e2e_steps:
        overrides["steps"] = args.e2e_steps
    options = StyleOptions.from_preset(args.e2e_preset, **overrides)
    sizes = scale_sizes(*content.shape[:2], options)
    print(f"\n2. end to end: --preset {args.e2e_preset} on {content.shape[1]}x{content.shape[0]}, {options.steps} steps x {len(sizes)} scales, tile budget {budget:.2f} Mpx, one fixed gain (no steering)")  # fmt: skip
    rows = {}
    loop = style_graph.device_loop
    for path in args.paths:
        if path == "torch":
            rows[path] = run_e2e(path, lambda *a, **k: stylize(*a, **k, graph=torch_graph, steering=FIXED_GAIN, optimiser=torch_optimiser(torch_graph)), content, style, options, sync)  # fmt: skip
            continue
        style_graph.device_loop = path == "device"
        try:
            rows[path] = run_e2e(path, lambda *a, **k: stylize(*a, **k, graph=style_graph, steering=FIXED_GAIN), content, style, options, sync)  # fmt: skip
        finally:
            style_graph.device_loop = loop
    if args.tf32 and style_graph.concrete_device == "cuda":
        os.environ["ONNXSTYLE_CUDA_TF32"] = "1"
        try:
            tf32 = StyleGraph.load("avg", "cuda")
        finally:
            del os.environ["ONNXSTYLE_CUDA_TF32"]
        rows["device+tf32"] = run_e2e("device+tf32", lambda *a, **k: stylize(*a, **k, graph=tf32, steering=FIXED_GAIN), content, style, options, sync)  # fmt: skip
        del tf32  # its sessions' memory back before table 3
    base = rows.get("device") or next(iter(rows.values()))
    print(f"\n{'path':>12} {'evals':>6} {'wall s':>8} {'x device':>9} {'final loss':>12} {'loss vs device':>15}")  # fmt: skip
    for path, r in rows.items():
        print(f"{path:>12} {r['evals']:>6} {r['wall']:>8.1f} {r['wall'] / base['wall']:>8.2f}x {r['loss']:>12.5g} {100 * (r['loss'] - base['loss']) / base['loss']:>+14.2f}%")  # fmt: skip
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for path, r in rows.items():
            save_image(args.out / f"e2e-{path}.png", r["result"])
        print(f"results written to {args.out}/e2e-<path>.png (for the judge)")


# ------------------------------------------------------------------------------ 3. CUDA levers


def table_levers(args, style_graph, style) -> None:
    """The grad graph alone at the largest size, I/O bound on the device, with each lever."""
    import onnxruntime as ort

    size = max(args.sizes)
    start, targets, weights = problem(style_graph, size, style)
    device, place = style_graph.concrete_device, style_graph.place
    print(f"\n3. grad graph alone at {start.shape[1]}x{start.shape[0]}, ms per run (best of 10 after 3)")  # fmt: skip
    variants = {"default (float32)": {}}
    if device == "cuda":
        variants.update(
            {
                "tf32": {"use_tf32": "1"},
                "prefer_nhwc": {"prefer_nhwc": "1"},
                "cuda graph": {"enable_cuda_graph": "1"},
            }  # fmt: skip
        )
    x = as_nchw(start)
    feed = {**style_graph._constant_feed(targets, weights), "image": x}
    shapes, reference = None, None
    for label, extra in variants.items():
        try:
            providers = [("CUDAExecutionProvider", {**runtime.provider_options("cuda"), **extra})]
            session = ort.InferenceSession(
                str(style_graph.manifest.grad_path),
                sess_options=runtime.session_options(device),
                providers=(providers if device == "cuda" else []) + ["CPUExecutionProvider"],
            )
            binding = session.io_binding()
            keep = {k: ort.OrtValue.ortvalue_from_numpy(v, *place) for k, v in feed.items()}
            for k, v in keep.items():
                binding.bind_ortvalue_input(k, v)
            names = [o.name for o in session.get_outputs()]
            if shapes is None:  # learn the outputs' shapes ([] or [1]) once, from a plain bound run
                for name in names:
                    binding.bind_output(name, *place)
                session.run_with_iobinding(binding)
                shapes = {n: v.shape() for n, v in zip(names, binding.get_outputs())}
            for name in names:  # fixed addresses, as CUDA graphs need
                keep[name] = ort.OrtValue.ortvalue_from_shape_and_type(shapes[name], np.float32, *place)  # fmt: skip
                binding.bind_ortvalue_output(name, keep[name])
            times = []
            for _ in range(13):
                t0 = time.perf_counter()
                session.run_with_iobinding(binding)
                times.append(time.perf_counter() - t0)
            grad = keep["grad"].numpy()
            reference = grad if reference is None else reference
            err = np.linalg.norm(grad - reference) / np.linalg.norm(reference)
            print(f"  {label:<18} {1e3 * min(times[3:]):8.1f} ms   gradient vs default {100 * err:.3f}%", flush=True)  # fmt: skip
        except Exception as exc:  # one lever failing must not cost the rest of the table
            print(f"  {label:<18} failed: {str(exc).strip().splitlines()[0][:150]}", flush=True)
    free = runtime.cuda_free_bytes()
    if free is not None:
        print(f"  CUDA free memory {free / 1e9:.1f} GB -> tile budget {tiled.cuda_tile_budget(free):.1f} Mpx")  # fmt: skip


# ------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--sizes", type=int, nargs="+", help="longer sides for table 1 (cpu: 256 512; cuda: 512 1024 2048)")  # fmt: skip
    ap.add_argument("--evals", type=int, help="evaluations per measurement (cpu: 4; cuda: 20)")
    ap.add_argument("--repeat", type=int, default=2, help="measurements per path (best kept)")
    ap.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"])
    ap.add_argument("--paths", nargs="+", default=["host", "device", "torch"], choices=["host", "device", "torch"])  # fmt: skip
    ap.add_argument("--e2e-size", type=int, default=2048, help="longer side of the end-to-end run (0: skip)")  # fmt: skip
    ap.add_argument("--e2e-preset", default="high")
    ap.add_argument("--e2e-steps", type=int, help="steps per scale (default: the preset's)")
    ap.add_argument("--tile-budget", type=float, help="Mpx for the end-to-end runs (default: the engine's for the device)")  # fmt: skip
    ap.add_argument("--tf32", action="store_true", help="cuda: also run end to end with TF32")
    ap.add_argument(
        "--levers", action="store_true", help="table 3: the grad graph alone with the CUDA levers"
    )
    ap.add_argument("--out", type=Path, help="write the end-to-end results here")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    args.sizes = args.sizes or ([512, 1024, 2048] if cuda else [256, 512])
    args.evals = args.evals or (20 if cuda else 4)
    torch.backends.cudnn.allow_tf32 = False  # torch's convs in float32, like ONNX Runtime's default
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    style_graph = StyleGraph.load("avg", args.device)
    torch_graph = TorchDeviceGraph("avg", args.device) if "torch" in args.paths else None
    style = load("swirls.jpg", 512)
    print(
        f"device {args.device} ({style_graph._grad.get_providers()[0]}); onnxruntime "
        f"{runtime.onnxruntime_version()}; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads{', ' + torch.cuda.get_device_name() if cuda else ''}; pixel updates on the "
        f"{runtime.pixel_updates(style_graph.concrete_device)}"
    )
    free_torch_cache = torch.cuda.empty_cache if cuda else (lambda: None)
    table_per_eval(args, style_graph, torch_graph, style, sync)
    free_torch_cache()  # torch's cached blocks would shrink the free memory the tile budget reads
    if args.e2e_size:
        table_e2e(args, style_graph, torch_graph, style, sync)
        free_torch_cache()
    if args.levers:
        table_levers(args, style_graph, style)


if __name__ == "__main__":
    main()
