"""The protocol's message layer: parsers, builders, the one numeric check, and the GIMP plug-in's
copies of its constants (GIMP's Python can't import onnxstyle, so the copies stay; this keeps them
in step)."""

from __future__ import annotations

import ast
import json
import math

import pytest
from helpers import plugin_constants, plugin_definition

from onnxstyle.core.engine import PRESERVE_COLORS, PRESETS
from onnxstyle.core.frames import DEFAULT_TEMPORAL_WEIGHT
from onnxstyle.core.runtime import DEVICES
from onnxstyle.plugin import protocol as P


def request(**changes) -> dict:
    base = {
        "type": "stylize",
        "id": "j",
        "content": {"path": "c.raw", "width": 32, "height": 24, "format": "rgba8"},
        "output": {"path": "o.raw"},
        "styles": [{"path": "s.png", "weight": 1.0}],
        "options": {"preset": "draft", "device": "cpu", "seed": 3, "preserve_colors": "none"},
    }
    base.update(changes)
    return base


def parse(message: dict) -> P.Request:
    return P.parse_request(json.dumps(message))


def test_a_good_stylize_request_parses_to_typed_fields():
    job = parse(request(options={"preset": "high", "max_size": 64, "seed": None}))
    assert isinstance(job, P.Stylize) and job.id == "j"
    assert job.content == P.PixelFile("c.raw", 32, 24, "rgba8") and job.content.size == 32 * 24 * 4
    assert job.styles == (P.StyleSpec("s.png", 1.0),) and job.output == "o.raw"
    assert (job.options.preset, job.options.max_size, job.options.seed) == ("high", 64, None)
    assert parse({"type": "hello", "protocol": 1}) == P.Hello(1)
    assert parse({"type": "cancel"}) == P.Cancel(None)


def test_an_in_band_request_parses_to_parts_cut_from_its_frame():
    message = request(
        content={"width": 32, "height": 24, "format": "rgb8", "bytes": 32 * 24 * 3},
        styles=[{"path": "s.png"}, {"bytes": 5, "name": "two.jpg", "weight": 2}],
        output={"frame": True},
        frame=32 * 24 * 3 + 5,
    )
    job = parse(message)
    assert job.content.path is None and job.output is None and job.frame == 2309
    assert (
        job.styles[1] == P.StyleSpec(None, 2.0, 5, "two.jpg") and job.styles[1].label == "two.jpg"
    )
    frame = bytes(range(256)) * 9 + bytes(5)
    job = job.with_frame(frame)
    assert bytes(job.content.data) == frame[:2304] and bytes(job.styles[1].data) == frame[2304:]
    assert job.styles[0].data is None
    assert P.frame_length(message) == 2309 and P.frame_length(request()) == 0


def test_hello_answers_in_the_editor_s_version():
    assert parse({"type": "hello", "protocol": 1}).spoken == 1
    assert parse({"type": "hello", "protocol": 7}).spoken == P.PROTOCOL_VERSION
    probe = parse({"type": "hello", "protocol": 2, "files": {"path": "/p", "nonce": "n" * 16}})
    assert probe.files == P.FilesProbe("/p", "n" * 16)
    with pytest.raises(P.ProtocolError, match="nonce"):
        parse({"type": "hello", "protocol": 2, "files": {"path": "/p", "nonce": "short"}})
    assert set(P.hello_reply("0.1", "/py", [], protocol=1)) == {
        "type",
        "protocol",
        "onnxstyle",
        "python",
        "providers",
    }


@pytest.mark.parametrize(
    "value, ok",
    [
        (0, True),
        (2**63 - 1, True),
        (None, True),  # a fresh random seed
        (-5, False),
        (2**63, False),
        (1.0, False),  # an integer field takes no float, even a whole one
        (True, False),  # JSON true is not a number
        ("3", False),
        (10**5000, False),  # more digits than Python prints: still one line
    ],
    ids=lambda value: type(value).__name__ if value == 10**5000 else repr(value),
)
def test_the_numeric_check(value, ok):
    if ok:
        assert P.number(value, "options.seed") == value
    else:
        with pytest.raises(P.ProtocolError) as caught:
            P.number(value, "options.seed")
        assert '"options.seed" must be an integer ≥ 0' in str(caught.value)
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e39, -1.0, "1", False])
def test_weights_must_be_finite_numbers_in_range(value):
    with pytest.raises(P.ProtocolError, match="weight"):
        parse(request(styles=[{"path": "s.png", "weight": value}]))


