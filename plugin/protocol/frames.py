"""The wire: one JSON object per line, optionally followed by a binary frame of known length.

The rules themselves (why raw pixels, what a frame holds, what happens when one can't be followed)
are the package docstring's; here are the limits, the line codec and the frame's length.
"""

from __future__ import annotations

import json
import math
from typing import Any

from onnxstyle.core.imageio import MAX_PIXELS

from .checks import ID_MAX_CHARS, FrameError, Number, ProtocolError, cut

# format name -> (channels, bytes per channel)
PIXEL_FORMATS: dict[str, tuple[int, int]] = {
    "rgba8": (4, 1),
    "rgb8": (3, 1),
    "rgbaf32": (4, 4),
    "rgbf32": (3, 4),
}
MAX_LINE_BYTES = 1 << 20  # a request line; a longer one is skipped and answered "protocol"
# A style file sent in-band: far above any real painting's file, bounded so one can't eat memory.
MAX_STYLE_BYTES = 256 << 20
# A whole frame: the largest content (MAX_PIXELS of rgbaf32, 1.6 GB) with two of the largest styles.
MAX_FRAME_BYTES = MAX_PIXELS * 16 + 2 * MAX_STYLE_BYTES
FRAME = Number(integer=True, minimum=0, maximum=MAX_FRAME_BYTES)  # a message's "frame"


def frame_size(width: int, height: int, fmt: str) -> int:
    """Bytes of pixels of this size and format (a pixel file, a frame's part)."""
    channels, depth = PIXEL_FORMATS[fmt]
    return width * height * channels * depth


def frame_length(message: dict[str, Any]) -> int:
    """The bytes that follow this message's line (0 without "frame"); FrameError if "frame" is
    not a length the reader may take: then the next message can't be found."""
    if "frame" not in message:
        return 0
    try:
        return FRAME.count(message["frame"], "frame")
    except ProtocolError as exc:
        job_id = message.get("id")
        known = isinstance(job_id, str) and 0 < len(job_id) <= ID_MAX_CHARS
        raise FrameError(str(exc), job_id if known else None) from None


def encode(message: dict[str, Any]) -> bytes:
    """One message as one JSON line (no raw newlines inside: json escapes them)."""
    return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def decode_object(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a JSON object (its "type" is the parser's business)."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON line: {cut(str(exc))}") from None
    if not isinstance(message, dict):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    return message


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a message dict with a string "type"."""
    message = decode_object(line)
    if not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    return message


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity (encode refuses them)."""
    return float(value) if value is not None and math.isfinite(value) else None
