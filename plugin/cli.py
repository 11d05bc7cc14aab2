"""The `onnxstyle` command: stylize, info, export (exporter) and gimp (installer).

Errors the user can act on (StyleError and subclasses) print one line `onnxstyle: error: ...` and
exit 2, like argparse's own usage errors; every value is checked before an image is decoded or a
model loaded. Ctrl-C, SIGTERM and SIGHUP cancel at the next engine step (during the final save: at
once) and exit 128 + the signal (130 for Ctrl-C). The result is written only when a run finishes,
to a temporary file that is renamed; --save-every snapshots already written are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from onnxstyle.core import imageio, runtime
from onnxstyle.core.engine import (
    PRESETS,
    StyleOptions,
    check_sizes,
    resize,
    style_side,
    stylize,
    work_size,
)
from onnxstyle.core.errors import (
    Cancelled,
    ImageError,
    ModelError,
    StyleError,
    first_line,
    is_out_of_memory,
)
from onnxstyle.core.files import same_file
from onnxstyle.core.graph import PACKAGE_MODELS, Manifest, StyleGraph, user_model_dir
from onnxstyle.core.imageio import load_image
from onnxstyle.core.layers import MIN_SIDE
from onnxstyle.plugin import protocol as P
from onnxstyle.plugin.client import Pixels, WorkerClient, worker_command
from onnxstyle.plugin.commands.options import (
    add_engine_flags,
    engine_flags,
    engine_overrides,
)

PROG = "onnxstyle"
EXIT_USER_ERROR = 2  # argparse's code for usage errors; we use it for every user-facing error
EXIT_BUG = 1
EXIT_CANCELLED = 130  # 128 + SIGINT, what shells report for Ctrl-C
DELEGATED = {  # subcommands implemented elsewhere, imported only when used
    "export": (
        "onnxstyle.exporter.export",
        "write the VGG19 ONNX graphs (needs the [export] extra: torch)",
    ),
    "gimp": ("onnxstyle.plugin.gimp_install", "install, uninstall or check the GIMP 3 plug-in"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error, 130 cancelled, 1 bug)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        command = _first_positional(argv)
        if command in DELEGATED:
            # Their own parsers see their arguments untouched (`onnxstyle export --help` is theirs).
            at = argv.index(command)
            return _delegate(command, [a for a in argv[at + 1 :] if a != "--debug"])
        args = build_parser().parse_args(argv)
        return args.run(args)
    except (
        SystemExit
    ) as exc:  # argparse's --help/--version (0) and usage errors (2), here or delegated
        return (
            exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USER_ERROR)
        )
    except StyleError as exc:
        _error(str(exc))
        return EXIT_USER_ERROR
    except (Cancelled, KeyboardInterrupt):
        print(f"{PROG}: cancelled; nothing written", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:  # a bug (or memory): one line, the traceback only when asked for
        if is_out_of_memory(exc):
            _error("out of memory; try a smaller --max-size or --tile-budget, or --device cpu")
            return EXIT_USER_ERROR
        if debug:
            traceback.print_exc()
        first = first_line(exc) if str(exc).strip() else ""
        _error(
            f"unexpected {type(exc).__name__}{': ' + first if first else ''}"
            + ("" if debug else " (rerun with --debug for the traceback)")
        )
        return EXIT_BUG


def _error(message: str) -> None:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def _first_positional(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg
        if arg == "--":
            return None
    return None


def _delegate(command: str, rest: list[str]) -> int:
    module_name = DELEGATED[command][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # the export extra is checked by the export command itself
        if exc.name and module_name.startswith(exc.name):
            raise StyleError(
                f"'{PROG} {command}' is not available in this installation ({module_name} missing)"
            ) from None
        raise
    return int(module.main(rest) or 0)


# ---------------------------------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, like every other error of the command."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (export and gimp are listed here but parsed by their own modules)."""
    parser = _Parser(prog=PROG, description="Neural style transfer (Gatys et al.) on ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version('onnxstyle')}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of unexpected errors"
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_Parser
    )
    _add_stylize(commands)
    info = commands.add_parser(
        "info",
        help="ONNX Runtime, devices, model files and versions",
        description="Show ONNX Runtime's variant and devices, the model files found and versions.",
    )
    info.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    info.set_defaults(run=run_info)
    for name, (_, text) in DELEGATED.items():
        commands.add_parser(
            name, help=text, add_help=False
        )  # parsed by the module itself (see main)
    return parser


