"""The GIMP plug-in's side of the protocol (gimp/onnxstyle-neural-style/protocol.py, which needs
nothing of GIMP): its requests are what the worker's parser accepts, and a real worker's replies
come out of its one reader as typed objects. (The constants it copies: test_protocol.py. The
plug-in in GIMP: test_gimp_e2e.py, test_gimp_ui.py.)"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import replace

import numpy as np
import pytest
from helpers import plugin_module
from PIL import Image
from sshd import worker_args

from onnxstyle.plugin import protocol as P

G = plugin_module("protocol")
WIDTH, HEIGHT = 32, 24


def _job(styles, steps=None) -> object:
    options = G.Options(
        preset="draft",
        strength=1.0,
        max_size=32,
        preserve_colors="none",
        device="cpu",
        seed=3,
        steps=steps,
    )
    return G.StylizeJob(
        id="gimp-1",
        content="/tmp/c.raw",
        width=WIDTH,
        height=HEIGHT,
        format="rgba8",
        output="/tmp/c-result.raw",
        styles=tuple(G.StyleFile(path, weight) for path, weight in styles),
        options=options,
    )


def test_the_plugins_requests_are_what_the_worker_parses():
    job = _job([("/tmp/a.png", 0.25), ("/tmp/b.png", 0.75)], steps=15)
    files = P.parse_request(json.dumps(G.stylize_request(job)))
    assert isinstance(files, P.Stylize) and files.id == "gimp-1" and files.frame == 0
    assert (files.content.path, files.content.width, files.content.height) == ("/tmp/c.raw", 32, 24)
    assert files.output == "/tmp/c-result.raw"
    assert [(s.path, s.weight) for s in files.styles] == [
        ("/tmp/a.png", 0.25),
        ("/tmp/b.png", 0.75),
    ]
    assert files.options.max_size == 32 and dict(files.options.engine) == {"steps": 15}

    sizes = [WIDTH * HEIGHT * 4, 100, 200]
    in_band = G.stylize_request(job, sizes)
    parsed = P.parse_request(json.dumps(in_band))
    assert parsed.frame == sum(sizes) == P.frame_length(in_band)
    assert parsed.content.path is None and parsed.output is None
    assert [s.path for s in parsed.styles] == [None, None]
    assert "steps" not in G.stylize_request(_job([("/tmp/a.png", 1.0)]))["options"]

    assert isinstance(P.parse_request(json.dumps(G.hello_request("/tmp/p", "ab" * 8))), P.Hello)
    assert P.parse_request(json.dumps(in_band)).sequence is None  # a picture on its own


def test_a_frame_of_the_plugins_animation_is_a_worker_sequence_frame():
    frame = G.SequenceFrame("gimp-layers-" + "f" * 12, 2, G.DEFAULT_TEMPORAL_WEIGHT)
    job = replace(_job([("/tmp/a.png", 1.0)]), sequence=frame)
    for request in (G.stylize_request(job), G.stylize_request(job, [WIDTH * HEIGHT * 4, 100])):
        parsed = P.parse_request(json.dumps(request))
        assert parsed.sequence == P.SequenceFrame(frame.id, 2, G.DEFAULT_TEMPORAL_WEIGHT)
    cancel = P.parse_request(json.dumps(G.cancel_request("gimp-1")))
    assert isinstance(cancel, P.Cancel) and cancel.id == "gimp-1"


def test_lines_that_are_not_replies_are_skipped_and_a_bad_frame_is_refused():
    stream = io.BytesIO(
        b"not json\n[1, 2]\n"
        + b'{"type": "someday", "id": "x", "frame": 3}\nabc'
        + b'{"type": "result", "id": "j", "width": 1, "height": 1, "frame": 4}\nRGBA'
        + b'{"type": "result", "id": "k", "width": "wide", "height": 1, "path": "/r"}\n'
        + b'{"type": "progress", "id": "j", "frame": 5}\nab'
    )
    assert G.read_reply(stream) == G.Result("j", 1, 1, None, b"RGBA")
    malformed = G.read_reply(stream)
    assert isinstance(malformed, G.Error) and malformed.id == "k" and malformed.kind == "protocol"
    assert G.read_reply(stream) is None, "a frame cut short is the end of the output"
    with pytest.raises(ValueError):
        G.read_reply(io.BytesIO(b'{"type": "pong", "frame": -1}\n'))


def test_a_frames_notes_reach_the_client_and_the_plugin_once():
    """A result's notes (a frame whose flow failed) as the worker builds them, read by both
    editors; a result without notes has none."""
    note = "frame 3: optical flow failed: no texture; it started from the previous result unwarped"
    line = P.result("f-3", "/tmp/r.raw", 2, 2, "rgba8", 0.5, [note])
    plain = P.result("f-4", "/tmp/r.raw", 2, 2, "rgba8", 0.5)
    wire = b"".join(P.encode(m) for m in (line, plain))
    assert "notes" not in plain
    assert G.read_reply(io.BytesIO(wire)).notes == (note,)
    parsed = P.parse_reply(json.loads(P.encode(line)))
    assert isinstance(parsed, P.Result) and parsed.notes == (note,)
    assert P.parse_reply(json.loads(P.encode(plain))).notes == ()
    with pytest.raises(P.ProtocolError, match="notes"):
        P.parse_reply({**line, "notes": "not a list"})


def test_a_real_workers_replies_are_typed(tmp_path):
    style = tmp_path / "style.png"
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    content = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8).tobytes()
    probe = tmp_path / "files-probe"
    probe.write_text("cd" * 8)
    worker = subprocess.Popen(worker_args(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def send(request: dict, *frame: bytes) -> None:
        worker.stdin.write((json.dumps(request) + "\n").encode())
        for part in frame:
            worker.stdin.write(part)
        worker.stdin.flush()

    try:
        send(G.hello_request(str(probe), "cd" * 8))
        hello = G.read_reply(worker.stdout)
        assert isinstance(hello, G.Hello) and hello.protocol == G.PROTOCOL_VERSION
        assert hello.files is True and "CPUExecutionProvider" in hello.providers

        send({"type": "ping", "id": "p", "frame": 3}, b"xyz")
        assert G.read_reply(worker.stdout) == G.Pong("p", 3)

        send({"type": "stylize", "id": "bad"})
        refused = G.read_reply(worker.stdout)
        assert isinstance(refused, G.Error) and refused.id == "bad" and refused.kind == "protocol"

        style_bytes = style.read_bytes()
        job = _job([(str(style), 1.0)], steps=2)
        send(G.stylize_request(job, [len(content), len(style_bytes)]), content, style_bytes)
        replies = []
        while not replies or not isinstance(replies[-1], G.FINAL_REPLIES):
            replies.append(G.read_reply(worker.stdout))
        *progress, result = replies
        assert progress and all(isinstance(p, G.Progress) and p.id == "gimp-1" for p in progress)
        assert progress[-1].fraction == 1.0 and progress[-1].step == progress[-1].steps == 2
        assert isinstance(result, G.Result) and result.path is None
        assert (result.width, result.height) == (WIDTH, HEIGHT)
        assert len(result.pixels()) == WIDTH * HEIGHT * 4
    finally:
        worker.stdin.close()
        worker.wait(timeout=30)
    assert G.read_reply(worker.stdout) is None


def test_the_worker_error_is_shown_as_it_is_with_a_hint_for_some_kinds():
    assert G.error_text("memory", "Out of memory.") == "Out of memory."
    assert "'auto' or 'cpu'" in G.error_text("device", "CUDA is unavailable.")
    assert G.error_text("internal", "Oops.").endswith("(please report this)")
