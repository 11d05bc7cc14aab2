"""The judge: stylise every (content, style) pair of the evaluation set and measure how far the result
moved towards the style and away from the content, on VGG19 with MAX pooling (the engine optimises the
avg-pooling network, so the judge is not the objective itself).

Per pair:
- style error = mean over relu1_1…relu5_1 of ‖Ĝ(result) − Ĝ(style)‖_F / ‖Ĝ(style)‖_F (Grams normalised
  by h·w; the style image resized to the result's pixel area); "reduction" = 1 − that error / the
  content image's own style error: the number to read;
- content error = ‖relu4_2(result) − relu4_2(content)‖ / ‖relu4_2(content)‖.
Targets (issue 8; default strength, --preset draft, 256 px): every reduction ≥ 60%, every content
error ≤ 0.8, reductions spread (max − min) ≤ 20 points. It also writes contact sheets (content | style
| result per row, one PNG per content image) and results.json into --out.

    python benchmarks/judge.py                                   # all pairs, draft, 256 px
    python benchmarks/judge.py --styles bricks stars --contents hopper --strength 2
    python benchmarks/judge.py --set steps=30 --set min_size=32 --out /tmp/judge-30
    python benchmarks/judge.py --fixed-gain --gain 3 --out /tmp/judge-k3   # the first pass's loss

The max-pooling model is exported on first use (needs torch) into --model-dir, by default a folder in
the system's temporary directory (not the user model dir: the engine would pick it up there). Timings in the
table are wall seconds on whatever the machine is doing: compare them only within one run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.errors import ModelError
from onnxstyle.core.graph import LossWeights, StyleGraph, Targets
from onnxstyle.core.images import resize
from onnxstyle.core.layers import CONTENT_LAYER, STYLE_LAYERS
from onnxstyle.core.loss import layer_grams, style_distance, style_layer_cost
from onnxstyle.core.scale import Balance, WholeFeatures, balance
from onnxstyle.core.steering import SteeringSettings

EVAL = Path(__file__).resolve().parent / "eval"
TARGET_REDUCTION, TARGET_CONTENT, TARGET_SPREAD = 0.60, 0.80, 0.20
MODEL_DIR = Path(tempfile.gettempdir()) / "onnxstyle-judge-models"  # not the user model dir


def load(path: Path, longer: int | None = None) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    if longer:
        im.thumbnail((longer, longer), Image.Resampling.LANCZOS)
    return np.asarray(im, np.float32) / 255


def names(folder: str) -> list[str]:
    return sorted(p.stem for p in (EVAL / folder).glob("*.jpg"))


def max_graph(model_dir: Path) -> StyleGraph:
    """The judge's network: VGG19 with max pooling (exported once if missing, and again if an
    older onnxstyle exported it: another manifest format)."""
    if (model_dir / "vgg19-max.json").is_file():
        try:
            return StyleGraph.load("max", "cpu", model_dir)
        except ModelError:
            pass
    from onnxstyle.exporter.export import write_models

    print(f"exporting the max-pooling VGG19 to {model_dir} (once)")
    write_models(model_dir, "max")
    return StyleGraph.load("max", "cpu", model_dir)


class Judge:
    """Style and content errors of a result, measured on the max-pooling network."""

    def __init__(self, graph: StyleGraph) -> None:
        self.graph = graph

    def style_error(self, image: np.ndarray, style: np.ndarray) -> float:
        h, w = image.shape[:2]
        k = np.sqrt(h * w / (style.shape[0] * style.shape[1]))  # same pixel area as the image
        target = resize(
            style, max(16, round(style.shape[0] * k)), max(16, round(style.shape[1] * k))
        )
        return style_distance(
            layer_grams(self.graph.features(target)), layer_grams(self.graph.features(image))
        )

    def content_error(self, image: np.ndarray, content: np.ndarray) -> float:
        key = f"content_{CONTENT_LAYER}"
        a = self.graph.features(image)[key].astype(np.float64)
        c = self.graph.features(content)[key].astype(np.float64)
        return float(np.linalg.norm(a - c) / np.linalg.norm(c))


# The engine's balance and its variants, given to stylize(..., balance_fn=...): the signature of
# core/scale.py's balance (features: the content's, measured once by the engine)


def _target_balance(
    graph, content, grams, budget_px, features: WholeFeatures | None = None
) -> Balance:
    """Variant: each layer divided by its target's energy ‖Ĝ(S)‖² (its style cost against 0): the
    relative squared Gram error, the judge's own measure."""
    base = balance(graph, content, grams, budget_px, features)
    style = [style_layer_cost(grams[layer], np.zeros_like(grams[layer])) for layer in STYLE_LAYERS]
    return replace(base, style=tuple(style))  # content and distance as the engine's


