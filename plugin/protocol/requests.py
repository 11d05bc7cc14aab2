"""Requests (editor -> worker): each built by one function and parsed, fully checked, by one.

`parse_request` turns a line into a Hello, Ping, Cancel or Stylize (messages.py) or raises a
ProtocolError naming the field; every value is checked before any file is opened, frame byte kept
or model loaded. `hello_message`, `ping_message`, `cancel_message` and `stylize_message` build the
same requests on the editor's side (plugin/client.py, the tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from onnxstyle.core.layers import STYLE_LAYERS
from onnxstyle.core.options import MAX_WEIGHT, OPTIONS, PRESERVE_COLORS, PRESETS

from .checks import (
    ID_MAX_CHARS,
    INT_MAX,
    Number,
    ProtocolError,
    a_label,
    a_path,
    an_object,
    choice,
    cut,
    only,
    shown,
)
from .frames import FRAME, MAX_FRAME_BYTES, MAX_STYLE_BYTES, PIXEL_FORMATS, decode_object
from .messages import (
    PROTOCOL_VERSION,
    Cancel,
    FilesProbe,
    Hello,
    JobOptions,
    Ping,
    PixelFile,
    Request,
    SequenceFrame,
    StyleSpec,
    Stylize,
)

MAX_PING_REPLY = 64 << 20  # a ping's download: enough to time a link, too small to hurt
NONCE_CHARS = (16, 128)  # a hello's files probe: a nonce of this many characters
NONCE_FILE_BYTES = 256  # the probe file is read with this bound
SEQUENCE_ID_CHARS = 64  # a sequence's "id": the worker keeps it, the editor names its animation

# The options a request may set, as core/options.py declares them (absent or null: the preset's).
# JobOptions' own are the editor's everyday ones; the rest (ENGINE_OPTIONS) are StyleOptions
# overrides of the same name.
WIRE_OPTIONS = {name: option for name, option in OPTIONS.items() if option.wire}
JOB_OPTIONS = ("strength", "max_size", "preserve_colors", "device", "seed")
ENGINE_OPTIONS = tuple(name for name in WIRE_OPTIONS if name not in JOB_OPTIONS)
ENGINE_CHOICES = {
    name: OPTIONS[name].choices for name in ENGINE_OPTIONS if not OPTIONS[name].number
}
ENGINE_NUMBERS = tuple(n for n in ENGINE_OPTIONS if OPTIONS[n].number and not OPTIONS[n].count)
SEED_MAX = OPTIONS["seed"].limits.maximum
WEIGHT_MAX = MAX_WEIGHT  # the engine's: weights and strengths are float32 graph inputs
STEPS_MAX = OPTIONS["steps"].limits.maximum
PRESERVE = tuple(OPTIONS["preserve_colors"].none_word if c is None else c for c in PRESERVE_COLORS)
OPTION_NAMES = (
    "preset",
    *JOB_OPTIONS,
    "style_strength",  # the older name of "strength", still read
    *ENGINE_OPTIONS,
)

# Every numeric field of a request, by its dotted name: checked by `number`, nowhere else.
NUMBERS: dict[str, Number] = {
    "frame": FRAME,
    "hello.protocol": Number(integer=True, minimum=1, maximum=1000),
    "ping.reply_bytes": Number(integer=True, minimum=0, maximum=MAX_PING_REPLY),
    "content.width": Number(integer=True, minimum=1, maximum=INT_MAX),
    "content.height": Number(integer=True, minimum=1, maximum=INT_MAX),
    "content.bytes": Number(integer=True, minimum=1, maximum=MAX_FRAME_BYTES),
    "styles.weight": Number(integer=False, minimum=0.0, maximum=WEIGHT_MAX),
    "styles.bytes": Number(integer=True, minimum=1, maximum=MAX_STYLE_BYTES),
    "sequence.index": Number(integer=True, minimum=0, maximum=INT_MAX),
    "sequence.temporal_weight": Number(integer=False, minimum=0.0, maximum=WEIGHT_MAX),
    # the options: core/options.py's ranges; a list's items are numbers, never null
    **{
        f"options.{name}": Number.of(option.number, nullable=option.count == 0)
        for name, option in WIRE_OPTIONS.items()
        if option.number is not None
    },
}


def number(value: Any, name: str) -> Any:
    """`value` checked against NUMBERS[name]; ProtocolError (one line) otherwise."""
    return NUMBERS[name].check(value, name)


# ---------------------------------------------------------------------------------- building


def hello_message(files: FilesProbe | None = None, protocol: int = PROTOCOL_VERSION) -> dict:
    """A hello; `files`: the probe file the editor wrote its nonce into."""
    message: dict[str, Any] = {"type": "hello", "protocol": protocol}
    if files is not None:
        message["files"] = {"path": files.path, "nonce": files.nonce}
    return message


def ping_message(id: str | None, frame: int = 0, reply_bytes: int = 0) -> dict:
    """A ping carrying `frame` bytes, asking for `reply_bytes` back."""
    message: dict[str, Any] = {"type": "ping", "id": id, "reply_bytes": reply_bytes}
    if frame:
        message["frame"] = frame
    return message


def cancel_message(id: str | None) -> dict:
    """Cancel job `id` (None: whatever runs)."""
    return {"type": "cancel", "id": id}


def stylize_message(
    id: str,
    content: PixelFile,
    output: str | None,
    styles: Sequence[StyleSpec],
    options: Mapping[str, Any],
    sequence: SequenceFrame | None = None,
) -> dict:
    """A stylize request; parts without a path go in-band (the frame: content, then styles, in
    order), and `output` None asks for the result's frame; `sequence`: a frame of an animation."""
    spec: dict[str, Any] = {"width": content.width, "height": content.height}
    spec["format"] = content.format
    if content.path is not None:
        spec["path"] = content.path
    else:
        spec["bytes"] = content.size
    message: dict[str, Any] = {"type": "stylize", "id": id, "content": spec}
    message["output"] = {"frame": True} if output is None else {"path": output}
    message["styles"] = [_style_message(style) for style in styles]
    message["options"] = dict(options)
    if sequence is not None:
        message["sequence"] = {
            "id": sequence.id,
            "index": sequence.index,
            "temporal_weight": sequence.temporal_weight,
        }
    frame = (content.size if content.path is None else 0) + sum(
        style.frame_bytes for style in styles
    )
    if frame:
        message["frame"] = frame
    return message