_engine_flags = engine_flags  # the table, for tests


def _add_stylize(commands) -> None:

    p = commands.add_parser(
        "stylize",
        help="paint CONTENT in the style of STYLE(s)",
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
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="normal",
        help="starting values (default: normal)",
    )
    add_engine_flags(p.add_argument_group("engine options"))
    out = p.add_argument_group("output")
    out.add_argument(
        "--upscale",
        action="store_true",
        help="resize the result back to the content's size when --max-size shrank it",
    )
    out.add_argument(
        "--save-every",
        type=_positive_int,
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
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of unexpected errors",
    )
    p.set_defaults(run=run_stylize)


# argparse `type=` helpers: a ValueError/ArgumentTypeError becomes argparse's one-line usage error.


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, not {text}")
    return value


_positive_int.__name__ = "integer"  # argparse names the type in its message


# ------------------------------------------------------------------------------------------ stylize


def run_stylize(args: argparse.Namespace) -> int:
    """Validate everything cheap first, then load, run with a progress bar, and write atomically."""

    output = Path(args.output)
    imageio.check_output_path(output)
    overrides = engine_overrides(args)
    _check_blend(overrides.get("style_blend"), len(args.styles))
    init = overrides.get("init")
    init_path = init if init not in (None, "content", "noise") else None
    if args.worker is not None:
        _check_remote(args, overrides, init_path)
    _check_model_dir(overrides.get("model_dir"), overrides.get("pooling") or StyleOptions.pooling)
    _check_not_an_input(output, [args.content, *args.styles, init_path], args.save_every)
    options = StyleOptions.from_preset(args.preset, **overrides)
    content_size = _size_checked(args.content)
    style_sizes = [_size_checked(path) for path in args.styles]
    if args.worker is not None:  # the worker checks the sizes against its own memory and device
        return run_remote(args, output, overrides, work_size(*content_size[::-1], options))
    height, width = check_sizes(
        content_size[::-1], [size[::-1] for size in style_sizes], options
    )  # before any decode: a size no option may reach is refused now
    # decoded no larger than needed: the work size, the styles' at the last scale (--upscale needs
    # the whole content back)
    content = load_image(args.content, None if args.upscale else max(height, width))
    style_longer = style_side(height, width, options.style_scale)
    styles = [load_image(path, style_longer).rgb for path in args.styles]
    if init_path is not None:
        _size_checked(init_path)
        options = dataclasses.replace(options, init=load_image(init_path).rgb)

    started = time.monotonic()
    snapshots: list[Path] = []
    with _progress_bar(args.quiet) as show, _signals_cancel() as signals:
        on_progress, graph = show, None
        if args.save_every:
            graph = _RecordingGraph.load(options)
            on_progress = _saving_snapshots(
                show, graph, output, content, args.save_every, snapshots
            )
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # the engine reports inf/NaN itself
                result = stylize(
                    content.rgb,
                    styles,
                    options,
                    progress=on_progress,
                    cancel=signals.cancelled,
                    graph=graph,
                )
        except (Cancelled, KeyboardInterrupt):
            return _cancelled(signals.code(), snapshots)
        signals.at_once = True  # from here a signal stops at once; the save removes its temp file
        if args.upscale and result.shape[:2] != content.rgb.shape[:2]:
            result = resize(result, *content.rgb.shape[:2])
        try:
            imageio.save_image(output, result, like=content)
        except KeyboardInterrupt:
            return _cancelled(signals.code(), snapshots)
    if not args.quiet:
        height, width = result.shape[:2]
        print(
            f"{PROG}: wrote {output} ({width}×{height}) in {_duration(time.monotonic() - started)}",
            file=sys.stderr,
        )
    return 0


