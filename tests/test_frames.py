"""Protocol version 2's frames, in-process: bytes that follow a JSON line are read, or skipped
without being held, even when the request is refused, so the stream stays in step; a "frame" that
can't be followed stops the worker with one error; a stream cut inside a frame ends it cleanly.
The hello's files probe. (Whole jobs with frames, also behind ssh: tests/test_worker.py.)"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from helpers import read_messages

from onnxstyle.plugin import protocol as P
from onnxstyle.plugin import worker as W

HELLO = b'{"type": "hello", "protocol": 2}\n'
# a frame's bytes may hold anything, request lines included: they must never be read as lines
SNEAKY = b'\n{"type": "hello"}\n\n{"type": "cancel"}\n'


class Zeros(io.RawIOBase):
    """`count` zero bytes, then `after`, made as they are read (a huge frame, never held whole)."""

    def __init__(self, head: bytes, count: int, after: bytes = b"") -> None:
        self.parts = [head, count, after]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self.parts:
            part = self.parts[0]
            if isinstance(part, int):
                n = min(part, len(buffer))
                if n:
                    buffer[:n] = bytes(n)
                    self.parts[0] = part - n
                    return n
            elif part:
                n = min(len(part), len(buffer))
                buffer[:n], self.parts[0] = part[:n], part[n:]
                return n
            self.parts.pop(0)
        return 0


def serve(stdin: io.BufferedIOBase) -> tuple[int, list[tuple[dict, bytes | None]]]:
    """The worker on this stdin until it ends: its exit status and its answers (with frames)."""
    out = io.BytesIO()
    status = W.Worker(stdin, W.Channel(out)).serve()
    return status, read_messages(out.getvalue())


def line(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\n"


def test_a_ping_s_frame_is_read_whole_and_the_pong_carries_the_download():
    frame = SNEAKY * 100
    ping = line({"type": "ping", "id": "p", "frame": len(frame), "reply_bytes": 3 * W.CHUNK + 5})
    status, answers = serve(io.BytesIO(ping + frame + HELLO))
    assert status == 0
    (pong, download), (hello, _) = answers
    assert pong == {"type": "pong", "id": "p", "bytes": len(frame), "frame": 3 * W.CHUNK + 5}
    assert download == bytes(3 * W.CHUNK + 5)
    assert hello["type"] == "hello", "the frame's bytes were read as lines"


def _stylize(**changes) -> dict:
    """An in-band stylize of a 32x24 rgba8 content and one 10-byte style: frame 3082 bytes."""
    request = {
        "type": "stylize",
        "id": "s",
        "content": {"width": 32, "height": 24, "format": "rgba8", "bytes": 32 * 24 * 4},
        "output": {"frame": True},
        "styles": [{"bytes": 10, "name": "style.png"}],
        "options": {"device": "cpu"},
        "frame": 32 * 24 * 4 + 10,
    }
    request.update(changes)
    return request


REFUSED = [
    ("hello", {"type": "hello", "frame": 100}, "protocol", 'unknown field "frame"'),
    ("cancel", {"type": "cancel", "id": "s", "frame": 100}, "protocol", 'unknown field "frame"'),
    ("unknown type", {"type": "upload", "id": "s", "frame": 100}, "protocol", '"upload"'),
    ("frame too long", _stylize(frame=3083), "protocol", "are 3082"),
    ("frame too short", _stylize(frame=3000), "protocol", "are 3082"),
    ("no frame", _stylize(frame=0), "protocol", '"frame" is 0'),
    ("content bytes", _stylize(content={"width": 32, "height": 24, "format": "rgba8", "bytes": 7}),
     "protocol", "3072 bytes"),
    ("path and bytes", _stylize(styles=[{"path": "s.png", "bytes": 10}]), "protocol", "either"),
    ("output", _stylize(output={"frame": False}), "protocol", '{"frame": true}'),
    ("style too big", _stylize(styles=[{"bytes": P.MAX_STYLE_BYTES + 1}]), "protocol",
     "styles.bytes"),
    ("bad option", _stylize(options={"colour": "blue"}), "protocol", "colour"),
    ("too small", _stylize(content={"width": 8, "height": 8, "format": "rgba8", "bytes": 256},
                           frame=266), "image", "at least 16 px"),
]  # fmt: skip


@pytest.mark.parametrize(
    "request_, kind, words", [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED]
)
def test_a_refused_request_s_frame_is_skipped_and_the_next_request_answered(request_, kind, words):
    frame = (SNEAKY * 1000)[: request_["frame"]]
    status, answers = serve(io.BytesIO(line(request_) + frame + HELLO))
    assert status == 0
    assert [m["type"] for m, _ in answers] == ["error", "hello"], answers
    error = answers[0][0]
    assert error["kind"] == kind and words in error["message"], error
    assert error["id"] == request_.get("id")


def test_a_huge_refused_frame_is_skipped_without_being_held():
    """A 400 MB frame for a content over MAX_PIXELS: refused from its header, skipped in pieces."""
    width, height = 10_001, 10_000  # just over 100 megapixels
    size = width * height * 4
    content = {"width": width, "height": height, "format": "rgba8", "bytes": size}
    request = _stylize(content=content, styles=[{"path": "style.png"}], frame=size)
    tracemalloc.start()
    try:
        status, answers = serve(io.BufferedReader(Zeros(line(request), size, HELLO)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 0 and [m["type"] for m, _ in answers] == ["error", "hello"]
    assert answers[0][0]["kind"] == "image" and "megapixels" in answers[0][0]["message"]
    assert peak < 16 * W.CHUNK, f"skipping the frame held {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("frame", [-1, "12", 1.5, True, None, P.MAX_FRAME_BYTES + 1, [1]], ids=repr)
def test_a_frame_that_cant_be_followed_stops_the_worker_with_one_error(frame):
    request = line({"type": "stylize", "id": "s", "frame": frame})
    status, answers = serve(io.BytesIO(request + HELLO + HELLO))
    assert status == W.EXIT_LOST_FRAMING
    ((error, _),) = answers  # and nothing after it: the hellos are not read
    assert error["kind"] == "protocol" and error["id"] == "s", error
    assert '"frame" must be an integer' in error["message"] and "stops" in error["message"]


@pytest.mark.parametrize(
    "request_",
    [_stylize(), {"type": "ping", "frame": 5000}, {"type": "hello", "frame": 5000}],
    ids=["stylize", "ping", "refused"],
)
def test_a_stream_cut_inside_a_frame_ends_the_worker_cleanly(request_):
    """The link dropped mid-upload: one error, exit 0, no job started."""
    status, answers = serve(io.BytesIO(line(request_) + bytes(1000)))
    assert status == 0
    ((error, _),) = answers
    assert error["kind"] == "protocol" and "bytes short" in error["message"], error


def test_a_header_and_its_frame_are_never_split_by_another_thread():
    """The job thread's progress and the reader's pongs share stdout: whole messages only."""
    out = io.BytesIO()
    channel = W.Channel(out)
    frame = SNEAKY * 5000

    def send(n: int) -> None:
        for i in range(50):
            if n % 2:
                channel.send({"type": "progress", "id": f"{n}-{i}"})
            else:
                channel.send({"type": "result", "id": f"{n}-{i}", "frame": len(frame)}, frame)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = read_messages(out.getvalue())
    assert len(messages) == 300
    assert all(data in (None, frame) for _, data in messages)


# --------------------------------------------------------------------------- the files probe

NONCE = "0123456789abcdef0123"


@pytest.mark.parametrize(
    "case, shared",
    [
        ("the nonce", True),
        ("another nonce", False),
        ("missing", False),
        ("folder", False),
        ("fifo", False),
        ("dev-zero", False),
        ("nonce and more", False),
    ],
)
def test_files_are_shared_only_when_the_probe_holds_the_nonce(tmp_path, case, shared):
    path = tmp_path / "probe"
    if case == "the nonce":
        path.write_text(NONCE)
    elif case == "another nonce":
        path.write_text(NONCE[::-1])
    elif case == "folder":
        path.mkdir()
    elif case == "fifo":
        os.mkfifo(path)  # a FIFO with no writer: reading it would block
    elif case == "dev-zero":
        path = Path("/dev/zero")
    elif case == "nonce and more":
        path.write_text(NONCE + "x" * P.NONCE_FILE_BYTES)
    started = time.monotonic()
    reply = W.hello(P.Hello(2, P.FilesProbe(str(path), NONCE)))
    assert reply["files"] is shared
    assert time.monotonic() - started < 30


def test_a_hello_without_a_probe_says_files_false():
    assert W.hello(P.Hello(2))["files"] is False
