"""The editor worker: `python -m onnxstyle.plugin.worker`.

Speaks the JSON-lines protocol of `onnxstyle.plugin.protocol` on stdin/stdout, runs one
stylize job at a time with the engine, and exits when stdin closes (cancelling a running job
within one engine step). Logs go to stderr only: stdout carries protocol lines and nothing
else, so the real stdout is kept private and fd 1 is pointed at stderr.

The editor starts it in its own process group/session (start_new_session on Unix, a
kill-on-close Job object on Windows); the GIMP plug-in does both.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from onnxstyle.core import errors
from onnxstyle.core.engine import PRESERVE_COLORS, PRESETS, StyleOptions, resize, stylize
from onnxstyle.core.errors import Cancelled, ImageError, StyleError, first_line
from onnxstyle.core.files import write_atomic
from onnxstyle.core.imageio import load_image
from onnxstyle.plugin import protocol as P

log = logging.getLogger("onnxstyle.worker")

PROGRESS_INTERVAL_S = 0.05  # don't flood the editor's pipe with progress lines


class Channel:
    """Thread-safe writer of protocol lines."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = P.encode(message)
        with self._lock:
            try:
                self._stream.write(data)
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the editor is gone; stdin EOF ends us shortly


@dataclass
class Job:
    id: str
    request: dict[str, Any]
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)  # set before its final message


def _kind_of(exc: BaseException) -> str:

    if isinstance(exc, errors.ImageError):
        return "image"
    if isinstance(exc, errors.DeviceUnavailable):
        return "device"
    if isinstance(exc, errors.ModelError):
        return "model"
    if errors.is_out_of_memory(exc):
        return "memory"
    if isinstance(exc, errors.StyleError):
        return "style"
    return "internal"


def _read_content(spec: dict[str, Any]):
    """The content pixel file -> (rgb float32 [H,W,3], alpha or None, format)."""

    try:
        path = Path(spec["path"])
        width, height, fmt = int(spec["width"]), int(spec["height"]), str(spec["format"])
    except (KeyError, TypeError, ValueError):
        raise P.ProtocolError('"content" needs "path", "width", "height" and "format"') from None
    if fmt not in P.PIXEL_FORMATS:
        raise P.ProtocolError(f'unknown pixel format "{fmt}" (known: {", ".join(P.PIXEL_FORMATS)})')
    if width < 1 or height < 1:
        raise ImageError(f"empty content image ({width}x{height})")
    channels, depth = P.PIXEL_FORMATS[fmt]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"can't read the content pixels {path}: {exc.strerror or exc}") from None
    if len(data) != P.frame_size(width, height, fmt):
        raise ImageError(
            f"content pixel file {path.name} has {len(data)} bytes, expected "
            f"{P.frame_size(width, height, fmt)} for {width}x{height} {fmt}"
        )
    if depth == 1:
        pixels = (
            np.frombuffer(data, dtype=np.uint8).reshape(height, width, channels).astype(np.float32)
            / 255.0
        )
    else:
        pixels = (
            np.frombuffer(data, dtype="<f4").reshape(height, width, channels).astype(np.float32)
        )
        pixels = np.nan_to_num(pixels, nan=0.0, posinf=1.0, neginf=0.0)
    rgb = np.ascontiguousarray(np.clip(pixels[..., :3], 0.0, 1.0))
    alpha = pixels[..., 3].copy() if channels == 4 else None
    return rgb, alpha, fmt


def _write_output(path: Path, rgb, alpha, fmt: str) -> None:
    """Pixels in `fmt`, written to a temporary name and renamed, so `path` is always whole."""

    channels, depth = P.PIXEL_FORMATS[fmt]
    planes = [np.clip(rgb, 0.0, 1.0)]
    if channels == 4:
        planes.append(alpha[..., None])
    pixels = np.concatenate(planes, axis=2)
    if depth == 1:
        data = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8).tobytes()
    else:
        data = pixels.astype("<f4").tobytes()
    write_atomic(path, data)