def _cancelled(code: int, snapshots: list[Path]) -> int:
    """The one honest line: nothing written, or which snapshots were kept (they are wanted)."""
    if snapshots:
        print(
            f"{PROG}: cancelled; the result was not written; kept {len(snapshots)} snapshot(s) "
            f"in {snapshots[0].parent}, the last {snapshots[-1].name}",
            file=sys.stderr,
        )
    else:
        print(f"{PROG}: cancelled; nothing written", file=sys.stderr)
    return code


# ------------------------------------------------------------------------------- stylize --worker


def _check_remote(
    args: argparse.Namespace, overrides: dict[str, Any], init_path: str | None
) -> None:
    """Before anything is read: what a worker elsewhere can't do, and a command that parses."""
    worker_command(args.worker)
    refused = {
        "--save-every": args.save_every is not None,  # snapshots would need the worker's images
        "--model-dir": "model_dir" in overrides,  # the worker's machine has its own
        "--init PATH": init_path is not None,  # a file of this machine
    }
    for flag, given in refused.items():
        if given:
            raise StyleError(f"{flag} can't be used with --worker (the worker runs elsewhere)")


def run_remote(
    args: argparse.Namespace, output: Path, overrides: dict[str, Any], size: tuple[int, int]
) -> int:
    """stylize with --worker: the pixels (RGB at the work size, or whole for --upscale) and the
    style files go to the worker, the result comes back and is written here, atomically, only on
    success; alpha, ICC and bit depth stay here. Ctrl-C sends a cancel across the link."""
    height, width = size
    content = load_image(args.content, None if args.upscale else max(height, width))
    rgb = content.rgb if args.upscale else resize(content.rgb, height, width)
    pixels = _pixels(rgb, content.bits)
    weights = overrides.get("style_blend") or (1.0,) * len(args.styles)
    started = time.monotonic()
    with (
        _progress_bar(args.quiet) as show,
        _signals_cancel() as signals,
        WorkerClient(args.worker) as worker,
    ):
        try:
            result = worker.stylize(
                pixels,
                list(zip(args.styles, weights)),
                _remote_options(args, overrides, max(height, width)),
                progress=show,
                cancelled=signals.cancelled,
            )
        except (Cancelled, KeyboardInterrupt):
            return _cancelled(signals.code(), [])
        signals.at_once = True  # from here a signal stops at once; the save removes its temp file
        try:
            imageio.save_image(output, _floats(result), like=content)
        except KeyboardInterrupt:
            return _cancelled(signals.code(), [])
    if not args.quiet:
        print(
            f"{PROG}: wrote {output} ({result.width}×{result.height}) in "
            f"{_duration(time.monotonic() - started)} on {worker.shown}",
            file=sys.stderr,
        )
    return 0


def _pixels(rgb: np.ndarray, bits: int) -> Pixels:
    """RGB in the protocol's bytes: 8-bit content as rgb8 (a quarter of float's bytes), else float."""
    height, width = rgb.shape[:2]
    if bits == 8:
        data = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8).tobytes()
        return Pixels(width, height, "rgb8", data)
    return Pixels(width, height, "rgbf32", np.ascontiguousarray(rgb, dtype="<f4").tobytes())


def _floats(pixels: Pixels) -> np.ndarray:
    shape = (pixels.height, pixels.width, 3)
    if pixels.format == "rgb8":
        return np.frombuffer(pixels.data, np.uint8).reshape(shape).astype(np.float32) / 255.0
    return np.frombuffer(pixels.data, "<f4").reshape(shape).astype(np.float32)