def test_every_numeric_field_goes_through_the_one_check():
    """A non-number in each field named in NUMBERS is refused, naming the field."""
    for name in P.NUMBERS:
        kind, _, key = name.partition(".")
        if kind in ("hello", "ping"):
            message = {"type": kind, key: "x"}
        elif kind == "frame":
            message = request(frame="x")
        elif kind == "styles":
            message = request(
                styles=[{"path": "s.png", key: "x"} if key != "bytes" else {key: "x"}]
            )
        else:  # content, options, sequence
            message = request(sequence={"id": "a", "index": 0, "temporal_weight": 1.0})
            message[kind] = {
                k: v for k, v in message[kind].items() if k != "path" or key != "bytes"
            }
            message[kind][key] = "x"
        with pytest.raises(P.ProtocolError, match=f'"{name}" must be'):
            parse(message)


def test_errors_keep_the_request_id():
    with pytest.raises(P.ProtocolError) as caught:
        parse(request(options={"colour": "blue"}))
    assert caught.value.id == "j" and "colour" in str(caught.value)


def test_builders_give_one_json_line_each():
    messages = [
        P.hello_reply("0.1.0", "/py", ["CPUExecutionProvider"]),
        P.progress("j", 1, 2, 3, 60, math.nan, None),
        P.result("j", "o.raw", 32, 24, "rgba8", 1.23456),
        P.result("j", None, 32, 24, "rgba8", 1.23456),
        P.pong("p", 10, 20),
        P.cancelled("j"),
        P.error("j", P.ErrorKind.IMAGE, "two\nlines"),
    ]
    for message in messages:
        line = P.encode(message)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert P.decode(line) == message
    assert messages[1]["loss"] is None and messages[1]["fraction"] == round((0 + 3 / 60) / 2, 4)
    assert messages[6] == {"type": "error", "id": "j", "kind": "image", "message": "two lines"}
    assert "path" not in messages[3] and messages[3]["frame"] == 32 * 24 * 4
    assert messages[4] == {"type": "pong", "id": "p", "bytes": 10, "frame": 20}


def test_requests_built_on_the_editors_side_parse_back_to_what_was_built():
    """One builder per request type (the client's), and parse_request (the worker's) agree."""
    on_disk = P.stylize_message(
        "j", P.PixelFile("c.raw", 32, 24, "rgba8"), "o.raw", [P.StyleSpec("s.png", 2.0)], {}
    )
    job = parse(on_disk)
    assert (job.content, job.output, job.styles, job.frame) == (
        P.PixelFile("c.raw", 32, 24, "rgba8"),
        "o.raw",
        (P.StyleSpec("s.png", 2.0),),
        0,
    )
    in_band = P.stylize_message(
        "k",
        P.PixelFile(None, 32, 24, "rgbf32"),
        None,
        [P.StyleSpec(None, 1.0, size=10, name="a.jpg"), P.StyleSpec("b.png", 0.5)],
        {"preset": "draft", "steps": 3},
    )
    job = parse(in_band)
    assert job.output is None and job.frame == 32 * 24 * 12 + 10
    assert job.styles[0] == P.StyleSpec(None, 1.0, 10, "a.jpg") and job.options.engine == (
        ("steps", 3),
    )
    probe = P.FilesProbe("/tmp/probe", "n" * 16)
    assert parse(P.hello_message(probe)) == P.Hello(P.PROTOCOL_VERSION, probe)
    assert parse(P.ping_message("p", 5, 7)) == P.Ping("p", 5, 7)
    assert parse(P.cancel_message("j")) == P.Cancel("j")