def _gradient_balance(
    graph, content, grams, budget_px, features: WholeFeatures | None = None
) -> Balance:
    """Variant: the seed's layer mix (λ on raw J_style), the whole style term scaled so that its
    gradient at the first step (the content image) has unit RMS per pixel."""
    base = balance(graph, content, grams, budget_px, features)
    targets = Targets(grams=grams, content=graph.features(content)[f"content_{CONTENT_LAYER}"])
    ones = (1.0,) * len(STYLE_LAYERS)
    _, grad = graph.loss_and_grad(content, targets, LossWeights(0.0, 1.0, ones, 0.0))
    rms = float(np.sqrt(np.mean(grad.astype(np.float64) ** 2)))
    # λ_l = 1/(n·norm_l): a common norm = rms/n makes Σ λ J_style = Σ J_style / rms
    return replace(base, style=(rms / len(STYLE_LAYERS),) * len(STYLE_LAYERS))


BALANCES = {
    "initial": balance,  # the engine's: each layer's term starts at 1
    "target": _target_balance,
    "gradient": _gradient_balance,
}


def parse_overrides(items: list[str]) -> dict:
    """--set name=value → StyleOptions overrides (numbers, tuples "1,2", none)."""
    out = {}
    for item in items:
        name, _, text = item.partition("=")
        if text.lower() == "none":
            value = None
        elif "," in text:
            value = tuple(float(v) for v in text.split(","))
        else:
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text
        out[name] = value
    return out


