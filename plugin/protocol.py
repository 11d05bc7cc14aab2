"""The editor worker's protocol: JSON lines on stdin/stdout, pixels in-band or in temporary files.

Version 2. Every message is one JSON object on one line (UTF-8, '\\n'-terminated) with a "type"
field, optionally followed by a binary frame (below). The editor (the GIMP plug-in, the CLI's
--worker) writes requests to the worker's stdin; the worker answers on stdout and writes nothing
else there (its logs go to stderr). Any command that carries stdin and stdout can start it, so
the worker may run on another machine (`ssh gpu-box /venv/bin/python -m
onnxstyle.plugin.worker`): pixels and style files sent in-band need no shared disk, and SSH
gives the authentication and encryption; nothing of ours listens on a port.

Versions. The worker speaks 1 and 2 and answers a "hello" in the highest version that is not
above the editor's, with that version's fields, so a version-1 editor (files only) keeps working
unchanged. An editor that needs version 2 and gets a version-1 answer (or an error refusing its
hello's "files": a version-1 worker) says in one line which side to update.

Frames. A message whose JSON object has "frame": N is followed, right after its '\\n', by exactly
N bytes. The framing is read before anything else of a message: any JSON object may declare
one, and the worker reads the N bytes even when it refuses the request (skipping them in small
pieces, never holding them), so the stream stays in step; a refused request is answered after
its frame. "frame" must be an integer 0..MAX_FRAME_BYTES: any other value leaves the worker no
way to find the next message, so it answers one "protocol" error and exits (status 2). A line
that is not a JSON object declares no frame (it is answered and skipped, as in version 1). A
stream that ends inside a frame is a dropped link: the worker ends as at EOF.

Why raw pixels in frames, not PNG: GIMP's Python has no numpy and encoding PNG in pure Python is
slow; raw pixels need no decoding on either side, and their size is known from the header
(width x height x channels x bytes, at most MAX_PIXELS) before a byte is read or allocated.
Style images travel as their files' bytes (already compressed), decoded by the worker in memory
with the same header-first bounds as files. Compressing a slow link is SSH's job (`ssh -C`).
One frame per message, its parts declared in the JSON: one read of a known size, no per-part
headers to parse.

Requests (editor -> worker)
  {"type": "hello", "protocol": 2, "files": {"path": ".../probe", "nonce": "<16-128 chars>"}}
      -> {"type": "hello", "protocol": 2, "onnxstyle": "0.1.0", "python": "...",
          "providers": ["CPUExecutionProvider", ...],
          "devices": [{"device", "provider", "available", "reason"}, ...],
          "files": true|false, "max_frame_bytes": N}
     Version 1's answer has "type", "protocol": 1, "onnxstyle", "python" and "providers".
     "files" (optional): the editor wrote the nonce into a file in its own temporary folder; the
     worker reads it (a regular file, at most NONCE_FILE_BYTES, opened without blocking) and
     answers "files": true only if it holds exactly the nonce: both sides see the same files, and
     paths (the fast local path) may be used instead of frames.
  {"type": "ping", "id"?: "p", "frame"?: N, "reply_bytes"?: M}
      -> {"type": "pong", "id", "bytes": N} (+ "frame": M and M zero bytes when M > 0)
     Measures the link (`onnxstyle gimp doctor`: round trip, upload and download MB/s).
  {"type": "stylize", "id": "job-1", "frame": N,     # "frame" only when parts are in-band
   "content": {"width": W, "height": H, "format": "rgba8",
               "path": ".../content.raw"  or  "bytes": W*H*4},   # a pixel file, or in the frame
   "output":  {"path": ".../result.raw"}  or  {"frame": true},  # a file, or the result's frame
   "styles":  [{"path": "style.jpg", "weight": 1.0}            # image files, or their bytes:
               or {"bytes": B, "name": "style.jpg", "weight": 1.0}, ...],  # weights relative
   "options": {"preset": "draft", "strength": 1.0, "max_size": 512,
               "preserve_colors": "none", "device": "auto", "seed": 0, ...},
   "workdir": ".../tmpdir"}                          # optional, ignored (see "Files")
     The frame holds the in-band parts in request order (the content, then each in-band style)
     and is exactly the sum of their "bytes"; the content's "bytes" is W x H x channels x bytes; a
     style's "bytes" at most MAX_STYLE_BYTES; its "name" only labels messages. Options besides
     those above (ENGINE_OPTIONS: StyleOptions' own names; absent or null: the preset's): steps,
     scales, min_size, content_weight, style_weight, tv_weight, style_layer_weights (5 numbers),
     style_scale, init ("content" or "noise"), optimizer, learning_rate, pooling,
     tile_budget_mpx, tile_overlap.
      -> zero or more {"type": "progress", "id", "scale", "scales", "step", "steps",
                       "fraction", "loss", "eta_s", "text"}
      -> then exactly one of
         {"type": "result", "id", "path", "width", "height", "format", "seconds"}
         {"type": "result", "id", "width", "height", "format", "seconds", "frame": N}
             (output in-band: N = W x H x channels x bytes of the content's format follow)
         {"type": "error", "id", "kind", "message"}
         {"type": "cancelled", "id"}
  {"type": "cancel", "id": "job-1"}     # "id" optional: cancels the running job, if any
  Closing stdin cancels the running job (within one engine step) and ends the worker.

Errors: "message" is one user-facing line; "kind" is an ErrorKind value. A request that is
not understood gets {"type": "error", "id": <its id or null>, "kind": "protocol", ...}: a line
that is not a JSON object, an unknown "type", field or option, a missing field, a value of the
wrong type (true/false is not a number), a number that is not finite or out of its range
(NUMBERS), a frame whose length does not match its parts. Every value is checked before any file
is opened, any frame byte kept or any model loaded; the content's pixel count before its frame is
read (kind "image").

One job at a time, one worker for many jobs. A second "stylize" while one runs gets kind "busy"
(its frame skipped), except right after a "cancel" of the running job: then it waits (one at
most; another gets "busy") and starts as soon as the cancelled job has sent its final message,
so an editor may send "cancel" and the next "stylize" at once and reads the old job's final
message first. A "stylize" sent after a job's final message never finds the worker busy. The
worker keeps the loaded model sessions between jobs, so a later job (another size, the same
device) starts at once. Progress lines come from the job's thread: a header and its frame are
written under one lock, so nothing comes between them.

Files: what the worker may touch. It reads the content pixel file and the style images a request
names, and writes the output file, never through a fixed temporary name: a new file made with
O_EXCL (mkstemp) beside the output, renamed over it when whole, removed on any failure or
cancel. It never removes or changes any other path a request names: "workdir" (sent by
version-1 editors) is accepted and ignored, and the editor removes its own temporary folder.
In-band parts stay in memory: the worker makes no folder of its own. Before any work the output
is checked: its folder exists and is writable, it is not a folder, if it exists it is a regular
file, and it is none of the inputs (links resolved); else kind "output". Inputs are opened without
blocking and must be regular files; the content must hold exactly width x height x channels x
bytes (at most MAX_PIXELS) before a byte is read.

Extending: a new request type is a parser added to REQUESTS (and a dataclass); a new reply a
builder below; a new numeric field an entry in NUMBERS; an engine option an ENGINE_OPTIONS entry.

Pixels (PIXEL_FORMATS), in files and frames alike: raw, row-major, top row first, no header, no
padding; interleaved channels R, G, B[, A]; sRGB-encoded values (not linear light); alpha
straight (not premultiplied). "rgba8"/"rgb8": one byte per channel, 0..255. "rgbaf32"/"rgbf32":
float32 little-endian per channel, nominally 0..1. These are GEGL's "R'G'B'A u8", "R'G'B' u8",
"R'G'B'A float" and "R'G'B' float". The worker carries alpha through unchanged and returns the
result in the content's format and size (a file written to a temporary name renamed into place,
so the output file exists only when complete; or the result's frame).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from onnxstyle.core.engine import MAX_SEED, MAX_WEIGHT, PRESERVE_COLORS, PRESETS
from onnxstyle.core.imageio import MAX_PIXELS
from onnxstyle.core.layers import MIN_SIDE, STYLE_LAYERS
from onnxstyle.core.optim import OPTIMISERS
from onnxstyle.core.runtime import DEVICES

PROTOCOL_VERSION = 2
PROTOCOL_VERSIONS = (1, 2)  # what this worker speaks; a hello is answered in the highest ≤ asked

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
# A style file sent in-band: far above any real painting's file, bounded so one can't eat memory.
MAX_STYLE_BYTES = 256 << 20
# A whole frame: the largest content (MAX_PIXELS of rgbaf32, 1.6 GB) with two of the largest styles.
MAX_FRAME_BYTES = MAX_PIXELS * 16 + 2 * MAX_STYLE_BYTES
MAX_PING_REPLY = 64 << 20  # a ping's download: enough to time a link, too small to hurt
NONCE_CHARS = (16, 128)  # a hello's files probe: a nonce of this many characters
NONCE_FILE_BYTES = 256  # the probe file is read with this bound


class ProtocolError(ValueError):
    """A request that can't be understood; str() is one line. `id` is the request's, if known."""

    def __init__(self, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.id = id


class FrameError(ProtocolError):
    """A "frame" that is not a length the worker may read: the next message can't be found."""


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


