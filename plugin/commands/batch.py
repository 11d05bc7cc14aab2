"""`onnxstyle batch INPUT... -s STYLE -o OUT_DIR`: one style recipe on many pictures, on Ray.

Inputs are files, folders (their pictures, sub-folders included) and globs (`'photos/*.jpg'`,
`'**'` reaches into sub-folders); the styles come with `-s/--style` (repeated for a blend), so
the two lists can't be confused. Each result goes to OUT_DIR under the input's name — its path
within a folder or below a glob's fixed part — in the input's format or `--format`'s.

It resumes: a result that exists is skipped. Results are written here, by this process, whole or
not at all (imageio.save_image: a temporary file renamed), as each comes back from a worker, so an
existing file is a finished one. A picture that can't be done is one line in the summary and the
exit status is 2 at the end; the rest finish. Ctrl-C (SIGTERM, SIGHUP) stops every worker at its
next engine step, keeps the finished results, and stops the local Ray (exit 130).
Where it runs, and what travels: plugin/cluster.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from onnxstyle.core import imageio
from onnxstyle.core.engine import (
    StyleOptions,
    check_sizes,
    resize,
    scale_sizes,
    style_side,
)
from onnxstyle.core.errors import ImageError, StyleError
from onnxstyle.core.imageio import LoadedImage, load_image
from onnxstyle.plugin import cluster  # cluster imports Ray only when it connects

from .batch_inputs import Picture, plan
from .batch_report import BatchBar, summary
from .options import add_engine_flags, add_preset_flag, engine_overrides, positive_int
from .snapshots import check_not_an_input
from .stylize import check_blend, check_model_dir, size_checked
from .terminal import PROG, signals_cancel

EXIT_FAILED = 2  # some pictures failed (each has its line): the exit of any user error
FORMAT_CHOICES = ("png", "jpg", "tif", "webp")
NAME = "batch"
HELP = "paint many pictures in one style, on this machine's Ray or a Ray cluster"


def add_parser(subcommands) -> argparse.ArgumentParser:
    """The `batch` command: stylize's engine options, its presets, and the batch's own."""
    p = subcommands.add_parser(
        NAME,
        help=HELP,
        description="Paint every INPUT (files, folders, globs) in the style of STYLE (-s, repeated "
        "for a blend), writing OUT_DIR/<the input's name>. Rerun to make only the missing results. "
        "Runs on a local Ray, or joins the cluster at --ray-address (or RAY_ADDRESS).",
        epilog="Ctrl-C (or SIGTERM, SIGHUP) stops every worker at its next step and keeps the "
        "finished results: exit 130. Exit 2 when a picture failed (each has its line).",
    )
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="picture, folder or glob")
    p.add_argument(
        "-s",
        "--style",
        dest="styles",
        metavar="STYLE",
        action="append",
        required=True,
        help="style image (repeat for several, blended by --style-blend)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="folder of results")
    p.add_argument(
        "--format",
        choices=FORMAT_CHOICES,
        help="format of the results (default: each input's own)",
    )
    add_preset_flag(p)
    engine = p.add_argument_group("engine options (as for stylize)")
    add_engine_flags(engine)
    where = p.add_argument_group("where it runs")
    where.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join the Ray cluster whose head is at ADDR (host:port, from 'ray start --head'); "
        "default: RAY_ADDRESS, else a Ray on this machine",
    )
    where.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="number of workers (default: one per GPU, or one per node using its cores)",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--upscale",
        action="store_true",
        help="resize each result back to its input's size when --max-size shrank it",
    )
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary table")
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    p.set_defaults(run=run)
    return p


# --------------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    """Check everything cheap first (before Ray starts), then run the pictures on Ray."""
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise StyleError(f"-o {out_dir}: not a folder")
    overrides = engine_overrides(args)
    check_blend(overrides.get("style_blend"), len(args.styles))
    address = cluster.ray_address(args.ray_address)
    if address is None:  # on a cluster the folder is the workers' own
        check_model_dir(
            overrides.get("model_dir"), overrides.get("pooling") or StyleOptions.pooling
        )
    init = overrides.get("init")
    init_path = init if init not in (None, "content", "noise") else None
    options = StyleOptions.from_preset(args.preset, **overrides)
    pictures = plan(args.inputs, out_dir, args.format)
    for picture in pictures:
        check_not_an_input(picture.output, [str(picture.source), *args.styles, init_path], None)
    style_sizes = [size_checked(path) for path in args.styles]  # (height, width)
    for picture in pictures:
        _size_picture(picture, style_sizes, options)
    if init_path is not None:
        size_checked(init_path)
        options = dataclasses.replace(options, init=load_image(init_path).rgb)
    todo = [p for p in pictures if p.problem is None and p.state == "to do"]
    started = time.monotonic()
    if todo:
        _check_writable(out_dir)
        code = _run_on_ray(address, args, options, todo)
    else:
        code = 0
    failed = [p for p in pictures if p.state == "failed" or p.problem]
    if not args.quiet:
        summary(pictures, time.monotonic() - started)
    else:
        for picture in failed:
            print(f"{PROG}: {picture.source}: {picture.problem}", file=sys.stderr)
    if code:
        return code
    return EXIT_FAILED if failed else 0


def _check_writable(out_dir: Path) -> None:
    """Before any work: the folder (or the one it will be made in) takes new files."""
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StyleError(f"-o {out_dir}: cannot write to {existing} (permission denied)")


def _size_picture(picture: Picture, style_sizes, options: StyleOptions) -> None:
    """Skip a finished result; read the header for the work size and the style sides it needs; a
    picture that can't be done gets its problem (one line)."""
    if picture.problem:
        picture.state = "failed"
        return
    if picture.output.is_file():
        picture.state = "skipped"
        picture.note = "exists"
        return
    try:
        picture.size = check_sizes(size_checked(str(picture.source)), style_sizes, options)
    except StyleError as exc:
        picture.problem, picture.state = _without_name(str(exc), picture.source), "failed"
        return
    picture.longers = tuple(
        sorted(
            {style_side(h, w, options.style_scale) for h, w in scale_sizes(*picture.size, options)}
        )
    )


