"""Hostile and careless input, generated: worker requests and CLI option values (issue 12).

The invariants, for every example:
- the worker answers every request line exactly once (a "cancel" is answered by its job's final
  message), with a well-formed message; kind "internal" never appears;
- frames (protocol 2): whatever a request's frame declares, the bytes after it are read as the
  frame, refused or not, so the answers stay in step; a "frame" that can't be followed, or a
  stream cut inside a frame, is one answer and the end;
- the CLI exits 0 or 2, and an error is one line; never a traceback or exit 1;
- nothing outside the job's own files changes: a sentinel folder of the user's files (also named as
  inputs, outputs and "workdir", through links too) stays as it was, and no .part is left.

Cheap by construction: bad input is refused before any model loads; the worker runs in-process with
its stdin closed right after the requests, so a request good enough to start is cancelled at once,
and the loaded graphs are shared across examples. Examples are fixed (derandomized) so CI runs
the same cases each time.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import read_messages
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from onnxstyle.plugin import cli
from onnxstyle.plugin import protocol as P
from onnxstyle.plugin import worker as W

SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
WORKER_EXAMPLES = 200
CLI_EXAMPLES = 40
GRAPHS = W.GraphCache()  # shared by every example: a model loads once per test session at most


class Place:
    """The job's folder (inputs, outputs) and the user's sentinel folder, made once."""

    def __init__(self, root: Path) -> None:
        self.job = root / "job"
        self.sentinel = root / "precious"
        self.job.mkdir()
        self.sentinel.mkdir()
        (self.sentinel / "notes.txt").write_bytes(b"the user's notes\n")
        Image.new("RGB", (32, 32), (10, 200, 30)).save(self.sentinel / "photo.png")
        self.content = self.job / "content.raw"
        rng = np.random.default_rng(5)
        self.content.write_bytes(rng.integers(0, 256, (40, 48, 4), dtype=np.uint8).tobytes())
        self.style = self.job / "style.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(self.style)
        self.content_png = self.job / "content.png"
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(self.content_png)
        os.mkfifo(self.job / "fifo")
        (self.job / "to-sentinel").symlink_to(self.sentinel / "notes.txt")
        (self.job / "to-photo.png").symlink_to(self.sentinel / "photo.png")
        (self.job / "to-sentinel-dir").symlink_to(self.sentinel)
        (self.job / "to-zero").symlink_to("/dev/zero")
        (self.job / "loop").symlink_to(self.job / "loop")
        (self.job / "dangling").symlink_to(self.job / "nowhere")
        self.before = self.snapshot()
        self.job_files = self.listing()

    def snapshot(self) -> dict[str, tuple[bytes, int]]:
        return {
            p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(self.sentinel.iterdir())
        }

    def listing(self) -> set[str]:
        return {p.name for p in self.job.iterdir()}

    def inputs(self) -> list[str]:
        """Paths a request may name to read: good, hostile and odd."""
        return [
            str(self.content),
            str(self.style),
            str(self.content_png),
            str(self.job / "fifo"),
            "/dev/zero",
            str(self.job / "to-zero"),
            str(self.job / "to-sentinel"),
            str(self.job / "loop"),
            str(self.job / "dangling"),
            str(self.job),
            str(self.sentinel),
            str(self.sentinel / "notes.txt"),
            str(self.sentinel / "photo.png"),
            str(self.job / "missing.raw"),
            "",
            "relative.png",
            "a" * 5000,
        ]

    def outputs(self) -> list[str]:
        """Paths a request may name to write: never a system path (this may run as root)."""
        return [
            str(self.job / "out.raw"),
            str(self.content),
            str(self.style),
            str(self.job / "fifo"),
            str(self.job),
            str(self.sentinel),
            str(self.job / "to-sentinel"),
            str(self.job / "to-sentinel-dir" / "notes.txt"),
            str(self.job / "gone" / "out.raw"),
            str(self.job / "loop"),
            "",
        ]

    def assert_untouched(self, allowed: set[str] = frozenset()) -> None:
        assert self.snapshot() == self.before, "the sentinel folder changed"
        new = self.listing() - self.job_files
        assert new <= allowed, f"unexpected files in the job folder: {new - allowed}"
        assert not [name for name in self.listing() if name.endswith(".part")]


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Place:
    if not hasattr(os, "mkfifo"):
        pytest.skip("FIFOs and /dev/zero are Unix's")
    return Place(tmp_path_factory.mktemp("adversarial"))


# ------------------------------------------------------------------------------- strategies

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


DELETE = object()


def stylize_requests(place: Place):
    """A good request with up to two fields broken (or removed): each defect gets its chance."""
    inputs, outputs = st.sampled_from(place.inputs()), st.sampled_from(place.outputs())
    numbers = st.one_of(JUNK, st.integers(-5, 10**12), st.floats(-1e40, 1e40))
    breakers = {
        "type": st.sampled_from(["hello", "cancel", "STYLIZE", ""]),
        "id": st.one_of(st.text(max_size=300), JUNK),
        "content": JUNK,
        "content.path": inputs,
        "content.width": numbers,
        "content.height": numbers,
        "content.format": st.sampled_from(list(P.PIXEL_FORMATS)),
        "output": JUNK,
        "output.path": outputs,
        "styles": st.lists(JUNK, max_size=2),
        "styles.0": JUNK,
        "styles.0.path": inputs,
        "styles.0.weight": numbers,
        "styles.1": st.fixed_dictionaries({"path": inputs, "weight": numbers}),
        "options": JUNK,
        "options.preset": st.sampled_from(["normal", "high", "ultra"]),
        "options.strength": numbers,
        "options.style_strength": numbers,
        "options.max_size": numbers,
        "options.preserve_colors": st.sampled_from([*P.PRESERVE, "sepia"]),
        "options.device": st.sampled_from(["auto", "cuda", "directml", "tpu"]),
        "options.seed": numbers,
        "options.colour": st.text(max_size=3),
        "workdir": st.just(str(place.job / "to-sentinel-dir")),
        "extra": JUNK,
    }
    paths = ["content.path", "output.path", "styles.0.path", "styles.1"]  # the file-level defects
    defect = st.sampled_from(sorted(breakers) + paths * 8).flatmap(
        lambda name: (
            breakers[name] if name in paths else st.one_of(breakers[name], JUNK, st.just(DELETE))
        ).map(lambda v: (name, v))
    )
    return st.lists(defect, max_size=2).map(lambda defects: _broken(place, defects))


def _broken(place: Place, defects: list) -> dict:
    request = {
        "type": "stylize",
        "id": "job-1",
        "content": {"path": str(place.content), "width": 48, "height": 40, "format": "rgba8"},
        "output": {"path": str(place.job / "out.raw")},
        "styles": [{"path": str(place.style), "weight": 1.0}],
        "options": {"preset": "draft", "device": "cpu", "max_size": 32, "seed": 0},
        "workdir": str(place.sentinel),  # the user's folder, named where an editor's temp dir goes
    }
    for name, value in defects:
        *parents, last = name.split(".")
        node = request
        for key in parents:
            if isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            elif isinstance(node, dict) and key in node:
                node = node[key]
            else:
                node = None
                break
        if isinstance(node, list) and last.isdigit():
            if value is DELETE:
                node[:] = node[: int(last)]
            else:
                node[int(last) : int(last) + 1] = [value]
        elif isinstance(node, dict):
            if value is DELETE:
                node.pop(last, None)
            else:
                node[last] = value
    return request


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def lines(place: Place):
    """One to three request lines: whole requests, JSON of any shape, or raw bytes."""
    request = stylize_requests(place).map(lambda m: json.dumps(m, allow_nan=True).encode())
    other = st.one_of(
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.sampled_from(["type", "id", "protocol"]), JUNK, max_size=3).map(
            lambda v: json.dumps(v, allow_nan=True).encode()
        ),
        st.binary(max_size=64).map(lambda b: b.replace(b"\n", b" ")),
        st.sampled_from(
            [b'{"type": "hello"}', b'{"type": "cancel"}', b'{"type": "cancel", "id": "job-1"}']
        ),
    )
    return st.lists(st.one_of(request, request, request, other), min_size=1, max_size=3)


# ------------------------------------------------------------------------------- the worker


def serve(raw_lines: list[bytes]) -> list[dict]:
    """The worker, in-process, on these lines; stdin closes once every line is answered or a job
    runs (its first progress: it passed every check), which cancels that job. Its answers."""
    out = io.BytesIO()
    read_end, write_end = os.pipe()
    worker = W.Worker(os.fdopen(read_end, "rb"), W.Channel(out), GRAPHS)
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    with os.fdopen(write_end, "wb") as stdin:
        stdin.write(b"".join(line + b"\n" for line in raw_lines))  # small: fits the pipe
        stdin.flush()
        wanted, deadline = expected_answers(raw_lines), time.monotonic() + 60
        while time.monotonic() < deadline:
            answers = [json.loads(line) for line in out.getvalue().splitlines()]
            finals = [m for m in answers if m["type"] != "progress"]
            if len(finals) >= wanted or len(finals) < len(answers):
                break
            time.sleep(0.002)
    thread.join(120)
    assert not thread.is_alive(), "the worker did not end after its stdin closed"
    return [json.loads(line) for line in out.getvalue().splitlines()]


def expected_answers(raw_lines: list[bytes]) -> int:
    """Every non-blank line is answered once, except a well-formed cancel (its job answers)."""
    count = 0
    for line in raw_lines:
        if not line.strip():
            continue
        try:
            count += not isinstance(P.parse_request(line), P.Cancel)
        except P.ProtocolError:
            count += 1
    return count


def check_answer(message: dict) -> None:
    assert isinstance(message, dict) and message.get("type") in (
        "hello",
        "pong",
        "progress",
        "result",
        "error",
        "cancelled",
    ), message
    if message["type"] == "error":
        assert message["kind"] in P.ERROR_KINDS and message["kind"] != "internal", message
        text = message["message"]
        assert isinstance(text, str) and text and "\n" not in text


@settings(max_examples=WORKER_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_every_request_gets_one_answer_and_touches_nothing(place, data):
    raw_lines = data.draw(lines(place))
    answers = serve(raw_lines)
    for message in answers:
        check_answer(message)
    finals = [m for m in answers if m["type"] != "progress"]
    for message in finals:
        event(f"{message['type']} {message.get('kind', '')}")
    assert len(finals) == expected_answers(raw_lines), (raw_lines, answers)
    # out.raw could only appear if a job finished, and each is cancelled at the EOF that follows
    place.assert_untouched()


def test_a_line_too_long_is_skipped_and_answered():
    answers = serve_all(
        [b'{"type": "hello", "x": "' + b"a" * P.MAX_LINE_BYTES + b'"}', b'{"type": "hello"}']
    )
    assert [m["type"] for m in answers] == ["error", "hello"]
    assert answers[0]["kind"] == "protocol" and "longer than" in answers[0]["message"]


def serve_all(raw_lines: list[bytes]) -> list[dict]:
    """The worker on these lines then EOF (any size)."""
    out = io.BytesIO()
    data = io.BytesIO(b"".join(line + b"\n" for line in raw_lines))
    W.Worker(data, W.Channel(out), GRAPHS).serve()
    return [json.loads(line) for line in out.getvalue().splitlines()]


# ------------------------------------------------------------------------------- frames

FRAMES_EXAMPLES = 100


def framed(place: Place):
    """(header, declared bytes, bytes sent): requests with frames, good and broken."""
    content = place.content.read_bytes()
    style = place.style.read_bytes()
    junk = st.sampled_from([b"not a png", b"\n" * 40, bytes(3072)])
    heads = st.one_of(st.just(content), st.just(content), st.just(content), junk)
    parts = st.tuples(heads, st.lists(st.one_of(st.just(style), junk), min_size=1, max_size=2))

    def stylize(parts: list[bytes], delta: int, changes: dict) -> tuple[dict, bytes]:
        head, *styles = parts
        request = {
            "type": "stylize",
            "id": "job-1",
            "content": {"width": 48, "height": 40, "format": "rgba8", "bytes": len(head)},
            "output": {"frame": True},
            "styles": [{"bytes": len(data), "name": "s.png"} for data in styles],
            "options": {"preset": "draft", "device": "cpu", "max_size": 32},
            "frame": max(0, sum(map(len, parts)) + delta),
        }
        request.update(changes)
        return request, b"".join(parts)

    stylizes = st.builds(
        stylize,
        parts.map(lambda p: [p[0], *p[1]]),
        st.sampled_from([0, 0, 0, -1, 1, -100]),
        st.one_of(
            st.just({}),
            st.dictionaries(st.sampled_from(["frame", "output", "options", "x"]), JUNK, max_size=1),
        ),
    )
    others = st.builds(
        lambda kind, size, reply: (
            {"type": kind, "id": "p", "frame": size, "reply_bytes": reply},
            os.urandom(size) if isinstance(size, int) and 0 <= size < 10**5 else b"",
        ),
        st.sampled_from(["ping", "ping", "hello", "cancel", "upload"]),
        st.one_of(st.integers(0, 5000), st.integers(0, 5000), JUNK),
        st.one_of(st.integers(0, 5000), st.integers(0, 5000), JUNK),
    )
    return st.one_of(stylizes, others)


def _declared(message: dict) -> int | None:
    """The frame the worker will read after this header; None when it can't follow it."""
    try:
        return P.frame_length(message)
    except P.ProtocolError:
        return None