def _remote_options(
    args: argparse.Namespace, overrides: dict[str, Any], longer: int
) -> dict[str, Any]:
    """The request's options: the preset, the flags given, and the work size as max_size (the
    content is sent at it, or whole for --upscale)."""
    options: dict[str, Any] = {"preset": args.preset, "max_size": longer}
    for name, value in overrides.items():
        if name in ("device", "seed", "strength") or name in P.ENGINE_OPTIONS:
            options[name] = value
    if "preserve_colors" in overrides:
        options["preserve_colors"] = overrides["preserve_colors"] or "none"
    return options


def _check_model_dir(model_dir: str | None, pooling: str) -> None:
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


def _check_not_an_input(output: Path, inputs: list[str | None], save_every: int | None) -> None:
    """The output, and every --save-every snapshot name, must be none of the inputs (links and
    hard links resolved): writing it would destroy that input."""
    pattern = re.compile(
        rf"{re.escape(output.stem)}-scale\d+-step\d{{4,}}{re.escape(output.suffix)}", re.IGNORECASE
    )
    for name in filter(None, inputs):
        if same_file(output, name):
            raise StyleError(f"the output {output} is the input {name}; choose another -o")
        real = Path(os.path.realpath(name))
        if (
            save_every
            and real.parent == Path(os.path.realpath(output)).parent
            and pattern.fullmatch(real.name)
        ):
            raise StyleError(
                f"--save-every would overwrite the input {name} (its snapshot names are "
                f"{snapshot_path(output, 1, save_every).name} and the like); choose another -o"
            )


def _size_checked(path: str) -> tuple[int, int]:
    """(width, height) from the header, plus the engine's smallest side, so the error names the
    file."""
    width, height = imageio.image_size(path)
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"{path}: image too small ({width}×{height}); at least {MIN_SIDE} px a side"
        )
    return width, height


def _check_blend(blend: tuple[float, ...] | None, n_styles: int) -> None:
    if blend is not None and len(blend) != n_styles:
        raise StyleError(
            f"--style-blend has {len(blend)} weight(s) for {n_styles} style image(s); give one per style"
        )


class _RecordingGraph:
    """The StyleGraph, remembering the image of its latest loss evaluation (for --save-every).

    The engine takes any object with the graph's features/loss_and_grad; this one passes every call
    through, so a snapshot is exactly the image whose loss the progress report shows.
    """

    def __init__(self, graph) -> None:
        self._graph = graph
        self.image = None

    @classmethod
    def load(cls, options) -> _RecordingGraph:

        return cls(StyleGraph.load(options.pooling, options.device, options.model_dir))

    def features(self, image):
        return self._graph.features(image)

    def loss_and_grad(self, image, targets, weights):
        self.image = image
        return self._graph.loss_and_grad(image, targets, weights)


def snapshot_path(output: Path, scale: int, step: int) -> Path:
    """Where --save-every writes: beside OUT, e.g. result-scale2-step0050.png."""
    return output.with_name(f"{output.stem}-scale{scale}-step{step:04d}{output.suffix}")


def _saving_snapshots(
    show: Callable,
    graph: _RecordingGraph,
    output: Path,
    content,
    every: int,
    written: list[Path],
) -> Callable:
    """Progress callback that also writes the current image every `every` steps of each scale
    (appending each path to `written`). Tiled scales are skipped: their current image is one tile,
    not the picture."""

    def on_progress(progress) -> None:
        show(progress)
        if graph.image is None or progress.tiles > 1 or progress.step % every:
            return
        image = np.asarray(graph.image)
        if image.ndim == 4:  # the graphs' [1,3,H,W] layout
            image = image[0].transpose(1, 2, 0)
        path = snapshot_path(output, progress.scale, progress.step)
        imageio.save_image(path, image, like=content)
        written.append(path)

    return on_progress


