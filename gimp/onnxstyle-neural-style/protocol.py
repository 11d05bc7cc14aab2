"""The worker protocol, as the plug-in speaks it: its copies of the constants, one function per
request, and the worker's replies as small classes.

GIMP's Python can't import onnxstyle, so the constants are copies of onnxstyle/plugin/protocol.py's
(tests/test_protocol.py reads them with ast and checks them against it). Everything the worker
writes is parsed here, in `read_reply`, the one place where a line is read: the rest of the
plug-in sees Hello, Progress, Result, Error, Cancelled and Pong objects, never dicts. Pure
standard library: no GIMP, so a test can import this file on its own.

A new worker message: a class below and its parser in REPLIES. A new request: a function
beside hello_request. A new stylize option: a field of Options (the worker must know its name).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from errors import log

PROTOCOL_VERSION = 2
# protocol.py's bounds, copied (tests/test_protocol.py keeps them in step)
MAX_FRAME_BYTES = 2136870912  # a frame after a line: larger ones are refused before reading
MAX_STYLE_BYTES = 268435456  # a style image file sent in-band
STYLE_NAME_CHARS = 200  # an in-band style's "name" only labels the worker's messages
SEQUENCE_ID_CHARS = 64  # a sequence's "id" (an animation's frames)
# core/frames.py's default weight of the temporal loss (tests/test_protocol.py keeps it in step)
DEFAULT_TEMPORAL_WEIGHT = 150.0

# ---------------------------------------------------------------- requests (plug-in -> worker)


@dataclass(frozen=True)
class Options:
    """A stylize request's "options" (the worker's OPTION_NAMES; None: the preset's)."""

    preset: str
    strength: float
    max_size: int | None
    preserve_colors: str
    device: str
    seed: int
    steps: int | None = None  # the preview's short schedule; absent for a full run


@dataclass(frozen=True)
class StyleFile:
    path: str
    weight: float  # relative to the other styles'


@dataclass(frozen=True)
class SequenceFrame:
    """Frame `index` (0-based) of the animation `id`: the worker styles it from the previous one."""

    id: str
    index: int
    temporal_weight: float


@dataclass(frozen=True)
class StylizeJob:
    """What a stylize request asks: the content's raw pixel file, where the result goes (when
    the worker shares our files), the styles and the options."""

    id: str
    content: str  # a raw pixel file of ours
    width: int
    height: int
    format: str  # "rgba8" or "rgbaf32"
    output: str  # the result's file, when files are shared
    styles: tuple[StyleFile, ...]
    options: Options
    sequence: SequenceFrame | None = None  # a frame of an animation


def hello_request(probe, nonce):
    """Our hello: protocol 2, with a nonce in a file of ours (`probe`) that the worker can read
    only if it shares our files."""
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "files": {"path": probe, "nonce": nonce}}


def stylize_request(job, frame_sizes=None):
    """The request for `job`: with paths (files shared), or, given `frame_sizes` (the content's
    bytes, then each style file's), with its parts in-band in the frame that follows."""
    options = asdict(job.options)
    if options["steps"] is None:
        del options["steps"]
    content = {"width": job.width, "height": job.height, "format": job.format}
    request = {"type": "stylize", "id": job.id, "content": content, "options": options}
    if job.sequence is not None:
        request["sequence"] = asdict(job.sequence)
    if frame_sizes is None:
        content["path"] = job.content
        request["output"] = {"path": job.output}
        request["styles"] = [{"path": s.path, "weight": s.weight} for s in job.styles]
        return request
    content["bytes"] = frame_sizes[0]
    request["output"] = {"frame": True}
    request["styles"] = [
        {"bytes": size, "name": os.path.basename(s.path)[:STYLE_NAME_CHARS], "weight": s.weight}
        for s, size in zip(job.styles, frame_sizes[1:])
    ]
    request["frame"] = sum(frame_sizes)
    return request


def cancel_request(job_id):
    return {"type": "cancel", "id": job_id}


# ---------------------------------------------------------------- replies (worker -> plug-in)


@dataclass(frozen=True)
class Hello:
    TYPE = "hello"
    id: str | None
    protocol: int  # 1 from a version-1 worker
    files: bool  # the worker shares our files: pixels may travel as temporary files
    providers: tuple[str, ...]  # ONNX Runtime's execution providers there; none: no onnxruntime