@settings(max_examples=FRAMES_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_frames_keep_the_stream_in_step(place, data):
    items = data.draw(st.lists(framed(place), min_size=1, max_size=3))
    cut = data.draw(st.booleans())  # the link drops inside the last frame
    stream, wanted = b"", 0
    for message, body in items:
        declared = _declared(message)
        size = declared or 0
        body = (body + os.urandom(size))[:size]  # exactly what the header declares
        stream += json.dumps(message).encode() + b"\n"
        wanted += not isinstance(_parsed(message), P.Cancel)
        if declared is None:
            break  # the worker answers once and stops: nothing after is read
        stream += body[: size // 2] if cut and message is items[-1][0] and size else body
    stream += b'{"type": "hello"}\n' if declared is not None and not cut else b""
    wanted += declared is not None and not cut
    out = io.BytesIO()
    status = W.Worker(io.BytesIO(stream), W.Channel(out), GRAPHS).serve()
    answers = read_messages(out.getvalue())
    for message, _ in answers:
        check_answer(message)
    finals = [m for m, _ in answers if m["type"] != "progress"]
    for message in finals:
        event(f"{message['type']} {message.get('kind', '')}")
    assert len(finals) == wanted, (items, finals)
    assert status == (W.EXIT_LOST_FRAMING if declared is None else 0)
    place.assert_untouched()


def _parsed(message: dict):
    try:
        return P.parse_request(message)
    except P.ProtocolError:
        return None


# ------------------------------------------------------------------------------- the CLI

BAD_TEXT = st.one_of(
    st.sampled_from(["-1", "0", "nan", "inf", "-inf", "1e309", "1e300", "x", "", "1,2", "none"]),
    st.text(max_size=6),
    st.integers(-(2**70), 2**70).map(str),
)


def cli_flags(place: Place):
    """(flag, value) pairs: sensible values, values no run can afford, and nonsense."""
    path = st.sampled_from(
        [str(place.content_png), str(place.sentinel / "notes.txt"), str(place.job / "fifo")]
    )
    values = {
        "--max-size": st.one_of(st.sampled_from(["16", "20", "24", "32", "none"]), BAD_TEXT),
        "--style-scale": st.one_of(st.sampled_from(["0.1", "0.5", "2", "1e6"]), BAD_TEXT),
        "--style-weight": st.one_of(st.sampled_from(["0", "1e-5", "3e38"]), BAD_TEXT),
        "--content-weight": st.one_of(st.sampled_from(["0", "1", "1e38"]), BAD_TEXT),
        "--tv-weight": st.one_of(st.sampled_from(["0", "1e4"]), BAD_TEXT),
        "--style-layer-weights": st.one_of(st.sampled_from(["1,1,1,1,1", "0,0,0,0,1"]), BAD_TEXT),
        "--style-blend": st.one_of(st.sampled_from(["1", "0", "1,1"]), BAD_TEXT),
        "--seed": st.one_of(st.sampled_from(["0", "-5", "random"]), BAD_TEXT),
        "--tile-budget": st.one_of(st.sampled_from(["0.001", "1", "1e9"]), BAD_TEXT),
        "--min-size": st.one_of(st.sampled_from(["16", "100000"]), BAD_TEXT),
        "--init": st.one_of(st.sampled_from(["content", "noise"]), path),
        "--model-dir": st.sampled_from([str(place.sentinel), str(place.job / "nope")]),
        "--preserve-colors": st.sampled_from(["none", "luminance", "sepia"]),
        "--device": st.sampled_from(["cpu", "cuda", "tpu"]),
        "--worker": st.sampled_from(["", "ssh 'unclosed", "/nonexistent/python -m w", "false"]),
    }
    return st.lists(
        st.sampled_from(sorted(values)).flatmap(lambda f: values[f].map(lambda v: (f, v))),
        max_size=3,
    )


def cli_outputs(place: Place):
    """-o values: the job's own file, inputs, folders, links; never the sentinel's files."""
    return st.sampled_from(
        [
            str(place.job / "out.png"),
            str(place.content_png),
            str(place.style),
            str(place.sentinel),
            str(place.job / "gone" / "out.png"),
            str(place.job / "out.gifx"),
            str(place.job / "to-photo.png"),  # a link to the user's file: replaced, not followed
        ]
    )


@settings(max_examples=CLI_EXAMPLES, **SETTINGS)
@given(data=st.data())
def test_cli_option_values_exit_0_or_one_line_and_touch_nothing(place, capsys, data):
    flags, output = data.draw(cli_flags(place)), data.draw(cli_outputs(place))
    argv = ["stylize", str(place.content_png), str(place.style), "-o", output]
    argv += [text for pair in flags for text in pair]
    argv += ["--steps", "1", "--scales", "1", "-q"]  # a run that starts stays cheap
    code = cli.main(argv)
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (0, 2), (argv, err)
    if code == 2:
        assert err.count("\n") == 1 and "error" in err and "Traceback" not in err, (argv, err)
    (place.job / "out.png").unlink(missing_ok=True)
    link = place.job / "to-photo.png"
    if not link.is_symlink():  # a result replaced the link (not its target): put it back
        link.unlink()
        link.symlink_to(place.sentinel / "photo.png")
    place.assert_untouched()