INT_MAX = 2**31 - 1  # sizes and counts: far above any image or run, and every front end's int


def _count(minimum: int) -> Number:
    return Number(integer=True, minimum=minimum, maximum=INT_MAX, nullable=True)


def _weight(above_zero: bool = False) -> Number:
    return Number(
        integer=False, minimum=0.0, maximum=WEIGHT_MAX, above_minimum=above_zero, nullable=True
    )


# Every numeric field of a request, by its dotted name: checked by `number`, nowhere else.
NUMBERS: dict[str, Number] = {
    "frame": Number(integer=True, minimum=0, maximum=MAX_FRAME_BYTES),
    "hello.protocol": Number(integer=True, minimum=1, maximum=1000),
    "ping.reply_bytes": Number(integer=True, minimum=0, maximum=MAX_PING_REPLY),
    "content.width": Number(integer=True, minimum=1, maximum=INT_MAX),
    "content.height": Number(integer=True, minimum=1, maximum=INT_MAX),
    "content.bytes": Number(integer=True, minimum=1, maximum=MAX_FRAME_BYTES),
    "styles.weight": Number(integer=False, minimum=0.0, maximum=WEIGHT_MAX),
    "styles.bytes": Number(integer=True, minimum=1, maximum=MAX_STYLE_BYTES),
    "options.strength": _weight(),
    "options.max_size": _count(MIN_SIDE),
    "options.seed": Number(integer=True, minimum=0, maximum=SEED_MAX, nullable=True),
    # engine options (ENGINE_OPTIONS): the same ranges as the CLI's flags
    "options.steps": Number(integer=True, minimum=1, maximum=STEPS_MAX, nullable=True),
    "options.scales": _count(1),
    "options.min_size": _count(1),
    "options.tile_overlap": _count(0),
    "options.content_weight": _weight(),
    "options.style_weight": _weight(),
    "options.tv_weight": _weight(),
    "options.style_layer_weights": Number(integer=False, minimum=0.0, maximum=WEIGHT_MAX),
    "options.style_scale": _weight(above_zero=True),
    "options.learning_rate": _weight(above_zero=True),
    "options.tile_budget_mpx": _weight(above_zero=True),
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
class FilesProbe:
    """A hello's "files": the nonce the editor wrote into `path`."""

    path: str
    nonce: str


@dataclass(frozen=True)
class Hello:
    """{"type": "hello", "protocol": N, "files"?}: answered by hello_reply in version `spoken`."""

    protocol: int | None = None
    files: FilesProbe | None = None
    type = "hello"

    @property
    def spoken(self) -> int:
        """The version the answer uses: the highest this side speaks that is ≤ the editor's."""
        asked = self.protocol or 1
        return max(v for v in PROTOCOL_VERSIONS if v <= asked)


@dataclass(frozen=True)
class Ping:
    """{"type": "ping", "frame"?: N, "reply_bytes"?: M}: a pong with N, and M bytes back."""

    id: str | None = None
    frame: int = 0
    reply_bytes: int = 0
    type = "ping"


@dataclass(frozen=True)
class Cancel:
    """{"type": "cancel", "id"?}: the cancelled job's final message answers it; no reply of its own."""

    id: str | None = None
    type = "cancel"


@dataclass(frozen=True)
class PixelFile:
    """The content: a raw pixel file at `path`, or (path None) the first `size` bytes of the
    request's frame, in `data` once the frame is read."""

    path: str | None
    width: int
    height: int
    format: str
    data: Any = field(default=None, repr=False, compare=False)  # a bytes-like view of the frame

    @property
    def size(self) -> int:
        """Bytes the file (or the frame's part) must hold."""
        return frame_size(self.width, self.height, self.format)


@dataclass(frozen=True)
class StyleSpec:
    """A style image: a file at `path`, or (path None) `size` bytes of the frame, in `data` once
    read; `name` labels it in messages."""

    path: str | None
    weight: float = 1.0
    size: int | None = None
    name: str | None = None
    data: Any = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """How messages name it: its path, or the name the editor gave its bytes."""
        return self.path if self.path is not None else (self.name or "the style sent in-band")


# Engine options a request may set beyond JobOptions' own: StyleOptions fields of the same name,
# each a number (NUMBERS["options.<name>"]) or a choice; absent or null: the preset's.
ENGINE_CHOICES: dict[str, tuple[str, ...]] = {
    "init": ("content", "noise"),  # a start image from a file would need the worker's disk
    "optimizer": tuple(OPTIMISERS),
    "pooling": ("avg", "max"),
}
ENGINE_NUMBERS = (
    "steps",
    "scales",
    "min_size",
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_scale",
    "learning_rate",
    "tile_budget_mpx",
    "tile_overlap",
)
ENGINE_OPTIONS = ENGINE_NUMBERS + ("style_layer_weights",) + tuple(ENGINE_CHOICES)


@dataclass(frozen=True)
class JobOptions:
    """A stylize request's "options"; None means the preset's (or the engine's) own value.
    `engine`: the ENGINE_OPTIONS given, as StyleOptions overrides."""

    preset: str = "normal"
    strength: float = 1.0  # the engine's: 0 gives the content, 1 its default
    max_size: int | None = None  # absent or null: the preset's
    preserve_colors: str = "none"
    device: str = "auto"
    seed: int | None = 0
    engine: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Stylize:
    """{"type": "stylize", ...}: progress messages, then one Result, Error or Cancelled.
    `output` None: the result goes back in the result's frame."""

    id: str
    content: PixelFile
    output: str | None
    styles: tuple[StyleSpec, ...]
    options: JobOptions = field(default_factory=JobOptions)
    workdir: str | None = None
    frame: int = 0
    type = "stylize"

    def with_frame(self, data: Any) -> Stylize:
        """The request with its in-band parts' `data` cut from the frame (length already checked)."""
        view, at = memoryview(data), 0
        content = self.content
        if content.path is None:
            content, at = replace(content, data=view[: content.size]), content.size
        styles = []
        for style in self.styles:
            if style.path is None:
                style, at = replace(style, data=view[at : at + style.size]), at + style.size
            styles.append(style)
        assert at == len(view), "with_frame: the frame's length was checked by the parser"
        return replace(self, content=content, styles=tuple(styles))


Request = Hello | Ping | Cancel | Stylize


def frame_length(message: dict[str, Any]) -> int:
    """The bytes that follow this message's line (0 without "frame"); FrameError if "frame" is
    not a length the reader may take: then the next message can't be found."""
    if "frame" not in message:
        return 0
    try:
        return number(message["frame"], "frame")
    except ProtocolError as exc:
        raise FrameError(str(exc), _id_or_none(message)) from None


def parse_request(line: bytes | str | dict[str, Any]) -> Request:
    """One request (a line, or its decoded object), fully checked; ProtocolError (with the
    request's id, if any) otherwise."""
    message = line if isinstance(line, dict) else decode_object(line)
    if not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a string "type"')
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


def _id_or_none(message: dict[str, Any]) -> str | None:
    try:
        return _id(message)
    except ProtocolError:
        return None


def _parse_hello(message: dict[str, Any], job_id: str | None) -> Hello:
    _only(message, ("type", "id", "protocol", "files"), "hello")
    probe = message.get("files")
    if probe is not None:
        probe = _object(probe, "files")
        nonce = probe.get("nonce")
        low, high = NONCE_CHARS
        if not isinstance(nonce, str) or not low <= len(nonce) <= high:
            raise ProtocolError(
                f'"files.nonce" must be a string of {low} to {high} characters, not {_shown(nonce)}'
            )
        probe = FilesProbe(path=_path(probe.get("path"), "files.path"), nonce=nonce)
    return Hello(protocol=number(message.get("protocol", 1), "hello.protocol"), files=probe)


def _parse_ping(message: dict[str, Any], job_id: str | None) -> Ping:
    _only(message, ("type", "id", "frame", "reply_bytes"), "ping")
    return Ping(
        id=job_id,
        frame=number(message.get("frame", 0), "frame"),
        reply_bytes=number(message.get("reply_bytes", 0), "ping.reply_bytes"),
    )


def _parse_cancel(message: dict[str, Any], job_id: str | None) -> Cancel:
    _only(message, ("type", "id"), "cancel")
    return Cancel(id=job_id)


def _parse_stylize(message: dict[str, Any], job_id: str | None) -> Stylize:
    _only(
        message,
        ("type", "id", "content", "output", "styles", "options", "workdir", "frame"),
        "stylize",
    )
    workdir = message.get("workdir")
    if workdir is not None:
        _path(workdir, "workdir")
    request = Stylize(
        id=job_id if job_id is not None else "job",
        content=_content(_object(message.get("content"), "content")),
        output=_output(_object(message.get("output"), "output")),
        styles=_styles(message.get("styles")),
        options=_options(_object(message.get("options", {}), "options")),
        workdir=workdir,
        frame=number(message.get("frame", 0), "frame"),
    )
    _check_frame(request)
    return request


REQUESTS: dict[str, Callable[[dict[str, Any], str | None], Request]] = {
    "hello": _parse_hello,
    "ping": _parse_ping,
    "cancel": _parse_cancel,
    "stylize": _parse_stylize,
}


def _content(spec: dict[str, Any]) -> PixelFile:
    fmt = spec.get("format")
    if not isinstance(fmt, str) or fmt not in PIXEL_FORMATS:
        raise ProtocolError(
            f'"content.format" must be one of {", ".join(PIXEL_FORMATS)}, not {_shown(fmt)}'
        )
    width = number(spec.get("width"), "content.width")
    height = number(spec.get("height"), "content.height")
    if _file_or_bytes(spec, "content") == "path":
        return PixelFile(_path(spec["path"], "content.path"), width, height, fmt)
    content = PixelFile(None, width, height, fmt)
    declared = number(spec["bytes"], "content.bytes")
    if declared != content.size:
        raise ProtocolError(
            f'"content.bytes" is {declared}, but {width}x{height} {fmt} is {content.size} bytes'
        )
    return content


def _file_or_bytes(spec: dict[str, Any], name: str) -> str:
    """Which of "path" (a file) and "bytes" (in the frame) a part has: exactly one."""
    if ("path" in spec) == ("bytes" in spec):
        raise ProtocolError(
            f'"{name}" needs either "path" (a file) or "bytes" (its length in the frame)'
        )
    return "path" if "path" in spec else "bytes"


def _output(spec: dict[str, Any]) -> str | None:
    """The output file's path, or None for the result's frame ({"frame": true})."""
    if spec.get("frame") is True and "path" not in spec:
        return None
    if "frame" in spec:
        raise ProtocolError('"output" is {"path": ...} (a file) or {"frame": true} (in-band)')
    return _path(spec.get("path"), "output.path")


def _styles(specs: Any) -> tuple[StyleSpec, ...]:
    if not isinstance(specs, list) or not specs:
        raise ProtocolError('"styles" must be a non-empty list of {"path" or "bytes", "weight"}')
    styles = tuple(_style(_object(spec, "styles[]")) for spec in specs)
    if sum(style.weight for style in styles) <= 0.0:
        raise ProtocolError("at least one style weight must be > 0")
    return styles


def _style(spec: dict[str, Any]) -> StyleSpec:
    weight = float(number(spec.get("weight", 1.0), "styles.weight"))
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= ID_MAX_CHARS):
        raise ProtocolError(
            f'"styles.name" must be a string of 1 to {ID_MAX_CHARS} characters, not {_shown(name)}'
        )
    if _file_or_bytes(spec, "styles[]") == "path":
        return StyleSpec(path=_path(spec["path"], "styles.path"), weight=weight, name=name)
    size = number(spec["bytes"], "styles.bytes")
    return StyleSpec(path=None, weight=weight, size=size, name=name)


