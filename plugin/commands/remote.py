"""`stylize --worker CMD`: the style transfer runs in a worker started by CMD (plugin/client.py),
e.g. over ssh on a machine with a GPU. The pixels (RGB at the work size, or whole for --upscale)
and the style files go to the worker; the result comes back and is written here, like a local
run's; alpha, ICC and bit depth stay here. Ctrl-C sends a cancel across the link."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxstyle.core.engine import Progress, resize
from onnxstyle.core.errors import StyleError
from onnxstyle.core.imageio import LoadedImage, load_image
from onnxstyle.core.options import OPTIONS
from onnxstyle.plugin.client import Pixels, WorkerClient, worker_command

# A run's computation: (progress callback, cancelled?) -> the result, float32 RGB [H,W,3].
Compute = Callable[[Callable[[Progress], None], Callable[[], bool]], np.ndarray]


def check(args: argparse.Namespace, overrides: dict[str, Any], init_path: str | None) -> None:
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


def prepare(
    args: argparse.Namespace, overrides: dict[str, Any], size: tuple[int, int]
) -> tuple[LoadedImage, Compute]:
    """The content as read here, and the run's computation in the worker (started when run)."""
    height, width = size
    content = load_image(args.content, None if args.upscale else max(height, width))
    rgb = content.rgb if args.upscale else resize(content.rgb, height, width)
    pixels = _pixels(rgb, content.bits)
    weights = overrides.get("style_blend") or (1.0,) * len(args.styles)
    options = request_options(args, overrides, max(height, width))

    def compute(progress: Callable[[Progress], None], cancelled: Callable[[], bool]) -> np.ndarray:
        with WorkerClient(args.worker) as worker:
            styles = list(zip(args.styles, weights))
            result = worker.stylize(pixels, styles, options, progress, cancelled)
        return _floats(result)

    return content, compute


def request_options(
    args: argparse.Namespace, overrides: dict[str, Any], longer: int
) -> dict[str, Any]:
    """The request's options: the preset, the flags given, and the work size as max_size (the
    content is sent at it, or whole for --upscale)."""
    options: dict[str, Any] = {"preset": args.preset, "max_size": longer}
    for name, value in overrides.items():
        option = OPTIONS[name]
        if option.wire and name != "max_size":  # a choice's None is its word on the wire
            options[name] = option.none_word if value is None and option.choices else value
    return options


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
