"""`onnxstyle frames IN STYLE... -o OUT`: a video, an animated GIF/WebP or a folder of numbered
images styled frame by frame without flicker (core/frames.py: Ruder et al. 2016).

The styled frames go to a work folder of numbered PNGs (OUT itself when OUT is a folder, else
OUT.frames beside it) as each is finished; a video or animation is encoded from it at the end (one
frame at a time, to a temporary name renamed when whole) and the work folder removed. A cancel
(Ctrl-C, SIGTERM, SIGHUP) keeps the finished frames; the same command run again goes on after them.
The work folder records the run it belongs to (RUN_RECORD): frames of another run are not mixed in.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from onnxstyle.core.clips import (
    ClipInfo,
    FrameFolder,
    output_kind,
    probe_clip,
    read_frames,
    work_folder,
    write_clip,
)
from onnxstyle.core.engine import Progress, StyleOptions, check_sizes, style_side
from onnxstyle.core.errors import Cancelled, StyleError
from onnxstyle.core.frames import DEFAULT_TEMPORAL_WEIGHT, FrameSequence, check_temporal_weight
from onnxstyle.core.imageio import load_image

from .options import add_engine_flags, add_preset_flag, engine_overrides, positive_int
from .stylize import check_blend, check_model_dir, size_checked
from .terminal import duration, say, signals_cancel

NAME = "frames"
HELP = "style a video, an animated GIF/WebP or a folder of frames without flicker"
RUN_RECORD = ".onnxstyle-run.json"  # in the work folder: which run its frames belong to


def add_parser(commands) -> None:
    p = commands.add_parser(
        NAME,
        help=HELP,
        description="Style every frame of IN in the style of the STYLE image(s), each frame "
        "starting from the previous result warped by the optical flow, with a temporal term "
        "against flicker (Ruder et al. 2016). IN and OUT: a video (.mp4 .mov .mkv .webm: the "
        "frame rate kept, the audio copied), an animated .gif/.webp, or a folder of numbered "
        "images. Frames are styled at the work size (--max-size).",
        epilog="Ctrl-C (or SIGTERM, SIGHUP) cancels: the finished frames are kept in the work "
        "folder (OUT.frames, or OUT when it is a folder) and the same command goes on after them.",
    )
    p.add_argument("input", metavar="IN", help="video, animated GIF/WebP, or folder of frames")
    p.add_argument("styles", metavar="STYLE", nargs="+", help="style image(s)")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="video, .gif/.webp or folder"
    )
    p.add_argument(
        "--temporal-weight",
        type=_weight,
        default=DEFAULT_TEMPORAL_WEIGHT,
        metavar="W",
        help="how strongly each frame keeps the previous one's texture where the motion is "
        f"known; 0 styles every frame on its own (default: {DEFAULT_TEMPORAL_WEIGHT:g})",
    )
    add_preset_flag(p)
    add_engine_flags(p.add_argument_group("engine options"))
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    ray = p.add_argument_group("chunks on Ray (the [cluster] extra)")
    ray.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="cut the clip into chunks and style them on the workers of the Ray cluster at ADDR",
    )
    ray.add_argument("--distribute", action="store_true", help="the same on a Ray on this machine")
    # long chunks, wide overlaps: two chunks land on different textures, and the overlap fades
    # one into the other (docs/decisions/frames-on-ray.md)
    ray.add_argument("--chunk", type=positive_int, default=24, metavar="N", help="frames a chunk")
    ray.add_argument(
        "--overlap",
        type=positive_int,
        default=4,
        metavar="K",
        help="frames each chunk also styles before its own, blended into the previous chunk's",
    )
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    p.set_defaults(run=run)


def _weight(text: str) -> float:
    try:
        return check_temporal_weight(float(text))
    except (ValueError, StyleError) as e:
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0, not {text}") from e


_weight.__name__ = "number"


def run(args: argparse.Namespace) -> int:
    """Check everything cheap first; then style the frames not yet done; then encode."""
    source, output = Path(args.input), Path(args.output)
    kind = output_kind(output)
    folder_path = work_folder(output)
    _check_not_the_input(source, output, folder_path)
    overrides = engine_overrides(args)
    check_blend(overrides.get("style_blend"), len(args.styles))
    if overrides.get("init") not in (None, "content", "noise"):
        raise StyleError("--init takes 'content' or 'noise' for frames (each frame starts itself)")
    check_model_dir(overrides.get("model_dir"), overrides.get("pooling") or StyleOptions.pooling)
    options = StyleOptions.from_preset(args.preset, **overrides)
    info = probe_clip(source)
    height, width = check_sizes(
        (info.height, info.width), [size_checked(s) for s in args.styles], options
    )
    record = _record(source, args, options, info)
    folder = _work_folder(folder_path, record)
    count = info.count or 0
    done = min(folder.done(), count)
    styles = [
        load_image(s, style_side(height, width, options.style_scale)).rgb for s in args.styles
    ]
    started = time.monotonic()
    with signals_cancel() as signals:
        try:
            if done < count:
                _style(args, source, folder, done, count, styles, options, signals.cancelled)
            signals.at_once = True  # the encode: a signal stops it at once, its temp file removed
            notes = [] if kind == "folder" else write_clip(folder, count, output, info)
        except (Cancelled, KeyboardInterrupt):
            kept = folder.done()
            say(
                f"cancelled; kept {kept} of {count} finished frames in {folder.path}: the same "
                f"command goes on after them"
                if kept
                else "cancelled; nothing written"
            )
            return signals.code()
    for note in notes:
        say(note)
    if kind != "folder":
        shutil.rmtree(folder.path, ignore_errors=True)
    if not args.quiet:
        took = duration(time.monotonic() - started)
        say(f"wrote {output} ({count} frames, {width}×{height}) in {took}")
    return 0


def _check_not_the_input(source: Path, output: Path, folder: Path) -> None:
    """Neither OUT nor its work folder may be IN: the frames being read would be overwritten."""
    given = source.resolve()
    for path in {output, folder}:
        if path.resolve() == given:
            raise StyleError(f"the output {output} is the input: choose another OUT")


def _record(source: Path, args: argparse.Namespace, options: StyleOptions, info: ClipInfo) -> dict:
    """What the work folder's frames are made from: a resumed run must match it."""
    return {
        "input": str(source.resolve()),
        "frames": info.count,
        "size": [info.width, info.height],
        "styles": [str(Path(s).resolve()) for s in args.styles],
        "options": {k: repr(v) for k, v in asdict(options).items()},
        "temporal_weight": args.temporal_weight,
    }


