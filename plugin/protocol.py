"""The editor worker's protocol: JSON lines on stdin/stdout, pixels in temporary files.

Version 1. Every message is one JSON object on one line (UTF-8, '\\n'-terminated) with a
"type" field. The editor (the GIMP plug-in) writes requests to the worker's stdin; the worker
answers on stdout. The worker writes nothing else to stdout (its logs go to stderr).

Requests (editor -> worker)
  {"type": "hello", "protocol": 1}
      -> {"type": "hello", "protocol": 1, "onnxstyle": "0.1.0", "python": "...",
          "providers": ["CPUExecutionProvider", ...]}
  {"type": "stylize", "id": "job-1",
   "content": {"path": ".../content.raw", "width": W, "height": H, "format": "rgba8"},
   "output":  {"path": ".../result.raw"},            # same width, height and format as content
   "styles":  [{"path": "style.jpg", "weight": 1.0}, ...],   # image files; weights are relative
   "options": {"preset": "draft", "strength": 1.0, "max_size": 512,
               "preserve_colors": "none", "device": "auto", "seed": 0,
               "steps": 20},                           # optional: steps a scale (the preset's)
   "workdir": ".../tmpdir"}                          # optional, ignored (see "Files")
      -> zero or more {"type": "progress", "id", "scale", "scales", "step", "steps",
                       "fraction", "loss", "eta_s", "text"}
      -> then exactly one of
         {"type": "result", "id", "path", "width", "height", "format", "seconds"}
         {"type": "error", "id", "kind", "message"}
         {"type": "cancelled", "id"}
  {"type": "cancel", "id": "job-1"}     # "id" optional: cancels the running job, if any
  Closing stdin cancels the running job (within one engine step) and ends the worker.

Errors: "message" is one user-facing line; "kind" is an ErrorKind value. A request that is
not understood gets {"type": "error", "id": <its id or null>, "kind": "protocol", ...}: a line
that is not a JSON object, an unknown "type" or option, a missing field, a value of the wrong
type (true/false is not a number), a number that is not finite or out of its range (NUMBERS).
Every value is checked before any file is opened or any model loaded.

One job at a time, one worker for many jobs. A second "stylize" while one runs gets kind "busy",
except right after a "cancel" of the running job: then it waits (one at most; another gets
"busy") and starts as soon as the cancelled job has sent its final message, so an editor may
send "cancel" and the next "stylize" at once and reads the old job's final message first. A
"stylize" sent after a job's final message never finds the worker busy. The worker keeps the
loaded model sessions between jobs, so a later job (another size, the same device) starts at once.

Files: what the worker may touch. It reads the content pixel file and the style images, and
writes the output file, never through a fixed temporary name: a new file made with O_EXCL
(mkstemp) beside the output, renamed over it when whole, removed on any failure or cancel. It
never removes or changes any other path a request names: "workdir" (sent by version-1 editors)
is accepted and ignored, and the editor removes its own temporary folder. A folder the worker
will need for itself (pixels sent in-band, a later version) it makes with mkdtemp and removes.
Before any work the output is checked: its folder exists and is writable, it is not a folder, if
it exists it is a regular file, and it is none of the inputs (links resolved); else kind "output".
Inputs are opened without blocking and must be regular files; the content must hold exactly
width x height x channels x bytes (at most MAX_PIXELS) before a byte is read.

Extending: a new request type is a parser added to REQUESTS (and a dataclass); a new reply a
builder below; a new numeric field an entry in NUMBERS. Version 2 (pixels in-band) adds those.

Pixel files (PIXEL_FORMATS): raw, row-major, top row first, no header, no padding;
interleaved channels R, G, B[, A]; sRGB-encoded values (not linear light); alpha straight
(not premultiplied). "rgba8"/"rgb8": one byte per channel, 0..255. "rgbaf32"/"rgbf32":
float32 little-endian per channel, nominally 0..1. These are GEGL's "R'G'B'A u8",
"R'G'B' u8", "R'G'B'A float" and "R'G'B' float". The worker carries alpha through
unchanged and writes the result in the content's format, to a temporary name renamed
into place, so the output file exists only when complete.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from onnxstyle.core.engine import MAX_SEED, MAX_WEIGHT, PRESERVE_COLORS, PRESETS
from onnxstyle.core.layers import MIN_SIDE
from onnxstyle.core.runtime import DEVICES

PROTOCOL_VERSION = 1

# format name -> (channels, bytes per channel)
PIXEL_FORMATS: dict[str, tuple[int, int]] = {
    "rgba8": (4, 1),
    "rgb8": (3, 1),
    "rgbaf32": (4, 4),
    "rgbf32": (3, 4),
}


class ErrorKind(str, Enum):
    """The "kind" of an error message (str-valued: the JSON is the plain word)."""

    IMAGE = "image"  # an input image is missing, unreadable, corrupt or too large
    DEVICE = "device"  # the requested execution provider can't be used here
    MODEL = "model"  # a shipped model file is missing or broken
    MEMORY = "memory"  # out of memory (host or device)
    STYLE = "style"  # any other user-facing StyleError
    OUTPUT = "output"  # the result can't be written (folder missing, not writable, disk full, ...)
    BUSY = "busy"  # a job is already running
    PROTOCOL = "protocol"  # a malformed or unknown request
    INTERNAL = "internal"  # a bug: details on the worker's stderr


ERROR_KINDS = tuple(kind.value for kind in ErrorKind)

ID_MAX_CHARS = 200  # ids are echoed in every answer: keep them short
MAX_LINE_BYTES = 1 << 20  # a request line; a longer one is skipped and answered "protocol"
SEED_MAX = MAX_SEED
WEIGHT_MAX = MAX_WEIGHT  # the engine's: weights and strengths are float32 graph inputs
STEPS_MAX = 100_000  # steps a scale: far beyond any preset (300), yet a bounded run
PRESERVE = ("none",) + tuple(mode for mode in PRESERVE_COLORS if mode)


class ProtocolError(ValueError):
    """A request that can't be understood; str() is one line. `id` is the request's, if known."""

    def __init__(self, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.id = id


# ---------------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Number:
    """A numeric field's type and range: the one check every number of the protocol goes through."""

    integer: bool
    minimum: float
    maximum: float
    above_minimum: bool = False  # the minimum itself is excluded
    nullable: bool = False  # JSON null is allowed (the field's default then)

    def describe(self) -> str:
        kind, shown = ("an integer", int) if self.integer else ("a number", lambda x: f"{x:g}")
        low = f"> {shown(self.minimum)}" if self.above_minimum else f"≥ {shown(self.minimum)}"
        high = f"≤ {shown(self.maximum)}"
        return f"{kind} {low} and {high}" + (" (or null)" if self.nullable else "")

    def check(self, value: Any, name: str) -> int | float | None:
        if value is None and self.nullable:
            return None
        kinds = (int,) if self.integer else (int, float)
        ok = (
            isinstance(value, kinds)
            and not isinstance(value, bool)  # JSON true/false are not numbers
            and (isinstance(value, int) or math.isfinite(value))  # an int may exceed a float
            and (value > self.minimum if self.above_minimum else value >= self.minimum)
            and value <= self.maximum
        )
        if not ok:
            raise ProtocolError(f'"{name}" must be {self.describe()}, not {_shown(value)}')
        return value