def _without_name(message: str, source: Path) -> str:
    prefix = f"{source}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _run_on_ray(address, args, options: StyleOptions, todo: list[Picture]) -> int:
    """Connect, start the workers, share the targets, run; write each result as it comes."""
    styles_longer = max(max(p.longers) for p in todo)
    styles = [load_image(path, styles_longer).rgb for path in args.styles]
    loaded: dict[str, LoadedImage] = {}
    shared = options.preserve_colors is None  # colour preservation changes the style per picture
    with cluster.connect(address) as session, signals_cancel() as signals:
        session.start_workers(options, args.workers)
        styles_ref = session.ray.put(styles)
        if shared:
            session.share_targets(
                styles_ref, options, len(styles), [k for p in todo for k in p.longers]
            )
        jobs = [
            cluster.Job(str(p.source), _loader(p, args.upscale, loaded), p.longers) for p in todo
        ]
        by_name = {str(p.source): p for p in todo}
        with BatchBar(len(todo), args.quiet, len(session.workers)) as bar:
            try:
                submit = session.stylize_call(session.ray.put(options), styles_ref)
                for event in session.run(jobs, submit, signals.cancelled):
                    if isinstance(event, cluster.Status):
                        bar.running(event.running)
                        continue
                    picture = by_name[event.job.name]
                    if isinstance(event, cluster.Done):
                        _write(picture, event, loaded.pop(event.job.name), args.upscale, signals)
                    else:
                        loaded.pop(event.job.name, None)
                        picture.state, picture.problem = "failed", event.message
                    bar.finished(picture)
            except KeyboardInterrupt:  # a second Ctrl-C: stop at once
                pass
        if session.lost:
            print(
                f"{PROG}: {session.lost} picture(s) redone after their worker's node was lost",
                file=sys.stderr,
            )
    if signals.cancelled():
        for picture in todo:
            if picture.state in ("to do",) or picture.problem == "cancelled":
                picture.state, picture.problem = "cancelled", None
        done = sum(p.state == "done" for p in todo)
        print(
            f"{PROG}: cancelled; kept {done} finished result(s), no partial file",
            file=sys.stderr,
        )
        return signals.code()
    return 0


def _loader(picture: Picture, upscale: bool, loaded: dict) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        h, w = picture.size
        content = load_image(picture.source, None if upscale else max(h, w))
        loaded[str(picture.source)] = content
        return resize(content.rgb, h, w)

    return load


def _write(picture: Picture, event, content: LoadedImage, upscale: bool, signals) -> None:
    """The result, written whole (a temporary file renamed) by this process, once."""
    result = event.result
    if upscale and result.shape[:2] != content.rgb.shape[:2]:
        result = resize(result, *content.rgb.shape[:2])
    picture.output.parent.mkdir(parents=True, exist_ok=True)
    signals.at_once = True  # a signal during the write stops at once: the temporary file goes
    try:
        imageio.save_image(picture.output, result, like=content)
    except ImageError as exc:
        picture.state, picture.problem = "failed", _without_name(str(exc), picture.output)
        return
    finally:
        signals.at_once = False
    picture.state, picture.seconds, picture.node = "done", event.seconds, event.node
    if event.job.redone:
        picture.note = "redone (node lost)"
