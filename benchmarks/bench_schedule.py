"""Multi-scale schedules compared by the judge: how to spend a budget of evaluations across scales.

A schedule is the number of evaluations per scale, coarse to fine ("60,60" = the draft preset at 256 px,
two scales). Each is run as the engine runs it: scale by scale, each scale a single-scale stylize that
starts from the previous result (the engine upsamples it the same way: bicubic to the next size), so
per-scale counts the engine's single `steps` can't express can be measured. Prints, per schedule, the
judge's mean reduction and content error over the pairs and the wall time relative to the first
schedule (same process, one after the other; compare ratios, not seconds).

    python benchmarks/bench_schedule.py                                  # the default comparison
    python benchmarks/bench_schedule.py --schedules 60,60 100,35 30,70 --pairs hopper:bricks
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from judge import BALANCES, EVAL, MODEL_DIR, Judge, load, max_graph

from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.graph import StyleGraph
from onnxstyle.core.images import resize
from onnxstyle.core.schedule import scale_sizes
from onnxstyle.core.steering import SteeringSettings

DEFAULT_PAIRS = [
    "hopper:bricks",
    "hopper:stained-glass",
    "night-street:stars",
    "valley:hatching",
    "still-life:watercolour",
    "still-life:satellite",
]


def run_schedule(content, style, schedule, options, graph, **engine) -> np.ndarray:
    """The engine's coarse-to-fine schedule with `schedule[i]` evaluations at scale i."""
    sizes = scale_sizes(*content.shape[:2], StyleOptions(scales=len(schedule), min_size=16))
    image = None
    for (h, w), steps in zip(sizes, schedule):
        scaled = resize(content, h, w)
        init = "content" if image is None else image
        options_here = StyleOptions(**{**options, "steps": steps, "init": init})
        image = stylize(scaled, [style], options_here, graph=graph, **engine)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", nargs="*", default=["60,60", "100,35", "30,70", "20,20,60"])
    parser.add_argument("--pairs", nargs="*", default=DEFAULT_PAIRS, metavar="CONTENT:STYLE")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--balance", choices=sorted(BALANCES), default="initial")
    parser.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    args = parser.parse_args()
    # one stylize call per scale: the engine's gain corrections would restart at each, so they are
    # off here (the segments still run) and every schedule runs at the starting gain·strength
    engine = dict(steering=SteeringSettings(step=1.0), balance_fn=BALANCES[args.balance])
    judge = Judge(max_graph(args.model_dir))
    graph = StyleGraph.load("avg", "cpu")
    options = dict(scales=1, max_size=None, device="cpu", strength=args.strength)
    print(f"{'schedule':>12s} {'reduction':>9s} {'min':>6s} {'content err':>11s} {'time':>6s}")
    base_time = None
    for text in args.schedules:
        schedule = tuple(int(n) for n in text.split(","))
        reductions, content_errors, seconds = [], [], 0.0
        for pair in args.pairs:
            content_name, style_name = pair.split(":")
            content = load(EVAL / "content" / f"{content_name}.jpg", args.size)
            style = load(EVAL / "styles" / f"{style_name}.jpg")
            started = time.perf_counter()
            result = run_schedule(content, style, schedule, options, graph, **engine)
            seconds += time.perf_counter() - started
            before = judge.style_error(content, style)
            reductions.append(1 - judge.style_error(result, style) / before)
            content_errors.append(judge.content_error(result, content))
        base_time = base_time or seconds
        print(
            f"{text:>12s} {np.mean(reductions):9.1%} {np.min(reductions):6.1%} "
            f"{np.mean(content_errors):11.3f} {seconds / base_time:6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