# Every numeric field of a request, by its dotted name: checked by `number`, nowhere else.
NUMBERS: dict[str, Number] = {
    "hello.protocol": Number(integer=True, minimum=1, maximum=1000),
    "content.width": Number(integer=True, minimum=1, maximum=2**31 - 1),
    "content.height": Number(integer=True, minimum=1, maximum=2**31 - 1),
    "styles.weight": Number(integer=False, minimum=0.0, maximum=WEIGHT_MAX),
    "options.strength": Number(integer=False, minimum=0.0, maximum=WEIGHT_MAX, nullable=True),
    "options.max_size": Number(integer=True, minimum=MIN_SIDE, maximum=2**31 - 1, nullable=True),
    "options.seed": Number(integer=True, minimum=0, maximum=SEED_MAX, nullable=True),
    "options.steps": Number(integer=True, minimum=1, maximum=STEPS_MAX, nullable=True),
}


def number(value: Any, name: str) -> Any:
    """`value` checked against NUMBERS[name]; ProtocolError (one line) otherwise."""
    return NUMBERS[name].check(value, name)


def _shown(value: Any) -> str:
    """A bad value as the error shows it: JSON spelling, cut short."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):  # e.g. an int of more digits than Python will print
        text = f"a {type(value).__name__} too large to show"
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Hello:
    """{"type": "hello", "protocol": N}: answered by a HelloReply."""

    protocol: int | None = None
    type = "hello"


@dataclass(frozen=True)
class Cancel:
    """{"type": "cancel", "id"?}: the cancelled job's final message answers it; no reply of its own."""

    id: str | None = None
    type = "cancel"


