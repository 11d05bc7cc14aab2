"""Moving pictures (core/frames.py): flicker and style error with the temporal term against frames
styled one by one, per clip, and the cost of a frame against one `stylize` of a frame.

Per clip and style picture, for each temporal weight (0: independent frames, each a whole stylize):
- flicker = mean over frame pairs of mean |x_t − ω(x_{t−1})| on the pixels the flow's mask keeps,
  over the same for the content frames (core/flow.py `flicker`); the issue's targets: ≤ 1.5 at the
  default weight and ≤ 1/3 of the independent frames';
- style error = the judge's (benchmarks/judge.py: max-pooling VGG19, ‖Ĝ − Ĝ(style)‖/‖Ĝ(style)‖),
  the mean over frames, and the worst frame's ratio to the independent frame's (target ≤ 1.10);
- s/frame, and that over one whole `stylize` of the first frame (the same options).
Seams (with --chunk): the clip styled as the Ray chunks do it (plugin/cluster.py) but in this
process, one chunk after another; the flicker of the pairs across a seam against the others.

The clips are our own (they ship): "shapes", examples/make_clip.py's moving textured shapes, and
"pan", a camera panning and zooming over benchmarks/eval/content/valley.jpg.

    python benchmarks/bench_frames.py                                   # 2 clips x 3 styles, 96 px, 8 frames
    python benchmarks/bench_frames.py --clips shapes --styles swirls --frames 6 --size 48 --steps 10
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from judge import MODEL_DIR, Judge, max_graph
from PIL import Image

from onnxstyle.core.engine import PRESETS, StyleOptions, stylize
from onnxstyle.core.flow import flicker
from onnxstyle.core.frames import DEFAULT_TEMPORAL_WEIGHT, FrameSequence
from onnxstyle.core.graph import StyleGraph
from onnxstyle.core.images import fit_size, resize
from onnxstyle.plugin.cluster_frames import Seams, plan_chunks

print = functools.partial(print, flush=True)  # rows as they come, also into a file

ROOT = Path(__file__).resolve().parent.parent
STYLES = {
    "swirls": ROOT / "examples" / "swirls.jpg",
    **{p.stem: p for p in sorted((ROOT / "benchmarks" / "eval" / "styles").glob("*.jpg"))},
}


def _load(path: Path, longer: int) -> np.ndarray:
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), np.float32) / 255
    return resize(rgb, *fit_size(*rgb.shape[:2], longer))


def shapes_clip(width: int, height: int, frames: int) -> list[np.ndarray]:
    spec = importlib.util.spec_from_file_location("make_clip", ROOT / "examples" / "make_clip.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.make_clip(width, height, frames))


def pan_clip(width: int, height: int, frames: int) -> list[np.ndarray]:
    """A window moving right and closing in over the valley photo, resampled to width × height."""
    photo = _load(ROOT / "benchmarks" / "eval" / "content" / "valley.jpg", 4 * max(width, height))
    ph, pw = photo.shape[:2]
    out = []
    for t in range(frames):
        zoom = 1 - 0.15 * t / max(frames - 1, 1)
        h = min(ph, round(ph * 0.7 * zoom))
        w = min(pw, round(h * width / height))
        x = round((pw - w) * (0.2 + 0.5 * t / max(frames - 1, 1)))
        y = (ph - h) // 2
        out.append(resize(photo[y : y + h, x : x + w], height, width))
    return out


CLIPS = {"shapes": shapes_clip, "pan": pan_clip}


def chunked(contents, style, options, weight, graph, chunk: int, overlap: int) -> list[np.ndarray]:
    """The Ray chunks' result, in this process, one chunk after another: plugin/cluster_frames.py's
    own chunks and seam blend (chunk k restyles the `overlap` frames before it from scratch)."""
    chunks = plan_chunks(0, len(contents), chunk, overlap)
    seams, results = Seams(chunks, overlap), []
    for c in chunks:
        seq = FrameSequence([style], options, weight, graph=graph)
        mine = [seq.next(f) for f in contents[c.first : c.end]]
        results += [result for _, result in seams.add(c.index, mine)]
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    p.add_argument("--styles", nargs="+", default=["swirls", "stained-glass", "hatching"])
    p.add_argument("--size", type=int, default=96, help="the frames' width (height: 2/3 of it)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, DEFAULT_TEMPORAL_WEIGHT])
    p.add_argument("--preset", default="draft", choices=list(PRESETS))
    p.add_argument("--steps", type=int, help="evaluations a scale (default: the preset's)")
    p.add_argument("--chunk", type=int, help="also style the clip in chunks of this many frames")
    p.add_argument("--overlap", type=int, default=2)
    p.add_argument("--model-dir", type=Path, default=MODEL_DIR, help="the judge's models")
    p.add_argument("--out", type=Path, help="write each run's frames as a strip PNG here")
    args = p.parse_args()

    width, height = args.size, max(16, args.size * 2 // 3)
    options = StyleOptions.from_preset(args.preset, max_size=width)
    if args.steps:
        options = replace(options, steps=args.steps)
    graph, judge = StyleGraph.load(), Judge(max_graph(args.model_dir))
    print(
        f"{args.frames} frames of {width}x{height}, --preset {args.preset}, steps {options.steps}"
    )
    print(
        f"{'clip':8} {'style':14} {'weight':>7} {'flicker':>8} {'x indep':>8} {'style err':>9} "
        f"{'worst x':>8} {'content':>8} {'s/frame':>8} {'x stylize':>9}"
    )
    for clip in args.clips:
        contents = CLIPS[clip](width, height, args.frames)
        for name in args.styles:
            style = _load(STYLES[name], 2 * width)
            started = time.perf_counter()
            stylize(contents[0], [style], options, graph=graph)
            one = time.perf_counter() - started
            baseline = None
            for weight in args.weights:
                seq = FrameSequence([style], options, weight, graph=graph)
                started = time.perf_counter()
                results = [seq.next(f) for f in contents]
                per_frame = (time.perf_counter() - started) / len(contents)
                row = _measure(judge, results, contents, style)
                baseline = baseline or row
                print(
                    f"{clip:8} {name:14} {weight:7g} {row['flicker']:8.3f} "
                    f"{row['flicker'] / baseline['flicker']:8.3f} {np.mean(row['style']):9.4f} "
                    f"{np.max(np.divide(row['style'], baseline['style'])):8.3f} "
                    f"{np.mean(row['content']):8.3f} {per_frame:8.2f} {per_frame / one:9.2f}"
                    + (f"  notes: {seq.notes}" if seq.notes else "")
                )
                _strip(args.out, f"{clip}-{name}-w{weight:g}", results)
            if args.chunk:
                _seams(args, contents, style, options, graph, clip, name)


def _measure(judge: Judge, results, contents, style) -> dict:
    return {
        "flicker": flicker(results, contents),
        "style": [judge.style_error(r, style) for r in results],
        "content": [judge.content_error(r, c) for r, c in zip(results, contents)],
    }


def _seams(args, contents, style, options, graph, clip: str, name: str) -> None:
    weight = args.weights[-1]
    results = chunked(contents, style, options, weight, graph, args.chunk, args.overlap)
    pairs = [
        flicker(results[t - 1 : t + 1], contents[t - 1 : t + 1]) for t in range(1, len(results))
    ]
    # pair i is (i, i+1); a seam's pairs touch its blended frames [s − overlap, s)
    seams = {
        i
        for s in range(args.chunk, len(results), args.chunk)
        for i in range(max(0, s - args.overlap - 1), s)
    }
    others = [f for i, f in enumerate(pairs) if i not in seams]
    seam_values = [pairs[i] for i in seams]
    print(
        f"{clip:8} {name:14} chunks of {args.chunk}, overlap {args.overlap}: seam pairs' flicker "
        f"{np.mean(seam_values):.3f} (max {np.max(seam_values):.3f}), other pairs {np.mean(others):.3f}, "
        f"whole clip {flicker(results, contents):.3f}"
    )
    _strip(args.out, f"{clip}-{name}-chunks{args.chunk}", results)


def _strip(out: Path | None, name: str, frames: list[np.ndarray]) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    strip = np.concatenate([np.clip(f, 0, 1) for f in frames], axis=1)
    Image.fromarray((strip * 255 + 0.5).astype(np.uint8)).save(out / f"{name}.png")


if __name__ == "__main__":
    main()