def test_replies_are_read_into_their_types():
    """What the worker builds, the editor reads back typed (plugin/client.py's one boundary)."""
    hello = P.parse_reply(P.hello_reply("0.1.0", "/py", ["CPUExecutionProvider"], files=True))
    assert hello == P.HelloReply(
        2, "0.1.0", "/py", ("CPUExecutionProvider",), (), True, P.MAX_FRAME_BYTES
    )
    old = P.parse_reply(P.hello_reply("0.1.0", "/py", [], protocol=1))
    assert (old.protocol, old.files, old.max_frame_bytes) == (1, False, None)
    progress = P.parse_reply(P.progress("j", 1, 2, 3, 60, math.nan, 4.5))
    assert progress == P.Progress(
        "j", 1, 2, 3, 60, round(3 / 120, 4), None, 4.5, "Neural style: scale 1/2, step 3/60"
    )
    assert P.parse_reply(P.result("j", None, 32, 24, "rgba8", 1.5)) == P.Result(
        "j", 32, 24, "rgba8", 1.5, None, 32 * 24 * 4
    )
    assert P.parse_reply(P.pong("p", 10, 20)) == P.Pong("p", 10, 20)
    assert P.parse_reply(P.cancelled("j")) == P.Cancelled("j")
    assert P.parse_reply(P.error(None, "busy", "wait")) == P.Error(None, "busy", "wait")
    for bad in (
        {"type": "upload"},
        {"type": "result", "id": "j", "width": -1, "height": 2, "format": "rgb8"},
        {"type": "result", "id": "j", "width": 1, "height": 2, "format": "png"},
        {"type": "pong", "id": 7, "bytes": 0},
        {"type": "progress", "id": "j", "step": True},
    ):
        with pytest.raises(P.ProtocolError):
            P.parse_reply(bad)


def test_error_kinds_are_plain_words_on_the_wire():
    assert P.ERROR_KINDS == (
        "image",
        "device",
        "model",
        "memory",
        "style",
        "output",
        "busy",
        "protocol",
        "internal",
    )
    assert json.dumps(P.ErrorKind.MEMORY) == '"memory"'
    with pytest.raises(ValueError):
        P.error(None, "oops", "not a kind")


# --------------------------------------------------------------------------- the GIMP plug-in's copies


def _nicks(choices) -> tuple[str, ...]:
    """("nick", "Label") pairs or plain nicks -> the nicks the protocol sees."""
    return tuple(c[0] if isinstance(c, (tuple, list)) else c for c in choices)


def _plugin_option_names() -> set[str]:
    """The keys of the "options" object the plug-in sends: its Options class's fields."""
    _, options = plugin_definition("Options", ast.ClassDef)
    return {
        node.target.id
        for node in options.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _plugin_pixel_formats() -> set[str]:
    """The protocol format names the plug-in's babl_format returns."""
    _, function = plugin_definition("babl_format")
    return {
        node.value.elts[1].value
        for node in ast.walk(function)
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple)
    }


def test_the_gimp_plugin_constants_match_the_worker():
    constants = plugin_constants()
    assert constants["PROTOCOL_VERSION"] == P.PROTOCOL_VERSION
    assert constants["MAX_FRAME_BYTES"] == P.MAX_FRAME_BYTES
    assert constants["MAX_STYLE_BYTES"] == P.MAX_STYLE_BYTES
    assert _nicks(constants["PRESETS"]) == tuple(PRESETS)
    assert constants["SEQUENCE_ID_CHARS"] == P.SEQUENCE_ID_CHARS
    assert constants["DEFAULT_TEMPORAL_WEIGHT"] == DEFAULT_TEMPORAL_WEIGHT
    assert DEFAULT_TEMPORAL_WEIGHT <= constants["TEMPORAL_WEIGHT_MAX"] <= P.WEIGHT_MAX
    assert _nicks(constants["DEVICES"]) == DEVICES
    assert _nicks(constants["PRESERVE"]) == P.PRESERVE
    assert P.PRESERVE == ("none",) + tuple(mode for mode in PRESERVE_COLORS if mode)


def test_the_gimp_plugin_sends_only_options_the_worker_knows():
    assert _plugin_option_names() <= set(P.OPTION_NAMES)
    assert _plugin_pixel_formats() and _plugin_pixel_formats() <= set(P.PIXEL_FORMATS)
