"""The steps of benchmarks/gpu-run.sh that need no torch: each one short, bounded by the script's
`timeout`, printing its findings and `target:` lines that `summary` collects.

    python benchmarks/gpu_steps.py env     [--device cuda]   # 0. ONNX Runtime, its CUDA libraries
    python benchmarks/gpu_steps.py place   [--size 512]      # 1. where the graphs' nodes run
    python benchmarks/gpu_steps.py check   [--size 512]      # 2. one evaluation vs the CPU provider
    python benchmarks/gpu_steps.py loop    [--size 512]      # 3. device loop vs host loop, 20 evals
    python benchmarks/gpu_steps.py summary --log FILE        # the targets: met / not met / not measured

torch is not imported here: steps 0-3 show that ONNX Runtime finds its CUDA libraries on its own
(core/runtime.py's loader), not because torch loaded them first.

A rehearsal on the CPU injects failures: BENCH_FAIL=2 makes step 2 raise as a failing CUDA call
would; BENCH_FAIL=2:exit ends its process as a crash would (no Python error); BENCH_FAIL=2:hang
makes it hang until the script's timeout ends it; BENCH_FAIL=4@device fails only that row of a
table step (4: table 1's path rows, e.g. device-tf32; 5: table 2's runs; 6: table 3's levers).
Several: BENCH_FAIL=1,4@torch:exit,5:hang.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from onnxstyle.core import device_optim, optim, runtime, scale, tiled
from onnxstyle.core.engine import StyleOptions
from onnxstyle.core.graph import StyleGraph, Targets, as_nchw
from onnxstyle.core.images import fit_size, resize

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The summary's rows: key, the step that measures it, what is wanted.
TARGETS = {
    "cpu-nodes": (1, "no graph node placed on the CPU"),
    "vs-cpu": (2, "one evaluation vs the CPU provider: loss ≤ 1e-3 relative, gradient cosine ≥ 0.999"),
    "loop": (3, "device loop vs host loop, 20 L-BFGS evaluations: final loss within 1%"),
    "outside": (4, "device loop: time outside the grad graph ≤ 10% of an evaluation (largest size)"),
    "e2e": (5, "--preset high end to end, device loop: ≤ 20 s"),
    "vs-torch": (5, "--preset high end to end: ≥ 3x PyTorch eager on the same schedule"),
}  # fmt: skip


# ------------------------------------------------------------------------------ shared by the steps


def injected(step: int, where: str = "") -> None:
    """The rehearsal's fake failure for `step`, or for one row of it (BENCH_FAIL, module docstring)."""
    for item in filter(None, os.environ.get("BENCH_FAIL", "").split(",")):
        spec, _, how = item.partition(":")
        number, _, row_label = spec.partition("@")
        if not number.isdigit() or int(number) != step or row_label != where:
            continue
        print(f"injecting a failure into step {step}{' row ' + where if where else ''} ({how or 'raise'})", flush=True)  # fmt: skip
        if how == "exit":
            os._exit(139)  # as a segfault in a CUDA library would: no traceback, no finally
        if how == "hang":
            time.sleep(10**6)
        raise RuntimeError(f"CUDA failure (injected: BENCH_FAIL={item})")