@dataclass(frozen=True)
class PixelFile:
    path: str
    width: int
    height: int
    format: str

    @property
    def size(self) -> int:
        """Bytes the file must hold."""
        return frame_size(self.width, self.height, self.format)


@dataclass(frozen=True)
class StyleSpec:
    path: str
    weight: float = 1.0


@dataclass(frozen=True)
class JobOptions:
    """A stylize request's "options"; None means the preset's (or the engine's) own value."""

    preset: str = "normal"
    strength: float = 1.0  # the engine's: 0 gives the content, 1 its default
    max_size: int | None = None  # absent or null: the preset's
    preserve_colors: str = "none"
    device: str = "auto"
    seed: int | None = 0
    steps: int | None = None  # absent or null: the preset's (the GIMP preview sends fewer)


@dataclass(frozen=True)
class Stylize:
    """{"type": "stylize", ...}: progress messages, then one Result, Error or Cancelled."""

    id: str
    content: PixelFile
    output: str
    styles: tuple[StyleSpec, ...]
    options: JobOptions = field(default_factory=JobOptions)
    workdir: str | None = None
    type = "stylize"


Request = Hello | Cancel | Stylize


def parse_request(line: bytes | str) -> Request:
    """One request line, fully checked; ProtocolError (with the request's id, if any) otherwise."""
    message = decode(line)
    job_id = _id(message)
    parser = REQUESTS.get(message["type"])
    if parser is None:
        raise ProtocolError(f'unknown request type "{_cut(message["type"])}"', job_id)
    try:
        return parser(message, job_id)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), job_id) from None


def _id(message: dict[str, Any]) -> str | None:
    job_id = message.get("id")
    if job_id is None or (isinstance(job_id, str) and 0 < len(job_id) <= ID_MAX_CHARS):
        return job_id
    raise ProtocolError(
        f'"id" must be a string of 1 to {ID_MAX_CHARS} characters, not {_shown(job_id)}'
    )


def _parse_hello(message: dict[str, Any], job_id: str | None) -> Hello:
    _only(message, ("type", "id", "protocol"), "hello")
    return Hello(protocol=number(message.get("protocol", 1), "hello.protocol"))


def _parse_cancel(message: dict[str, Any], job_id: str | None) -> Cancel:
    _only(message, ("type", "id"), "cancel")
    return Cancel(id=job_id)


def _parse_stylize(message: dict[str, Any], job_id: str | None) -> Stylize:
    _only(message, ("type", "id", "content", "output", "styles", "options", "workdir"), "stylize")
    workdir = message.get("workdir")
    if workdir is not None:
        _path(workdir, "workdir")
    return Stylize(
        id=job_id if job_id is not None else "job",
        content=_content(_object(message.get("content"), "content")),
        output=_path(_object(message.get("output"), "output").get("path"), "output.path"),
        styles=_styles(message.get("styles")),
        options=_options(_object(message.get("options", {}), "options")),
        workdir=workdir,
    )


REQUESTS: dict[str, Callable[[dict[str, Any], str | None], Request]] = {
    "hello": _parse_hello,
    "cancel": _parse_cancel,
    "stylize": _parse_stylize,
}


def _content(spec: dict[str, Any]) -> PixelFile:
    fmt = spec.get("format")
    if not isinstance(fmt, str) or fmt not in PIXEL_FORMATS:
        raise ProtocolError(
            f'"content.format" must be one of {", ".join(PIXEL_FORMATS)}, not {_shown(fmt)}'
        )
    return PixelFile(
        path=_path(spec.get("path"), "content.path"),
        width=number(spec.get("width"), "content.width"),
        height=number(spec.get("height"), "content.height"),
        format=fmt,
    )


def _styles(specs: Any) -> tuple[StyleSpec, ...]:
    if not isinstance(specs, list) or not specs:
        raise ProtocolError('"styles" must be a non-empty list of {"path", "weight"}')
    styles = tuple(
        StyleSpec(
            path=_path(_object(spec, "styles[]").get("path"), "styles.path"),
            weight=float(number(spec.get("weight", 1.0), "styles.weight")),
        )
        for spec in specs
    )
    if sum(style.weight for style in styles) <= 0.0:
        raise ProtocolError("at least one style weight must be > 0")
    return styles


