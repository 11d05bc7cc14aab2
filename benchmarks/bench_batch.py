"""Many pictures on Ray (plugin/cluster.py) against the same pictures one after another in one
process: pictures per minute for 1, 2 and 4 workers, the scaling efficiency, and the overhead Ray
adds.

The batch: `--pictures` crops of examples/chelsea.jpg (each its own picture, shifted), `--size` px,
the draft preset (`--steps` evaluations a scale instead of its 60, to fit a small machine), the
style examples/swirls.jpg. The loop: one StyleGraph, engine.stylize per picture (targets computed
per picture, as `stylize` does). On Ray: a local Ray with N workers; "start" is ray.init, the
workers loading their graphs and the shared targets; "run" is the pictures. Efficiency at N:
rate(N) / (N · rate(1)). Overhead: Ray's run (and start + run) against the loop, at 1 worker.

    python benchmarks/bench_batch.py                                # 24 pictures, 256 px, 1 2 4 workers
    python benchmarks/bench_batch.py --workers 1 2 --steps 10       # a 2-core machine

On a CPU machine the workers split the cores (each pinned to its share: ONNX Runtime sizes its
threads to that), so N workers need N cores.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from onnxstyle.core.engine import StyleOptions, scale_sizes, style_side, stylize
from onnxstyle.core.graph import StyleGraph
from onnxstyle.core.tiled import DEFAULT_TILE_MPX
from onnxstyle.plugin import cluster

print = functools.partial(print, flush=True)  # rows as they come, also into a file

ROOT = Path(__file__).resolve().parent.parent
CONTENT = ROOT / "examples" / "chelsea.jpg"
STYLE = ROOT / "examples" / "swirls.jpg"


def pictures(count: int, size: int) -> list[np.ndarray]:
    """`count` different size × size crops of the example photo."""
    with Image.open(CONTENT) as im:
        photo = np.asarray(im.convert("RGB"), np.float32) / 255
    h, w = photo.shape[:2]
    side = min(h, w)
    out = []
    for i in range(count):
        x = (w - side) * i // max(count - 1, 1)
        crop = Image.fromarray((photo[:side, x : x + side] * 255).astype(np.uint8))
        out.append(
            np.asarray(crop.resize((size, size), Image.Resampling.LANCZOS), np.float32) / 255
        )
    return out


def loop(contents, style, options, longers, shared: bool) -> tuple[float, float]:
    """(start seconds, run seconds) for the pictures one after another in this process: the graph
    loaded once; the style targets per picture (as `stylize` does), or once (`shared`, as the
    batch does)."""
    started = time.perf_counter()
    graph = StyleGraph.load(options.pooling, options.device)
    targets = None
    if shared:
        budget = int(DEFAULT_TILE_MPX * 1e6)
        grams = {k: cluster._style_targets(graph, [style], np.ones(1), k, budget) for k in longers}
        targets = grams.__getitem__
    ready = time.perf_counter()
    for content in contents:
        stylize(content, [style], options, graph=graph, style_grams=targets)
    return ready - started, time.perf_counter() - ready


def on_ray(contents, style, options, workers: int) -> tuple[float, float]:
    """(start seconds, run seconds) for the pictures on a local Ray with `workers` workers."""
    started = time.perf_counter()
    h, w = contents[0].shape[:2]
    longers = sorted({style_side(a, b, options.style_scale) for a, b in scale_sizes(h, w, options)})
    with cluster.connect(None) as session:
        session.start_workers(options, workers)
        styles_ref = session.ray.put([style])
        session.share_targets(styles_ref, options, 1, longers)
        options_ref = session.ray.put(options)
        ready = time.perf_counter()
        jobs = [
            cluster.Job(str(i), (lambda c=c: c), tuple(longers)) for i, c in enumerate(contents)
        ]
        done = 0
        submit = session.stylize_call(options_ref, styles_ref)
        for event in session.run(jobs, submit, lambda: False):
            if isinstance(event, cluster.Failed):
                raise SystemExit(f"picture {event.job.name} failed: {event.message}")
            done += isinstance(event, cluster.Done)
        assert done == len(contents)
        return ready - started, time.perf_counter() - ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60, help="evaluations a scale (draft: 60)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--per-picture",
        action="store_true",
        help="also the loop with the targets computed per picture (as stylize does)",
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local Ray: no token in ~/.ray

    options = StyleOptions.from_preset("draft", steps=args.steps, device=args.device)
    contents = pictures(args.pictures, args.size)
    style = np.asarray(Image.open(STYLE).convert("RGB"), np.float32) / 255
    scales = len(scale_sizes(args.size, args.size, options))
    print(
        f"{args.pictures} pictures at {args.size} px, draft, {args.steps} evaluations x {scales} "
        f"scales, device {args.device}, {os.cpu_count()} cores"
    )
    longers = sorted({style_side(a, b, 1.0) for a, b in scale_sizes(args.size, args.size, options)})
    head = f"{'start s':>9}{'run s':>9}{'pictures/min':>14}{'efficiency':>12}{'vs loop':>10}"
    print(f"\n{'':26}{head}")
    loops = ((False, "loop, targets per picture"), (True, "loop, targets once"))
    for shared, name in loops if args.per_picture else loops[1:]:
        start, base = loop(contents, style, options, longers, shared)
        print(f"{name:26}{start:9.1f}{base:9.1f}{60 * len(contents) / base:14.2f}")
    rates: dict[int, float] = {}
    for n in args.workers:
        start, run = on_ray(contents, style, options, n)
        rate = rates[n] = 60 * len(contents) / run
        efficiency = f"{rate / (n * rates[1]):.0%}" if 1 in rates else ""
        versus = f"{run / base - 1:+.1%}"
        print(
            f"{f'Ray, {n} worker(s)':26}{start:9.1f}{run:9.1f}{rate:14.2f}{efficiency:>12}{versus:>10}"
        )
    print(
        "\nvs loop: Ray's run time against the loop with the targets once: the overhead Ray adds "
        "(negative: faster). Start: the graph and the targets; on Ray also ray.init and the "
        "workers, paid once per batch."
    )


if __name__ == "__main__":
    main()