def cause(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def target(key: str, met: bool | None, value: str) -> None:
    """One line for the summary (met None: not measured, with the reason in `value`)."""
    state = "not measured" if met is None else ("met" if met else "not met")
    print(f"target: {key} | {state} | {value}", flush=True)


@contextmanager
def row(label: str):
    """One row of a table: its failure is printed as one line and the table goes on."""
    try:
        yield
    except Exception as exc:  # whatever the device raised: the next row may still work
        print(f"  {label}: failed: {cause(exc)}", flush=True)


def load(name: str, longer: int) -> np.ndarray:
    """An example picture resized so its longer side is `longer` (bench_stylize.load, without torch)."""
    im = Image.open(EXAMPLES / name).convert("RGB")
    im = im.resize((longer, round(longer * im.height / im.width)), Image.Resampling.LANCZOS)
    return np.asarray(im, np.float32) / 255


def problem(style_graph: StyleGraph, size: int, style: np.ndarray):
    """Start image (the content), targets and weights at one size, as the engine makes them."""
    content = load("chelsea.jpg", size)
    h, w = content.shape[:2]
    side = fit_size(*style.shape[:2], size)
    grams = scale.style_grams(style_graph, resize(style, *side), 1 << 40)
    target_content = style_graph.features(content)["content_relu4_2"]
    balance = scale.balance(style_graph, content, grams, 1 << 40)
    weights = scale.graph_weights(StyleOptions(), balance, target_content, h, w)
    return content, Targets(grams=grams, content=target_content), weights


# ------------------------------------------------------------------------------ 0. environment


def step_env(args) -> None:
    injected(0)
    ort = runtime.import_onnxruntime()
    print(f"onnxruntime {ort.__version__} ({', '.join(runtime.installed_variants())}), {ort.__file__}")  # fmt: skip
    print(f"providers: {', '.join(ort.get_available_providers())}")
    if args.device == "cuda":
        dirs = runtime.cuda_library_dirs()
        print(f"NVIDIA wheel folders on sys.path: {', '.join(map(str, dirs)) or 'none'}")
        loaded = runtime._preload_cuda_libraries()
        for name in runtime.CUDA_LIBRARIES:
            print(f"  {name:<20} {loaded.get(name, 'not in a wheel folder: left to the system loader')}")  # fmt: skip
    for device in runtime.available_devices():
        print(f"device {device['device']}: {'available' if device['available'] else device['reason']}")  # fmt: skip
    print(f"pixel updates on {args.device}: {runtime.pixel_updates(args.device)}")
    free = runtime.cuda_free_bytes() if args.device == "cuda" else None
    if free is not None:
        print(f"CUDA free memory {free / 1e9:.1f} GB -> tile budget {tiled.cuda_tile_budget(free):.1f} Mpx")  # fmt: skip


# ------------------------------------------------------------------------------ 1. node placement


@contextmanager
def profiled(folder: Path):
    """Every session made meanwhile writes ORT's profile (one event per node run, with its provider)."""
    plain = runtime.session_options

    def with_profile(device, threads=None):
        opts = plain(device, threads)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(folder / "profile")
        return opts

    runtime.session_options = with_profile
    try:
        yield
    finally:
        runtime.session_options = plain


def placements(profile: Path) -> dict[str, tuple[str, str]]:
    """node name -> (provider, op type), from one ORT profile file."""
    nodes = {}
    for event in json.loads(profile.read_text()):
        args = event.get("args", {})
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and "provider" in args:  # fmt: skip
            nodes[event["name"].removesuffix("_kernel_time")] = (args["provider"], args["op_name"])
    return nodes


def step_place(args) -> None:
    """Every graph run once or more (features, grad bound and plain, the device loop's update
    graphs), with ORT's profiler on; nodes counted by provider, CPU ones by op."""
    injected(1)
    folder = Path(tempfile.mkdtemp(prefix="onnxstyle-place-"))
    with profiled(folder):
        graph = StyleGraph.load("avg", args.device)
        updates = device_optim.UpdateGraphs(graph.concrete_device)
        start, targets, weights = problem(graph, args.size, load("swirls.jpg", args.size))
        graph.loss_and_grad(start, targets, weights)

        def loss(x, g):
            value = graph.loss_on_device(x, g, targets, weights)
            updates.finite(g)
            return value

        device_optim.lbfgs(loss, as_nchw(start), 4, updates)
        device_optim.adam(loss, as_nchw(start), 2, updates)
        sessions = {"features": graph._features, "grad": graph._grad}
        sessions.update({f"optim-{k}": s for k, s in updates._sessions.items()})
        files = {name: Path(s.end_profiling()) for name, s in sessions.items()}
    nodes = {name: placements(path) for name, path in files.items()}
    shutil.rmtree(folder, ignore_errors=True)
    on_cpu_total, cpu = 0, runtime.PROVIDERS["cpu"]
    print(f"{'graph':<22} {'nodes run':>9} {'on the CPU':>10}  CPU nodes by op")
    for name, run in nodes.items():
        ops = Counter(op for provider, op in run.values() if provider == cpu)
        on_cpu = sum(ops.values()) if graph.concrete_device != "cpu" else 0
        on_cpu_total += on_cpu
        listed = ", ".join(f"{op} x{n}" for op, n in ops.most_common()) if on_cpu else ""
        print(f"{name:<22} {len(run):>9} {on_cpu:>10}  {listed}")
    if graph.concrete_device == "cpu":
        target("cpu-nodes", None, "the CPU provider: every node is on the CPU (rehearsal)")
    else:
        target("cpu-nodes", on_cpu_total == 0, f"{on_cpu_total} nodes on the CPU")


# ------------------------------------------------------------------------------ 2. vs the CPU provider


def step_check(args) -> None:
    injected(2)
    device_graph = StyleGraph.load("avg", args.device)
    cpu_graph = StyleGraph.load("avg", "cpu")
    start, targets, weights = problem(cpu_graph, args.size, load("swirls.jpg", args.size))
    x = np.clip(start + 0.05 * np.random.default_rng(0).standard_normal(start.shape), 0, 1)
    x = x.astype(np.float32)  # off the content, so every loss term and its gradient is non-zero
    (cpu_terms, cpu_grad), (dev_terms, dev_grad) = (
        g.loss_and_grad(x, targets, weights) for g in (cpu_graph, device_graph)
    )
    loss_err = abs(dev_terms.total - cpu_terms.total) / abs(cpu_terms.total)
    a, b = dev_grad.ravel().astype(np.float64), cpu_grad.ravel().astype(np.float64)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    ok = loss_err <= 1e-3 and cosine >= 0.999
    print(f"{x.shape[1]}x{x.shape[0]}: loss {dev_terms.total:.6g} ({device_graph.concrete_device}) vs {cpu_terms.total:.6g} (cpu), relative {loss_err:.2e}; gradient cosine {cosine:.6f}")  # fmt: skip
    print("PASS" if ok else "FAIL")
    target("vs-cpu", ok, f"loss {loss_err:.1e} relative, cosine {cosine:.6f}")


# ------------------------------------------------------------------------------ 3. device vs host loop


def step_loop(args) -> None:
    injected(3)
    graph = StyleGraph.load("avg", args.device)
    updates = device_optim.update_graphs(graph.concrete_device)
    start, targets, weights = problem(graph, args.size, load("swirls.jpg", args.size))

    def host(x):
        terms, grad = graph.loss_and_grad(x, targets, weights)
        return terms.total, grad

    runs = {}
    for path in ("host", "device"):  # each once briefly first: first-shape costs stay out
        for evals in (2, args.evals):
            t0 = time.perf_counter()
            if path == "host":
                result = optim.lbfgs(host, start, evals)
            else:
                loss = lambda x, g: graph.loss_on_device(x, g, targets, weights)  # noqa: E731
                result = device_optim.lbfgs(loss, as_nchw(start), evals, updates)
        runs[path] = (result.loss, result.evals, time.perf_counter() - t0)
        print(f"  {path:<6} final loss {result.loss:.6g} after {result.evals} evaluations, {1e3 * runs[path][2] / result.evals:.1f} ms per evaluation", flush=True)  # fmt: skip
    (host_loss, *_), (device_loss, *_) = runs["host"], runs["device"]
    diff = abs(device_loss - host_loss) / abs(host_loss)
    print(f"{start.shape[1]}x{start.shape[0]}: device vs host final loss {100 * diff:.3f}%")
    target("loop", diff <= 0.01, f"{100 * diff:.3f}% at {start.shape[1]}x{start.shape[0]}")


# ------------------------------------------------------------------------------ summary


def step_summary(args) -> None:
    """The targets' table from the run's log: the last word on each key wins; absent: not measured."""
    found, steps, ended = {}, [], {}
    for line in Path(args.log).read_text(errors="replace").splitlines():
        if line.startswith("target: "):
            key, state, value = (part.strip() for part in line[8:].split("|", 2))
            found[key] = (state, value)
        elif line.startswith("== step ") and " in " in line:
            steps.append(line[3:])
            number, _, how = line[8:].partition(":")
            ended[number.split()[0]] = how.split(" in ")[0].strip()
    print("steps:")
    for line in steps:
        print(f"  {line}")
    print(f"\n{'target':<10} {'step':>4}  {'state':<13} {'measured':<40} wanted")
    for key, (step, wanted) in TARGETS.items():
        state, value = found.get(key, ("not measured", f"(step {ended.get(str(step), 'not run')})"))
        print(f"{key:<10} {step:>4}  {state:<13} {value:<40} {wanted}")


STEPS = {"env": step_env, "place": step_place, "check": step_check, "loop": step_loop}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=[*STEPS, "summary"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--size", type=int, default=512, help="longer side of the test image (px)")
    ap.add_argument("--evals", type=int, default=20, help="loop: L-BFGS evaluations per path")
    ap.add_argument("--log", help="summary: the run's log")
    args = ap.parse_args()
    if args.step == "summary":
        step_summary(args)
        return 0
    try:
        STEPS[args.step](args)
    except Exception as exc:  # the step's one-line cause; the script goes on with the next
        print(f"step {args.step} failed: {cause(exc)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
