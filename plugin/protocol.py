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
   "options": {"preset": "draft", "style_strength": 1.0, "max_size": 512,
               "preserve_colors": "none", "device": "auto", "seed": 0,
               "steps": 20},                           # optional: the preset's steps a scale
   "workdir": ".../tmpdir"}                          # optional: removed if the editor goes away
      -> zero or more {"type": "progress", "id", "scale", "scales", "step", "steps",
                       "fraction", "loss", "eta_s", "text"}
      -> then exactly one of
         {"type": "result", "id", "path", "width", "height", "format", "seconds"}
         {"type": "error", "id", "kind", "message"}
         {"type": "cancelled", "id"}
  {"type": "cancel", "id": "job-1"}     # "id" optional: cancels the running job, if any
  Closing stdin cancels the running job (within one engine step) and ends the worker.

Errors: "message" is one user-facing line; "kind" is one of ERROR_KINDS. A request that is
not understood gets {"type": "error", "id": <its id or null>, "kind": "protocol", ...}.
A second "stylize" while one runs gets kind "busy": one job at a time.

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
from typing import Any

PROTOCOL_VERSION = 1

# format name -> (channels, bytes per channel)
PIXEL_FORMATS: dict[str, tuple[int, int]] = {
    "rgba8": (4, 1),
    "rgb8": (3, 1),
    "rgbaf32": (4, 4),
    "rgbf32": (3, 4),
}

ERROR_KINDS = (
    "image",  # an input image is missing, unreadable, corrupt or too large
    "device",  # the requested execution provider can't be used here
    "model",  # a shipped model file is missing or broken
    "memory",  # out of memory (host or device)
    "style",  # any other user-facing StyleError
    "busy",  # a job is already running
    "protocol",  # a malformed or unknown request
    "internal",  # a bug: details on the worker's stderr
)


class ProtocolError(ValueError):
    """A request that can't be understood; str() is one line."""


def encode(message: dict[str, Any]) -> bytes:
    """One message as one JSON line (no raw newlines inside: json escapes them)."""
    return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a message dict with a string "type"."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a JSON line: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    return message


def frame_size(width: int, height: int, fmt: str) -> int:
    """Bytes in a pixel file of this size and format."""
    channels, depth = PIXEL_FORMATS[fmt]
    return width * height * channels * depth


def error(job_id: str | None, kind: str, message: str) -> dict[str, Any]:
    """An error message; the text is forced onto one line."""
    line = " ".join(str(message).split()) or kind
    return {"type": "error", "id": job_id, "kind": kind, "message": line}


def progress_text(scale: int, scales: int, step: int, steps: int) -> str:
    """The text an editor shows next to its progress bar."""
    return f"Neural style: scale {scale}/{scales}, step {step}/{steps}"