@dataclass(frozen=True)
class Progress:
    TYPE = "progress"
    id: str | None
    fraction: float
    text: str
    scale: int | None
    scales: int
    step: int | None
    steps: int | None


@dataclass(frozen=True)
class Result:
    TYPE = "result"
    id: str | None
    width: int
    height: int
    path: str | None  # the result's file (files shared), or None: the pixels came in `data`
    data: bytes | None  # the result's frame (in-band)
    notes: tuple = ()  # one-line notes for the user, each sent once (a frame's flow failed)

    def pixels(self):
        """The result's pixels: its frame, or the file it names."""
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as f:
            return f.read()


@dataclass(frozen=True)
class Error:
    TYPE = "error"
    id: str | None
    kind: str | None  # the worker's ErrorKind value
    message: str


@dataclass(frozen=True)
class Cancelled:
    TYPE = "cancelled"
    id: str | None


@dataclass(frozen=True)
class Pong:
    TYPE = "pong"
    id: str | None
    received: int  # the bytes of the ping's frame the worker read


FINAL_REPLIES = (Result, Error, Cancelled)  # a job's last reply


def _optional_int(value):
    return None if value is None else int(value)


REPLIES = {  # a reply's "type" -> its class, from the JSON object and its frame's bytes
    "hello": lambda m, data: Hello(
        id=m.get("id"),
        protocol=m.get("protocol", 1),
        files=m.get("files") is True,
        providers=tuple(m.get("providers") or ()),
    ),
    "progress": lambda m, data: Progress(
        id=m.get("id"),
        fraction=float(m.get("fraction") or 0.0),
        text=str(m.get("text") or ""),
        scale=_optional_int(m.get("scale")),
        scales=int(m.get("scales") or 1),
        step=_optional_int(m.get("step")),
        steps=_optional_int(m.get("steps")),
    ),
    "result": lambda m, data: Result(
        id=m.get("id"),
        width=int(m["width"]),
        height=int(m["height"]),
        path=m["path"] if data is None else None,
        data=data,
        notes=tuple(str(n) for n in m.get("notes") or () if isinstance(n, str)),
    ),
    "error": lambda m, data: Error(
        id=m.get("id"), kind=m.get("kind"), message=m.get("message") or "unknown error"
    ),
    "cancelled": lambda m, data: Cancelled(id=m.get("id")),
    "pong": lambda m, data: Pong(id=m.get("id"), received=int(m.get("bytes") or 0)),
}


def read_reply(stream):
    """The worker's next reply, its frame read with it; None at the end of its output (or when
    it ends inside a frame). Lines that are not JSON objects, and replies of types we don't
    know, are logged and skipped; a frame that can't be trusted is a ValueError."""
    while True:
        line = stream.readline()
        if not line:
            return None
        message = _json_object(line)
        size = frame_size(message)
        data = stream.read(size) if size else None
        if size and len(data) != size:
            return None  # the worker's output ended inside a frame
        if message is not None:
            reply = parse_reply(message, data)
            if reply is not None:
                return reply


def parse_reply(message, data=None):
    """One reply (a JSON object and its frame's bytes) as its class; None (logged) for a type we
    don't know; a malformed reply becomes an Error the user reads."""
    kind = message.get("type")
    parse = REPLIES.get(kind)
    if parse is None:
        log(f"ignored worker message of type {kind!r}")
        return None
    try:
        return parse(message, data)
    except (KeyError, TypeError, ValueError) as exc:
        job_id = message.get("id")
        job_id = job_id if isinstance(job_id, str) else None
        return Error(job_id, "protocol", f"The worker sent a malformed {kind} message ({exc}).")


def _json_object(line):
    """One protocol line as a dict, or None (logged) if it is not a JSON object."""
    try:
        message = json.loads(line)
        if isinstance(message, dict):
            return message
    except ValueError:
        pass
    log(f"ignored worker output: {line[:200]!r}")
    return None


def frame_size(message):
    """The bytes announced after this message ("frame"), 0 if none (or not a protocol line);
    ValueError if not trustworthy."""
    size = message.get("frame", 0) if message is not None else 0
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {size!r} bytes")
    return size


def error_text(kind, message):
    """What the user reads for the worker's error: its line, with a hint for some kinds."""
    if kind == "device":
        return f"{message} (Device 'auto' or 'cpu' always works.)"
    if kind == "internal":
        return f"{message} (please report this)"
    return message