def contact_sheets(rows: list[dict], out: Path, cell: int = 160) -> list[Path]:
    """One PNG per content image: content | style | result per row, with the pair's numbers."""
    written = []
    for content in sorted({r["content"] for r in rows}):
        mine = [r for r in rows if r["content"] == content]
        sheet = Image.new("RGB", (3 * cell, len(mine) * (cell + 14)), "white")
        draw = ImageDraw.Draw(sheet)
        for i, r in enumerate(mine):
            y = i * (cell + 14)
            for j, key in enumerate(("content_path", "style_path", "result_path")):
                im = Image.open(r[key]).convert("RGB")
                im.thumbnail((cell - 4, cell - 4), Image.Resampling.LANCZOS)
                sheet.paste(im, (j * cell + 2, y + 14))
            draw.text(
                (2, y + 1),
                f"{content} / {r['style']}: reduction {r['reduction']:.0%}, content error "
                f"{r['content_error']:.2f}",
                fill="black",
            )
        path = out / f"sheet-{content}.png"
        sheet.save(path)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="*", default=None, help="style names (default: all)")
    parser.add_argument("--contents", nargs="*", default=None, help="content names (default: all)")
    parser.add_argument(
        "--pairs", nargs="*", default=None, metavar="CONTENT:STYLE", help="only these pairs"
    )
    parser.add_argument("--size", type=int, default=256, help="longer side of the result, px")
    parser.add_argument("--preset", default="draft")
    parser.add_argument("--strength", type=float, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=MODEL_DIR,
        help="folder with (or for) the max-pooling model",
    )
    parser.add_argument("--out", type=Path, default=Path("judge-out"))
    parser.add_argument(
        "--balance",
        choices=sorted(BALANCES),
        default="initial",
        help="how the engine normalises the style layers (the comparison in docs/decisions/balance.md)",
    )
    parser.add_argument(
        "--gain", type=float, default=None, help="the starting gain (SteeringSettings.start_gain)"
    )
    parser.add_argument(
        "--fixed-gain",
        action="store_true",
        help="keep the gain at its start·strength (no corrections towards strength's target)",
    )
    args = parser.parse_args()
    steering = SteeringSettings()
    if args.gain is not None:
        steering = replace(steering, start_gain=args.gain)
    if args.fixed_gain:  # the segments still run (each restarts L-BFGS), the gain stays
        steering = replace(steering, step=1.0)
    engine = dict(steering=steering, balance_fn=BALANCES[args.balance])

    overrides = {"max_size": args.size, "device": "cpu", **parse_overrides(args.set)}
    if args.strength is not None:
        overrides["strength"] = args.strength
    options = StyleOptions.from_preset(args.preset, **overrides)
    judge = Judge(max_graph(args.model_dir))
    graph = StyleGraph.load(options.pooling, "cpu", options.model_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"options: preset {args.preset}, {overrides}")
    print(
        f"{'content':13s} {'style':14s} {'style err':>16s} {'reduction':>9s} {'content err':>11s} {'s':>6s}"
    )
    pairs = [tuple(p.split(":")) for p in args.pairs] if args.pairs else None
    for content_name in args.contents or names("content"):
        content_path = EVAL / "content" / f"{content_name}.jpg"
        content = load(content_path, args.size)
        for style_name in args.styles or names("styles"):
            if pairs is not None and (content_name, style_name) not in pairs:
                continue
            style_path = EVAL / "styles" / f"{style_name}.jpg"
            style = load(style_path)
            started = time.perf_counter()
            result = stylize(content, [style], options, graph=graph, **engine)
            seconds = time.perf_counter() - started
            before = judge.style_error(content, style)
            after = judge.style_error(result, style)
            row = {
                "content": content_name,
                "style": style_name,
                "style_error_content": before,
                "style_error_result": after,
                "reduction": 1 - after / before,
                "content_error": judge.content_error(result, content),
                "seconds": seconds,
                "content_path": str(content_path),
                "style_path": str(style_path),
                "result_path": str(args.out / f"{content_name}--{style_name}.png"),
            }
            Image.fromarray((result * 255 + 0.5).astype(np.uint8)).save(row["result_path"])
            rows.append(row)
            print(
                f"{content_name:13s} {style_name:14s} {before:7.3f} → {after:6.3f} "
                f"{row['reduction']:9.1%} {row['content_error']:11.3f} {seconds:6.1f}",
                flush=True,
            )
    summarise(rows, options)
    (args.out / "results.json").write_text(
        json.dumps({"options": repr(options), "rows": rows}, indent=1)
    )
    for path in contact_sheets(rows, args.out):
        print("contact sheet:", path)


def summarise(rows: list[dict], options: StyleOptions) -> None:
    red = np.array([r["reduction"] for r in rows])
    cerr = np.array([r["content_error"] for r in rows])
    spread = red.max() - red.min()
    print(
        f"reduction min {red.min():.1%} median {np.median(red):.1%} max {red.max():.1%}, spread "
        f"{spread * 100:.1f} points; content error median {np.median(cerr):.3f} max {cerr.max():.3f}; "
        f"{sum(r['seconds'] for r in rows) / len(rows):.1f} s per pair"
    )
    checks = [
        (f"every reduction ≥ {TARGET_REDUCTION:.0%}", red.min() >= TARGET_REDUCTION),
        (f"every content error ≤ {TARGET_CONTENT}", cerr.max() <= TARGET_CONTENT),
        (f"spread ≤ {TARGET_SPREAD * 100:.0f} points", spread <= TARGET_SPREAD),
    ]
    print("targets: " + "; ".join(f"{text}: {'met' if ok else 'NOT met'}" for text, ok in checks))


if __name__ == "__main__":
    main()