def _engine_options(options: dict[str, Any], weights: list[float]):
    """Protocol options -> engine StyleOptions.

    "style_strength" multiplies the preset's style weight; "preserve_colors": "none" is the
    engine's None; a missing or null "max_size" keeps the preset's; several styles are blended
    with their relative weights."""

    options = dict(options)
    preset = options.pop("preset", "normal")
    if (
        not isinstance(preset, str) or preset not in PRESETS
    ):  # PRESETS is a dict: a JSON list would raise TypeError
        raise P.ProtocolError(f'unknown preset "{preset}" (known: {", ".join(PRESETS)})')
    strength = options.pop("style_strength", None)
    strength = (
        1.0 if strength is None else strength
    )  # absent or null: the preset's own style weight
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not strength > 0.0:
        raise P.ProtocolError(f"style_strength must be a number > 0, not {strength!r}")
    steps = options.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise P.ProtocolError(f"steps must be a whole number >= 1, not {steps!r}")
    if options.get("preserve_colors") == "none":
        options["preserve_colors"] = None
    elif options.get("preserve_colors") not in PRESERVE_COLORS:
        raise P.ProtocolError(f'unknown preserve_colors "{options["preserve_colors"]}"')
    overrides: dict[str, Any] = {}
    for name, value in options.items():
        if name not in _OPTIONS:
            raise P.ProtocolError(f'unknown option "{name}"')
        if value is not None or name == "preserve_colors":
            overrides[name] = value
    if len(weights) > 1:
        overrides["style_blend"] = tuple(weights)  # relative: the engine normalises them
    base = StyleOptions.from_preset(preset, **overrides)
    return dataclasses.replace(base, style_weight=base.style_weight * strength)


# the options the protocol accepts besides "preset" and "style_strength" (StyleOptions fields)
_OPTIONS = ("max_size", "steps", "preserve_colors", "device", "seed")


def _styles(specs: Any) -> tuple[list, list[float]]:

    if not isinstance(specs, list) or not specs:
        raise P.ProtocolError('"styles" must be a non-empty list of {"path", "weight"}')
    images, weights = [], []
    for spec in specs:
        if not isinstance(spec, dict) or "path" not in spec:
            raise P.ProtocolError('each style needs a "path"')
        weight = float(spec.get("weight", 1.0))
        if not weight >= 0.0:
            raise P.ProtocolError("style weights must be >= 0")
        images.append(load_image(str(spec["path"])).rgb)
        weights.append(weight)
    if sum(weights) <= 0.0:
        raise P.ProtocolError("at least one style weight must be > 0")
    return images, weights