def _check_frame(request: Stylize) -> None:
    """The frame is exactly the in-band parts, content first: one length, checked before reading."""
    content = request.content.size if request.content.path is None else 0
    declared = content + sum(style.size for style in request.styles if style.path is None)
    if declared != request.frame:
        raise ProtocolError(
            f'"frame" is {request.frame} bytes, but the in-band content and styles are {declared}'
        )


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
        engine=_engine_options(options),
    )


OPTION_NAMES = (
    "preset",
    "strength",
    "style_strength",  # the older name of "strength", still read
    "max_size",
    "preserve_colors",
    "device",
    "seed",
) + ENGINE_OPTIONS


def _engine_options(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The ENGINE_OPTIONS given (not null), checked, as (StyleOptions field, value) pairs."""
    found = []
    for name in ENGINE_OPTIONS:
        value = options.get(name)
        if value is None:
            continue
        if name in ENGINE_CHOICES:
            value = _choice(value, ENGINE_CHOICES[name], f"options.{name}")
        elif name == "style_layer_weights":
            value = _layer_weights(value)
        else:
            value = number(value, f"options.{name}")
            value = value if NUMBERS[f"options.{name}"].integer else float(value)
        found.append((name, value))
    return tuple(found)


def _layer_weights(value: Any) -> tuple[float, ...]:
    count = len(STYLE_LAYERS)
    if not isinstance(value, list) or len(value) != count:
        raise ProtocolError(
            f'"options.style_layer_weights" must be a list of {count} numbers, not {_shown(value)}'
        )
    weights = tuple(float(number(v, "options.style_layer_weights")) for v in value)
    if sum(weights) <= 0.0:
        raise ProtocolError('"options.style_layer_weights" must not be all 0')
    return weights


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


def hello_reply(
    onnxstyle: str,
    python: str,
    providers: list[str],
    *,
    protocol: int = PROTOCOL_VERSION,
    devices: list[dict[str, Any]] | None = None,
    files: bool = False,
) -> dict[str, Any]:
    """A hello answer in version `protocol` (version 1's fields only for a version-1 editor)."""
    reply: dict[str, Any] = {
        "type": "hello",
        "protocol": protocol,
        "onnxstyle": onnxstyle,
        "python": python,
        "providers": list(providers),
    }
    if protocol >= 2:
        reply.update(devices=list(devices or []), files=files, max_frame_bytes=MAX_FRAME_BYTES)
    return reply


def pong(job_id: str | None, received: int, reply_bytes: int = 0) -> dict[str, Any]:
    """A ping's answer; `reply_bytes` zero bytes follow it as its frame."""
    message: dict[str, Any] = {"type": "pong", "id": job_id, "bytes": received}
    if reply_bytes:
        message["frame"] = reply_bytes
    return message


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
    job_id: str, path: str | None, width: int, height: int, fmt: str, seconds: float
) -> dict[str, Any]:
    """The result: written to `path`, or (path None) in the frame that follows this line."""
    message: dict[str, Any] = {"type": "result", "id": job_id}
    if path is not None:
        message["path"] = path
    message.update(width=width, height=height, format=fmt, seconds=round(seconds, 3))
    if path is None:
        message["frame"] = frame_size(width, height, fmt)
    return message


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


def decode_object(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a JSON object (its "type" is the parser's business)."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON line: {_cut(str(exc))}") from None
    if not isinstance(message, dict):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    return message


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a message dict with a string "type"."""
    message = decode_object(line)
    if not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    return message


def frame_size(width: int, height: int, fmt: str) -> int:
    """Bytes of pixels of this size and format (a pixel file, a frame's part)."""
    channels, depth = PIXEL_FORMATS[fmt]
    return width * height * channels * depth


def progress_text(scale: int, scales: int, step: int, steps: int) -> str:
    """The text an editor shows next to its progress bar."""
    return f"Neural style: scale {scale}/{scales}, step {step}/{steps}"
