"""Replies (worker -> editor): built by the worker with the functions below, read by an editor
with `parse_reply` at the one place it reads a line (plugin/client.py).

The builders return the JSON object to `encode`; `parse_reply` turns a decoded object back into
a HelloReply, Pong, Progress, Result, Cancelled or Error (messages.py), checking what the editor
relies on (a worker's line is not trusted blindly) and ignoring fields it doesn't know, so a newer
worker's additions don't break an older editor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .checks import INT_MAX, Number, ProtocolError, shown
from .frames import MAX_FRAME_BYTES, PIXEL_FORMATS, finite_or_none, frame_size
from .messages import (
    PROTOCOL_VERSION,
    Cancelled,
    Error,
    ErrorKind,
    HelloReply,
    Pong,
    Progress,
    Reply,
    Result,
)

# ---------------------------------------------------------------------------------- building


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
        "loss": finite_or_none(loss),
        "eta_s": finite_or_none(eta_s),
        "text": progress_text(scale, scales, step, steps),
    }


def progress_text(scale: int, scales: int, step: int, steps: int) -> str:
    """The text an editor shows next to its progress bar."""
    return f"Neural style: scale {scale}/{scales}, step {step}/{steps}"


def result(
    job_id: str,
    path: str | None,
    width: int,
    height: int,
    fmt: str,
    seconds: float,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The result: written to `path`, or (path None) in the frame that follows this line; `notes`:
    one-line notes for the user that came with it (a frame whose optical flow failed)."""
    message: dict[str, Any] = {"type": "result", "id": job_id}
    if path is not None:
        message["path"] = path
    message.update(width=width, height=height, format=fmt, seconds=round(seconds, 3))
    if notes:
        message["notes"] = [" ".join(str(note).split()) for note in notes]
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


# ---------------------------------------------------------------------------------- reading

_COUNT = Number(integer=True, minimum=0, maximum=INT_MAX)
_SECONDS = Number(integer=False, minimum=0.0, maximum=math.inf)


def parse_reply(message: dict[str, Any]) -> Reply:
    """A decoded reply (frames.decode) as its dataclass; ProtocolError if it is not one this
    editor can use (an unknown type, a missing or mistyped field)."""
    reader = REPLIES.get(message.get("type"))
    if reader is None:
        raise ProtocolError(f"not a reply this editor knows: {shown(message.get('type'))}")
    job_id = message.get("id")
    if job_id is not None and not isinstance(job_id, str):
        raise ProtocolError(f'a reply\'s "id" must be a string, not {shown(job_id)}')
    return reader(message, job_id)


def _text(message: dict[str, Any], name: str, default: str | None = None) -> str:
    value = message.get(name, default)
    if not isinstance(value, str):
        raise ProtocolError(f'a {message["type"]} reply\'s "{name}" must be a string')
    return value


def _count(message: dict[str, Any], name: str, default: int | None = None) -> int:
    return _COUNT.count(message.get(name, default), f"{message['type']}.{name}")


def _finite(message: dict[str, Any], name: str) -> float | None:
    value = message.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _hello(message: dict[str, Any], job_id: str | None) -> HelloReply:
    providers = message.get("providers") or []
    devices = message.get("devices") or []
    if not isinstance(providers, list) or not isinstance(devices, list):
        raise ProtocolError('a hello reply\'s "providers" and "devices" must be lists')
    frame_limit = message.get("max_frame_bytes")
    return HelloReply(
        protocol=_count(message, "protocol", 1),
        onnxstyle=str(message.get("onnxstyle")),
        python=str(message.get("python")),
        providers=tuple(str(p) for p in providers),
        devices=tuple(d for d in devices if isinstance(d, dict)),
        files=message.get("files") is True,
        max_frame_bytes=None if frame_limit is None else _count(message, "max_frame_bytes"),
    )


def _pong(message: dict[str, Any], job_id: str | None) -> Pong:
    return Pong(job_id, _count(message, "bytes"), _count(message, "frame", 0))


def _progress(message: dict[str, Any], job_id: str | None) -> Progress:
    scale, scales = _count(message, "scale", 1), max(1, _count(message, "scales", 1))
    step, steps = _count(message, "step", 0), max(1, _count(message, "steps", 1))
    fraction = _finite(message, "fraction")
    return Progress(
        id=job_id,
        scale=scale,
        scales=scales,
        step=step,
        steps=steps,
        fraction=min(max(fraction or 0.0, 0.0), 1.0),
        loss=_finite(message, "loss"),
        eta_s=_finite(message, "eta_s"),
        text=_text(message, "text", progress_text(scale, scales, step, steps)),
    )


def _result(message: dict[str, Any], job_id: str | None) -> Result:
    fmt = _text(message, "format")
    if fmt not in PIXEL_FORMATS:
        raise ProtocolError(f'a result\'s "format" is not a pixel format: {shown(fmt)}')
    path = message.get("path")
    return Result(
        id=job_id,
        width=_count(message, "width"),
        height=_count(message, "height"),
        format=fmt,
        seconds=_SECONDS.real(message.get("seconds", 0.0), "result.seconds"),
        path=None if path is None else _text(message, "path"),
        frame=_count(message, "frame", 0),
        notes=_notes(message),
    )


def _notes(message: dict[str, Any]) -> tuple[str, ...]:
    notes = message.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ProtocolError(f'a result\'s "notes" is not a list of strings: {shown(notes)}')
    return tuple(notes)


def _cancelled(message: dict[str, Any], job_id: str | None) -> Cancelled:
    return Cancelled(job_id)


def _error(message: dict[str, Any], job_id: str | None) -> Error:
    kind = message.get("kind")  # a kind this editor doesn't know is still shown as it came
    return Error(
        id=job_id,
        kind=kind if isinstance(kind, str) and kind else ErrorKind.INTERNAL.value,
        message=_text(message, "message", "?"),
    )


REPLIES: dict[Any, Callable[[dict[str, Any], str | None], Reply]] = {
    "hello": _hello,
    "pong": _pong,
    "progress": _progress,
    "result": _result,
    "cancelled": _cancelled,
    "error": _error,
}