def _work_folder(path: Path, record: dict) -> FrameFolder:
    """The work folder, with its record; one holding another run's frames is refused."""
    existing = path / RUN_RECORD
    if path.is_dir() and any(path.glob("[0-9]*.png")):
        try:
            same = json.loads(existing.read_text()) == record
        except (OSError, ValueError):
            same = False
        if not same:
            raise StyleError(
                f"{path} holds frames of another run (another input, style or option): "
                f"remove it, or choose another OUT"
            )
    folder = FrameFolder(path)
    existing.write_text(json.dumps(record, indent=1))
    return folder


def _style(args, source: Path, folder: FrameFolder, done: int, count: int, styles, options, cancel):
    """The frames done..count-1 styled and written to the folder, here or on Ray."""
    frames = read_frames(source, start=max(done - 1, 0))
    resume = (next(frames), folder.read(done - 1)) if done else None
    with frames_bar(args.quiet, count, done) as bar:
        if args.ray_address or args.distribute:
            results = _on_ray(args, frames, done, count, styles, options, resume, cancel, bar)
        else:
            results = _here(
                frames, done, styles, options, args.temporal_weight, resume, cancel, bar
            )
        for index, result in results:
            folder.write(index, result)
            bar.finished(index)


def _here(frames, done, styles, options, weight, resume, cancel, bar) -> Iterator[tuple[int, Any]]:
    sequence = FrameSequence(styles, options, weight)
    if resume is not None:
        sequence.resume(resume[0], resume[1], done)
    said = 0
    for index, content in enumerate(frames, start=done):
        with np.errstate(over="ignore", invalid="ignore"):  # the engine reports inf/NaN itself
            result = sequence.next(content, bar.progress, cancel)
        for note in sequence.notes[said:]:
            bar.write(note)
        said = len(sequence.notes)
        yield index, result


def _on_ray(args, frames, done, count, styles, options, resume, cancel, bar):
    from onnxstyle.plugin import cluster, cluster_frames  # noqa: PLC0415 (Ray only when asked)

    return cluster_frames.distributed_frames(
        cluster.ray_address(args.ray_address),
        frames,
        done,
        count,
        styles,
        options,
        args.temporal_weight,
        resume,
        args.chunk,
        args.overlap,
        cancel,
        None,  # the frames bar moves as _style writes each frame
    )


class FramesBar:
    """One bar over the frames; its text the current frame's scale, step and the ETA of the
    whole clip (the engine's for this frame plus the mean finished frame's for the rest)."""

    def __init__(self, tqdm_bar, count: int, done: int) -> None:
        self.bar, self.count, self.first = tqdm_bar, count, done
        self.started = time.monotonic()
        self.frames_done = done

    def progress(self, p: Progress) -> None:
        if self.bar is None:
            return
        eta = ""
        if p.eta_s is not None:
            eta = f", ETA frame {duration(p.eta_s)}"
            made = self.frames_done - self.first
            if made:  # the rest at the mean finished frame's pace (this run's)
                per_frame = (time.monotonic() - self.started) / made
                left = p.eta_s + per_frame * (self.count - self.frames_done - 1)
                eta += f", all {duration(left)}"
        self.bar.set_postfix_str(
            f"frame {self.frames_done + 1}: scale {p.scale}/{p.scales} step {p.step}/{p.steps}{eta}"
        )

    def finished(self, index: int) -> None:
        self.frames_done = max(self.frames_done, index + 1)
        if self.bar is not None:
            self.bar.update(self.frames_done - self.bar.n)

    def write(self, note: str) -> None:
        if self.bar is not None:
            self.bar.write(f"onnxstyle: {note}")
        else:
            say(note)


@contextmanager
def frames_bar(quiet: bool, count: int, done: int) -> Iterator[FramesBar]:
    if quiet:
        yield FramesBar(None, count, done)
        return
    from tqdm import tqdm  # noqa: PLC0415 (optional: only with a progress bar)

    bar = tqdm(
        total=count,
        initial=done,
        desc="frames",
        unit="frame",
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
    )
    try:
        yield FramesBar(bar, count, done)
    finally:
        bar.close()
