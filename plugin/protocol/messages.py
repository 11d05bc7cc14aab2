"""The messages, typed: what a request or a reply holds once its line has been checked.

Requests (editor -> worker) are built by `requests.py`'s `*_message` functions and parsed by its
`parse_request`; replies (worker -> editor) are built by `replies.py`'s functions and parsed by its
`parse_reply`, at the one place an editor reads a line (plugin/client.py). The fields and their
meaning are the package docstring's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .frames import frame_size

PROTOCOL_VERSION = 2
PROTOCOL_VERSIONS = (1, 2)  # what this worker speaks; a hello is answered in the highest ≤ asked


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

    @property
    def frame_bytes(self) -> int:
        """Bytes of the request's frame it takes: its size when in-band, none for a file."""
        if self.path is not None:
            return 0
        assert self.size is not None, "an in-band style has its size (the parser requires it)"
        return self.size


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
class SequenceFrame:
    """A stylize request's "sequence": frame `index` (0-based) of the animation `id`, styled from
    the previous frame's result with the temporal loss at `temporal_weight` (Ruder et al. 2016)."""

    id: str
    index: int
    temporal_weight: float


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
    sequence: SequenceFrame | None = None  # absent: a picture on its own
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
                end = at + style.frame_bytes
                style, at = replace(style, data=view[at:end]), end
            styles.append(style)
        assert at == len(view), "with_frame: the frame's length was checked by the parser"
        return replace(self, content=content, styles=tuple(styles))


Request = Hello | Ping | Cancel | Stylize


# ---------------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class HelloReply:
    """The answer to a hello. Version 1's has no devices, files or max_frame_bytes."""

    protocol: int
    onnxstyle: str
    python: str
    providers: tuple[str, ...]
    devices: tuple[dict[str, Any], ...] = ()
    files: bool = False  # both sides see the same files: pixels may travel as temporary files
    max_frame_bytes: int | None = None
    type = "hello"


@dataclass(frozen=True)
class Pong:
    """A ping's answer: `bytes` received; `frame` zero bytes follow."""

    id: str | None
    bytes: int
    frame: int = 0
    type = "pong"


@dataclass(frozen=True)
class Progress:
    """A job's progress (scale and step 1-based; loss and eta_s None unless finite)."""

    id: str | None
    scale: int
    scales: int
    step: int
    steps: int
    fraction: float
    loss: float | None
    eta_s: float | None
    text: str
    type = "progress"


@dataclass(frozen=True)
class Result:
    """A job's result: written to `path`, or (path None) in the `frame` bytes that follow."""

    id: str | None
    width: int
    height: int
    format: str
    seconds: float
    path: str | None = None
    frame: int = 0
    notes: tuple[str, ...] = ()  # one-line notes for the user (a frame whose flow failed)
    type = "result"


@dataclass(frozen=True)
class Cancelled:
    """A job's final message after a cancel was honoured."""

    id: str | None
    type = "cancelled"


@dataclass(frozen=True)
class Error:
    """A refused or failed request: `kind` an ErrorKind value, `message` one user-facing line."""

    id: str | None
    kind: str
    message: str
    type = "error"


Reply = HelloReply | Pong | Progress | Result | Cancelled | Error