@contextmanager
def _progress_bar(quiet: bool) -> Iterator[Callable]:
    """A tqdm bar per scale: step/steps, loss and the engine's ETA for the whole run."""
    if quiet:
        yield lambda progress: None
        return
    from tqdm import tqdm  # noqa: PLC0415 (optional: only with a progress bar)

    state: dict[str, Any] = {"bar": None, "scale": None}

    def show(progress) -> None:
        bar = state["bar"]
        if bar is None or state["scale"] != progress.scale:
            if bar is not None:
                bar.close()
            bar = state["bar"] = tqdm(
                total=progress.steps,
                desc=f"scale {progress.scale}/{progress.scales}",
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
                bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            )
            state["scale"] = progress.scale
        tiles = f"tile {progress.tile}/{progress.tiles}, " if progress.tiles > 1 else ""
        eta = "" if progress.eta_s is None else f", ETA {_duration(progress.eta_s)}"
        bar.set_postfix_str(f"{tiles}loss {progress.loss:.4g}{eta}", refresh=False)
        bar.update(progress.step - bar.n)

    try:
        yield show
    finally:
        if state["bar"] is not None:
            state["bar"].close()


class _Signals:
    """What Ctrl-C, SIGTERM and SIGHUP did: the first one cancels at the engine's next step; a
    second, or one once the engine is done (the save), stops at once (KeyboardInterrupt), and
    write_atomic removes its temporary file."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.at_once = False

    def cancelled(self) -> bool:
        return self.received is not None

    def code(self) -> int:
        """The exit status: 128 + the signal's number, as shells report it (130 for Ctrl-C)."""
        return 128 + (self.received or signal.SIGINT)

    def handle(self, signum, frame) -> None:
        first = self.received is None
        self.received = self.received or signum
        if not first or self.at_once:
            raise KeyboardInterrupt
        print(
            f"\n{PROG}: cancelling at the next step (Ctrl-C again to stop at once)", file=sys.stderr
        )


CANCELLING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def _signals_cancel() -> Iterator[_Signals]:
    """SIGINT, SIGTERM and SIGHUP cancel the run (see _Signals) instead of killing it mid-write."""
    signals = _Signals()
    previous = {}
    try:
        for number in CANCELLING_SIGNALS:
            previous[number] = signal.signal(number, signals.handle)
    except ValueError:  # not the main thread (embedded use): signals keep their meaning
        pass
    try:
        yield signals
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# --------------------------------------------------------------------------------------------- info


def run_info(args: argparse.Namespace) -> int:
    """Print what a bug report needs: versions, ONNX Runtime variant and devices, model files."""

    print(f"onnxstyle {_version('onnxstyle')} (Python {sys.version.split()[0]}, {sys.platform})")
    variants = runtime.installed_variants()
    version = runtime.onnxruntime_version()
    print(
        f"onnxruntime {version or 'not importable'} (package: {', '.join(variants) or 'none installed'})"
    )
    print("devices:")
    for row in runtime.available_devices():
        state = "available" if row["available"] else f"unavailable: {row['reason']}"
        if row["available"]:  # the optimiser's path: DirectML's depends on the installed package
            state += f"; pixel updates on the {runtime.pixel_updates(row['device'])}"
        print(f"  {row['device']:<9} {row['provider']:<24} {state}")
    print("models:")
    for line in _model_lines():
        print(f"  {line}")
    print(
        "libraries: "
        + ", ".join(
            f"{name} {_version(name) or 'not installed'}"
            for name in ("numpy", "pillow", "tqdm", "onnx", "torch")
        )
    )
    return 0


def _model_lines() -> list[str]:

    lines = []
    for label, folder in (("user", user_model_dir()), ("shipped", PACKAGE_MODELS)):
        manifests = sorted(folder.glob("vgg19-*.json")) if folder.is_dir() else []
        if not manifests:
            lines.append(f"{label}: none in {folder}")
        for path in manifests:
            try:
                manifest = Manifest.read(path)
            except ModelError as exc:
                lines.append(f"{label}: {exc}")
                continue
            lines.append(
                f"{label}: {manifest.pooling} pooling, opset {manifest.opset}, {manifest.weights}"
            )
            for file in (manifest.features_path, manifest.grad_path):
                size = f"{file.stat().st_size / 1e6:.1f} MB" if file.is_file() else "MISSING"
                lines.append(f"    {file} ({size})")
    return lines


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