def _options(options: dict[str, Any]) -> JobOptions:
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ProtocolError(
            f'unknown option "{_cut(unknown[0])}" (known: {", ".join(OPTION_NAMES)})'
        )
    if "style_strength" in options:  # the name plug-ins installed before "strength" still send
        options = {"strength": options["style_strength"], **options}
        del options["style_strength"]
    strength = number(options.get("strength"), "options.strength")
    return JobOptions(
        preset=_choice(options.get("preset", "normal"), PRESETS, "options.preset"),
        strength=1.0 if strength is None else float(strength),
        max_size=number(options.get("max_size"), "options.max_size"),
        preserve_colors=_choice(
            options.get("preserve_colors", "none"), PRESERVE, "options.preserve_colors"
        ),
        device=_choice(options.get("device", "auto"), DEVICES, "options.device"),
        seed=number(options.get("seed", 0), "options.seed"),
        steps=number(options.get("steps"), "options.steps"),
    )


OPTION_NAMES = (
    "preset",
    "strength",
    "style_strength",  # the older name of "strength", still read
    "max_size",
    "preserve_colors",
    "device",
    "seed",
    "steps",
)


def _choice(value: Any, choices: Any, name: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ProtocolError(f'"{name}" must be one of {", ".join(choices)}, not {_shown(value)}')
    return value


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f'"{name}" must be an object, not {_shown(value)}')
    return value


def _path(value: Any, name: str) -> str:
    """A path as the request gives it: a non-empty string without NUL (the OS can't take one)."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise ProtocolError(
            f'"{name}" must be a file path (a non-empty string), not {_shown(value)}'
        )
    return value


def _only(message: dict[str, Any], fields: tuple[str, ...], kind: str) -> None:
    unknown = sorted(set(message) - set(fields))
    if unknown:
        raise ProtocolError(f'unknown field "{_cut(unknown[0])}" in a "{kind}" request')


def _cut(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------- replies


def hello_reply(onnxstyle: str, python: str, providers: list[str]) -> dict[str, Any]:
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "onnxstyle": onnxstyle,
        "python": python,
        "providers": list(providers),
    }


def progress(
    job_id: str,
    scale: int,
    scales: int,
    step: int,
    steps: int,
    loss: float | None,
    eta_s: float | None,
) -> dict[str, Any]:
    """A progress line (scale and step 1-based; loss and eta_s null unless finite)."""
    fraction = min(max(((scale - 1) + step / steps) / scales, 0.0), 1.0)
    return {
        "type": "progress",
        "id": job_id,
        "scale": scale,
        "scales": scales,
        "step": step,
        "steps": steps,
        "fraction": round(fraction, 4),
        "loss": _finite_or_none(loss),
        "eta_s": _finite_or_none(eta_s),
        "text": progress_text(scale, scales, step, steps),
    }


def result(
    job_id: str, path: str, width: int, height: int, fmt: str, seconds: float
) -> dict[str, Any]:
    return {
        "type": "result",
        "id": job_id,
        "path": path,
        "width": width,
        "height": height,
        "format": fmt,
        "seconds": round(seconds, 3),
    }


def cancelled(job_id: str) -> dict[str, Any]:
    return {"type": "cancelled", "id": job_id}


def error(job_id: str | None, kind: ErrorKind | str, message: str) -> dict[str, Any]:
    """An error message; the text is forced onto one line."""
    kind = ErrorKind(kind)
    line = " ".join(str(message).split()) or kind.value
    return {"type": "error", "id": job_id, "kind": kind.value, "message": line}


def _finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity (encode refuses them)."""
    return float(value) if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------------------------- lines


def encode(message: dict[str, Any]) -> bytes:
    """One message as one JSON line (no raw newlines inside: json escapes them)."""
    return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a message dict with a string "type"."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON line: {_cut(str(exc))}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    return message


def frame_size(width: int, height: int, fmt: str) -> int:
    """Bytes in a pixel file of this size and format."""
    channels, depth = PIXEL_FORMATS[fmt]
    return width * height * channels * depth


def progress_text(scale: int, scales: int, step: int, steps: int) -> str:
    """The text an editor shows next to its progress bar."""
    return f"Neural style: scale {scale}/{scales}, step {step}/{steps}"