def _style_message(style: StyleSpec) -> dict[str, Any]:
    if style.path is not None:
        return {"path": style.path, "weight": style.weight}
    message: dict[str, Any] = {"bytes": style.size, "weight": style.weight}
    if style.name is not None:
        message["name"] = style.name[:ID_MAX_CHARS]
    return message


# ---------------------------------------------------------------------------------- parsing


def parse_request(line: bytes | str | dict[str, Any]) -> Request:
    """One request (a line, or its decoded object), fully checked; ProtocolError (with the
    request's id, if any) otherwise."""
    message = line if isinstance(line, dict) else decode_object(line)
    if not isinstance(message.get("type"), str):
        raise ProtocolError('a message must be a JSON object with a string "type"')
    job_id = _id(message)
    parser = REQUESTS.get(message["type"])
    if parser is None:
        raise ProtocolError(f'unknown request type "{cut(message["type"])}"', job_id)
    try:
        return parser(message, job_id)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), job_id) from None


def _id(message: dict[str, Any]) -> str | None:
    job_id = message.get("id")
    return None if job_id is None else a_label(job_id, "id")


def _parse_hello(message: dict[str, Any], job_id: str | None) -> Hello:
    only(message, ("type", "id", "protocol", "files"), "hello")
    probe = message.get("files")
    if probe is not None:
        probe = an_object(probe, "files")
        nonce = probe.get("nonce")
        low, high = NONCE_CHARS
        if not isinstance(nonce, str) or not low <= len(nonce) <= high:
            raise ProtocolError(
                f'"files.nonce" must be a string of {low} to {high} characters, not {shown(nonce)}'
            )
        probe = FilesProbe(path=a_path(probe.get("path"), "files.path"), nonce=nonce)
    return Hello(protocol=number(message.get("protocol", 1), "hello.protocol"), files=probe)


def _parse_ping(message: dict[str, Any], job_id: str | None) -> Ping:
    only(message, ("type", "id", "frame", "reply_bytes"), "ping")
    return Ping(
        id=job_id,
        frame=number(message.get("frame", 0), "frame"),
        reply_bytes=number(message.get("reply_bytes", 0), "ping.reply_bytes"),
    )


def _parse_cancel(message: dict[str, Any], job_id: str | None) -> Cancel:
    only(message, ("type", "id"), "cancel")
    return Cancel(id=job_id)


