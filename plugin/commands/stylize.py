"""`onnxstyle stylize CONTENT STYLE... -o OUT`: paint CONTENT in the style of the STYLE images.

Every value is checked before an image is decoded or a model loaded. The run happens here (the
engine) or in a worker (--worker, commands/remote.py); either way it shows the same progress bar,
Ctrl-C, SIGTERM and SIGHUP cancel it at the next engine step (during the final save: at once) and
exit 128 + the signal, and the result is written only when the run finishes, to a temporary file
that is renamed; --save-every snapshots already written are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from onnxstyle.core import imageio
from onnxstyle.core.engine import (
    PRESETS,
    Progress,
    StyleOptions,
    check_sizes,
    resize,
    style_side,
    stylize,
    work_size,
)
from onnxstyle.core.errors import Cancelled, ImageError, StyleError
from onnxstyle.core.imageio import LoadedImage, load_image
from onnxstyle.core.layers import MIN_SIDE
from onnxstyle.plugin.client import worker_command

from . import remote
from .options import add_engine_flags, add_preset_flag, engine_overrides, positive_int
from .snapshots import RecordingGraph, check_not_an_input, saving_snapshots
from .terminal import PROG, cancelled, duration, progress_bar, say, signals_cancel

NAME = "stylize"
HELP = "paint CONTENT in the style of STYLE(s)"


def add_parser(commands) -> None:
    p = commands.add_parser(
        NAME,
        help=HELP,
        description="Paint CONTENT in the style of one or more STYLE images (Gatys et al. 2015). "
        "Options not given come from the preset.",
        epilog="presets: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
            for name, values in PRESETS.items()
        )
        + ". Ctrl-C (or SIGTERM, SIGHUP) cancels: exit 130 (128 + the signal), the result is not "
        "written, --save-every snapshots already written are kept.",
    )
    p.add_argument("content", metavar="CONTENT", help="content image")
    p.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s)")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="result file: .png, .jpg/.jpeg, .tif/.tiff or .webp",
    )
    add_preset_flag(p)
    add_engine_flags(p.add_argument_group("engine options"))
    out = p.add_argument_group("output")
    out.add_argument(
        "--upscale",
        action="store_true",
        help="resize the result back to the content's size when --max-size shrank it",
    )
    out.add_argument(
        "--save-every",
        type=positive_int,
        metavar="N",
        help="also write the image every N steps of each scale, beside OUT: "
        "e.g. result-scale2-step0050.png",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument_group("remote").add_argument(
        "--worker",
        metavar="CMD",
        help="run the style transfer in a worker started by CMD, e.g. 'ssh gpu-box "
        "/venv/bin/python -m onnxstyle.plugin.worker' (its machine's device computes; pixels "
        "and style files travel over the command's stdin and stdout; not with --save-every, "
        "--model-dir or --init PATH)",
    )
    ray = p.add_argument_group("tiles on Ray (the [cluster] extra)")
    ray.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="spread the tiles of each tiled scale over the workers of the Ray cluster at ADDR "
        "(host:port); smaller scales run here",
    )
    ray.add_argument(
        "--distribute",
        action="store_true",
        help="the same on a Ray on this machine (or RAY_ADDRESS)",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of unexpected errors",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Validate everything cheap first, then load, run with a progress bar, and write atomically."""
    output = Path(args.output)
    imageio.check_output_path(output)
    overrides = engine_overrides(args)
    check_blend(overrides.get("style_blend"), len(args.styles))
    init = overrides.get("init")
    init_path = init if init not in (None, "content", "noise") else None
    if args.worker is not None:
        remote.check(args, overrides, init_path)
        if args.ray_address or args.distribute:
            raise StyleError("--ray-address and --distribute can't be used with --worker")
    check_model_dir(overrides.get("model_dir"), overrides.get("pooling") or StyleOptions.pooling)
    check_not_an_input(output, [args.content, *args.styles, init_path], args.save_every)
    options = StyleOptions.from_preset(args.preset, **overrides)
    content_hw = size_checked(args.content)
    style_hws = [size_checked(path) for path in args.styles]
    if args.worker is not None:  # the worker checks the sizes against its own memory and device
        return _run_in_worker(args, output, overrides, work_size(*content_hw, options))
    # before any decode: a size no option may reach is refused now
    height, width = check_sizes(content_hw, style_hws, options)
    # decoded no larger than needed: the work size, the styles' at the last scale (--upscale needs
    # the whole content back)
    content = load_image(args.content, None if args.upscale else max(height, width))
    style_longer = style_side(height, width, options.style_scale)
    styles = [load_image(path, style_longer).rgb for path in args.styles]
    if init_path is not None:
        size_checked(init_path)
        options = dataclasses.replace(options, init=load_image(init_path).rgb)
    snapshots: list[Path] = []

    def compute(show: Callable[[Progress], None], cancel: Callable[[], bool]) -> np.ndarray:
        on_progress, graph = show, None
        if args.save_every:
            graph = RecordingGraph.load(options)
            on_progress = saving_snapshots(show, graph, output, content, args.save_every, snapshots)
        with _tile_map(args, options, cancel) as tile_map:
            return stylize(
                content.rgb,
                styles,
                options,
                progress=on_progress,
                cancel=cancel,
                graph=graph,
                tile_map=tile_map,
            )

    return _run(args, output, content, compute, snapshots)