def _progress_message(job_id: str, p: Any) -> dict[str, Any]:
    """An engine Progress (scale and step 1-based) as a protocol progress line."""
    fraction = min(max(((p.scale - 1) + p.step / p.steps) / p.scales, 0.0), 1.0)
    return {
        "type": "progress",
        "id": job_id,
        "scale": p.scale,
        "scales": p.scales,
        "step": p.step,
        "steps": p.steps,
        "fraction": round(fraction, 4),
        "loss": _finite_or_none(p.loss),
        "eta_s": _finite_or_none(p.eta_s),
        "text": P.progress_text(p.scale, p.scales, p.step, p.steps),
    }


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity (P.encode refuses them)."""
    return float(value) if value is not None and math.isfinite(value) else None


def _memory_message(exc: BaseException) -> str:
    """The whole line an editor shows for kind "memory", advice included (editors add nothing)."""
    detail = first_line(exc) if str(exc).strip() else ""
    return (
        f"Out of memory{f' ({detail})' if detail else ''}: try a smaller maximum size, the draft "
        "preset or a smaller selection."
    )


def run_job(job: Job, out: Channel) -> None:
    """Run one stylize request to its single final message (result, error or cancelled)."""

    started = time.monotonic()
    request = job.request
    try:
        content, alpha, fmt = _read_content(request.get("content") or {})
        try:
            output = Path(request["output"]["path"])
        except (KeyError, TypeError):
            raise P.ProtocolError('"output" needs a "path"') from None
        styles, weights = _styles(request.get("styles"))
        options = request.get("options") or {}
        if not isinstance(options, dict):
            raise P.ProtocolError('"options" must be an object')
        engine_options = _engine_options(options, weights)
        if job.cancel.is_set():
            raise Cancelled()

        last = [0.0]

        def on_progress(p: Any) -> None:
            now = time.monotonic()
            done = p.step >= p.steps and p.scale >= p.scales
            if now - last[0] >= PROGRESS_INTERVAL_S or done:
                last[0] = now
                out.send(_progress_message(job.id, p))

        result = stylize(
            content, styles, engine_options, progress=on_progress, cancel=job.cancel.is_set
        )
        if job.cancel.is_set():
            raise Cancelled()
        height, width = content.shape[:2]
        result = resize(
            result, height, width
        )  # the engine may work smaller; a no-op at the same size
        _write_output(output, result, alpha, fmt)
        final = {
            "type": "result",
            "id": job.id,
            "path": str(output),
            "width": width,
            "height": height,
            "format": fmt,
            "seconds": round(time.monotonic() - started, 3),
        }
    except Cancelled:
        log.info("job %s cancelled", job.id)
        final = {"type": "cancelled", "id": job.id}
    except P.ProtocolError as exc:
        final = P.error(job.id, "protocol", str(exc))
    except MemoryError as exc:
        final = P.error(job.id, "memory", _memory_message(exc))
    except StyleError as exc:
        final = P.error(job.id, _kind_of(exc), str(exc))
    except Exception as exc:  # a bug or an unmapped library error: one line out, details to stderr
        traceback.print_exc(file=sys.stderr)
        kind = _kind_of(exc)
        if kind == "memory":
            message = _memory_message(exc)
        else:
            message = (
                f"internal error in the worker ({type(exc).__name__}: {exc}); details on its stderr"
            )
        final = P.error(job.id, kind, message)
    # done first: a request that follows the final message must not find the worker busy
    job.done.set()
    out.send(final)


def _remove_workdir(workdir: Any) -> None:
    """The editor went away mid-job: its temporary folder is ours to remove."""
    if isinstance(workdir, str) and workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def hello() -> dict[str, Any]:
    try:
        import onnxruntime  # noqa: PLC0415 (optional until a session is made)

        providers = list(onnxruntime.get_available_providers())
    except Exception as exc:  # still answer: the editor shows what's wrong
        providers = []
        log.warning("onnxruntime unavailable: %s", exc)
    try:
        onnxstyle_version = version("onnxstyle")
    except Exception:
        onnxstyle_version = "unknown"
    return {
        "type": "hello",
        "protocol": P.PROTOCOL_VERSION,
        "onnxstyle": onnxstyle_version,
        "python": sys.executable,
        "providers": providers,
    }


class Worker:
    """Reads requests until EOF; one job thread at a time."""

    def __init__(self, stdin: BinaryIO, out: Channel) -> None:
        self.stdin = stdin
        self.out = out
        self.job: Job | None = None

    def busy(self) -> bool:
        return self.job is not None and not self.job.done.is_set()

    def handle(self, line: bytes) -> None:
        try:
            message = P.decode(line)
        except P.ProtocolError as exc:
            self.out.send(P.error(None, "protocol", str(exc)))
            return
        kind, job_id = message["type"], message.get("id")
        if kind == "hello":
            self.out.send(hello())
        elif kind == "stylize":
            if self.busy():
                self.out.send(
                    P.error(job_id, "busy", "a job is already running; cancel it or wait")
                )
                return
            job = Job(id=str(job_id if job_id is not None else "job"), request=message)
            job.thread = threading.Thread(
                target=run_job, args=(job, self.out), name=f"job-{job.id}", daemon=True
            )
            self.job = job
            job.thread.start()
        elif kind == "cancel":
            if self.busy() and (job_id is None or str(job_id) == self.job.id):
                self.job.cancel.set()
        else:
            self.out.send(P.error(job_id, "protocol", f'unknown request type "{kind}"'))

    def serve(self) -> int:
        for line in iter(self.stdin.readline, b""):
            if line.strip():
                self.handle(line)
        # stdin closed: the editor is gone or done
        if self.busy():
            self.job.cancel.set()
            self.job.thread.join()
            _remove_workdir(self.job.request.get("workdir"))
        return 0


def _private_stdout() -> BinaryIO:
    """Keep the real stdout for protocol lines; anything printed elsewhere goes to stderr."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("ONNXSTYLE_WORKER_LOG", "INFO"),
        stream=sys.stderr,
        format="onnxstyle-worker: %(message)s",
    )
    out = Channel(_private_stdout())
    return Worker(sys.stdin.buffer, out).serve()


if __name__ == "__main__":
    sys.exit(main())