def _parse_stylize(message: dict[str, Any], job_id: str | None) -> Stylize:
    only(
        message,
        ("type", "id", "content", "output", "styles", "options", "workdir", "frame", "sequence"),
        "stylize",
    )
    sequence = message.get("sequence")
    workdir = message.get("workdir")
    if workdir is not None:
        a_path(workdir, "workdir")
    request = Stylize(
        id=job_id if job_id is not None else "job",
        content=_content(an_object(message.get("content"), "content")),
        output=_output(an_object(message.get("output"), "output")),
        styles=_styles(message.get("styles")),
        options=_options(an_object(message.get("options", {}), "options")),
        workdir=workdir,
        frame=number(message.get("frame", 0), "frame"),
        sequence=None if sequence is None else _sequence(an_object(sequence, "sequence")),
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
    fmt = choice(spec.get("format"), PIXEL_FORMATS, "content.format")
    width = number(spec.get("width"), "content.width")
    height = number(spec.get("height"), "content.height")
    if _file_or_bytes(spec, "content") == "path":
        return PixelFile(a_path(spec["path"], "content.path"), width, height, fmt)
    content = PixelFile(None, width, height, fmt)
    declared = number(spec["bytes"], "content.bytes")
    if declared != content.size:
        raise ProtocolError(
            f'"content.bytes" is {declared}, but {width}x{height} {fmt} is {content.size} bytes'
        )
    return content


def _sequence(spec: dict[str, Any]) -> SequenceFrame:
    """A frame of an animation: which one, of which sequence, and how much it follows the last."""
    unknown = sorted(set(spec) - {"id", "index", "temporal_weight"})
    if unknown:
        raise ProtocolError(f'unknown field "{cut(unknown[0])}" in "sequence"')
    sequence_id = spec.get("id")
    if not isinstance(sequence_id, str) or not 0 < len(sequence_id) <= SEQUENCE_ID_CHARS:
        raise ProtocolError(
            f'"sequence.id" must be a string of 1 to {SEQUENCE_ID_CHARS} characters, '
            f"not {shown(sequence_id)}"
        )
    return SequenceFrame(
        id=sequence_id,
        index=NUMBERS["sequence.index"].count(spec.get("index"), "sequence.index"),
        temporal_weight=NUMBERS["sequence.temporal_weight"].real(
            spec.get("temporal_weight"), "sequence.temporal_weight"
        ),
    )


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
    return a_path(spec.get("path"), "output.path")


def _styles(specs: Any) -> tuple[StyleSpec, ...]:
    if not isinstance(specs, list) or not specs:
        raise ProtocolError('"styles" must be a non-empty list of {"path" or "bytes", "weight"}')
    styles = tuple(_style(an_object(spec, "styles[]")) for spec in specs)
    if sum(style.weight for style in styles) <= 0.0:
        raise ProtocolError("at least one style weight must be > 0")
    return styles


def _style(spec: dict[str, Any]) -> StyleSpec:
    weight = float(number(spec.get("weight", 1.0), "styles.weight"))
    name = spec.get("name")
    if name is not None:
        a_label(name, "styles.name")
    if _file_or_bytes(spec, "styles[]") == "path":
        return StyleSpec(path=a_path(spec["path"], "styles.path"), weight=weight, name=name)
    size = number(spec["bytes"], "styles.bytes")
    return StyleSpec(path=None, weight=weight, size=size, name=name)


def _check_frame(request: Stylize) -> None:
    """The frame is exactly the in-band parts, content first: one length, checked before reading."""
    content = request.content.size if request.content.path is None else 0
    declared = content + sum(style.frame_bytes for style in request.styles)
    if declared != request.frame:
        raise ProtocolError(
            f'"frame" is {request.frame} bytes, but the in-band content and styles are {declared}'
        )


def _options(options: dict[str, Any]) -> JobOptions:
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ProtocolError(
            f'unknown option "{cut(unknown[0])}" (known: {", ".join(OPTION_NAMES)})'
        )
    if "style_strength" in options:  # the name plug-ins installed before "strength" still send
        options = {"strength": options["style_strength"], **options}
        del options["style_strength"]
    strength = number(options.get("strength"), "options.strength")
    return JobOptions(
        preset=choice(options.get("preset", "normal"), PRESETS, "options.preset"),
        strength=1.0 if strength is None else float(strength),
        max_size=number(options.get("max_size"), "options.max_size"),
        preserve_colors=choice(
            options.get("preserve_colors", "none"), PRESERVE, "options.preserve_colors"
        ),
        device=choice(options.get("device", "auto"), OPTIONS["device"].choices, "options.device"),
        seed=number(options.get("seed", 0), "options.seed"),
        engine=_engine_options(options),
    )


def _engine_options(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The ENGINE_OPTIONS given (not null), checked, as (StyleOptions field, value) pairs."""
    found = []
    for name in ENGINE_OPTIONS:
        value = options.get(name)
        if value is None:
            continue
        if name in ENGINE_CHOICES:
            value = choice(value, ENGINE_CHOICES[name], f"options.{name}")
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
            f'"options.style_layer_weights" must be a list of {count} numbers, not {shown(value)}'
        )
    weights = tuple(float(number(v, "options.style_layer_weights")) for v in value)
    if sum(weights) <= 0.0:
        raise ProtocolError('"options.style_layer_weights" must not be all 0')
    return weights