def _run_in_worker(
    args: argparse.Namespace, output: Path, overrides: dict[str, Any], size: tuple[int, int]
) -> int:
    """The run in the worker --worker starts, at the work size `size` (height, width)."""
    content, compute = remote.prepare(args, overrides, size)
    where = f" on {shlex.join(worker_command(args.worker))}"
    return _run(args, output, content, compute, [], where)


def _run(
    args: argparse.Namespace,
    output: Path,
    content: LoadedImage,
    compute: remote.Compute,
    snapshots: list[Path],
    where: str = "",
) -> int:
    """One run, here or in a worker: the bar, signals as a cancel, the result saved whole."""
    started = time.monotonic()
    with progress_bar(args.quiet) as show, signals_cancel() as signals:
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # the engine reports inf/NaN itself
                result = compute(show, signals.cancelled)
        except (Cancelled, KeyboardInterrupt):
            return cancelled(signals.code(), snapshots)
        signals.at_once = True  # from here a signal stops at once; the save removes its temp file
        if args.upscale and result.shape[:2] != content.rgb.shape[:2]:
            result = resize(result, *content.rgb.shape[:2])
        try:
            imageio.save_image(output, result, like=content)
        except KeyboardInterrupt:
            return cancelled(signals.code(), snapshots)
    if not args.quiet:
        height, width = result.shape[:2]
        took = duration(time.monotonic() - started)
        say(f"wrote {output} ({width}×{height}) in {took}{where}")
    return 0


def _tile_map(args: argparse.Namespace, options: StyleOptions, cancelled: Callable[[], bool]):
    """With --ray-address or --distribute, the tiles on Ray (plugin/cluster.py); else none."""
    if not (args.ray_address or args.distribute):
        return nullcontext(None)
    from onnxstyle.plugin import cluster  # noqa: PLC0415 (Ray only when asked for)

    return cluster.distributed_tiles(cluster.ray_address(args.ray_address), options, cancelled)


def check_model_dir(model_dir: str | None, pooling: str) -> None:
    """--model-dir names the folder the user wants: no fallback to other models when it has none."""
    if model_dir is None:
        return
    folder = Path(model_dir)
    if not folder.is_dir():
        raise StyleError(f"--model-dir {model_dir}: no such folder")
    if not (folder / f"vgg19-{pooling}.json").is_file():
        raise StyleError(
            f"--model-dir {model_dir} holds no {pooling}-pooling model (no vgg19-{pooling}.json); "
            f"make one with: {PROG} export --pooling {pooling} --out {model_dir}, or leave --model-dir out"
        )


def size_checked(path: str) -> tuple[int, int]:
    """(height, width), the engine's order, from the header, checked against the engine's smallest
    side so the error names the file."""
    width, height = imageio.image_size(path)
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"{path}: image too small ({width}×{height}); at least {MIN_SIDE} px a side"
        )
    return height, width


def check_blend(blend: tuple[float, ...] | None, n_styles: int) -> None:
    if blend is not None and len(blend) != n_styles:
        raise StyleError(
            f"--style-blend has {len(blend)} weight(s) for {n_styles} style image(s); give one per style"
        )
