"""The editor worker driven over its protocol, as the GIMP plug-in drives it: real engine, tiny images.

Tests that take the `transport` fixture (or `any_worker`, `shared_worker`) run twice: with the
worker as a child process, and behind a real ssh to a real sshd on 127.0.0.1 (tests/sshd.py)."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sshd import worker_args

from onnxstyle.core import runtime
from onnxstyle.core.files import read_exactly
from onnxstyle.plugin import protocol as P
from onnxstyle.plugin import worker as W

TIMEOUT_S = 240.0  # a whole draft run on a 2-core machine, with room to spare
TRANSPORTS = ["local", "ssh"]


class Message(dict):
    """A message, with the bytes of its frame (if it had one) as .frame_bytes."""

    frame_bytes: bytes | None = None


class WorkerProcess:
    def __init__(self, command: list[str] | None = None) -> None:
        self.process = subprocess.Popen(
            command or worker_args(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.stderr = b""
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read(self) -> None:
        """Lines, each with its frame's bytes (read whole: the tests' frames are small)."""
        stream = self.process.stdout
        try:
            for line in iter(stream.readline, b""):
                size = json.loads(line).get("frame", 0)
                self.lines.put((line, bytes(read_exactly(stream, size)) if size else None))
        except EOFError:
            pass
        self.lines.put(None)

    def _read_stderr(self) -> None:
        self.stderr = self.process.stderr.read()

    def send(self, message: dict, frame: bytes = b"") -> None:
        self.process.stdin.write(P.encode(message) + frame)
        self.process.stdin.flush()

    def send_raw(self, data: bytes) -> None:
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def receive(self, timeout: float = TIMEOUT_S) -> Message | None:
        item = self.lines.get(timeout=timeout)
        if item is None:
            return None
        message = Message(json.loads(item[0]))
        message.frame_bytes = item[1]
        return message

    def until_final(self, job_id: str, timeout: float = TIMEOUT_S) -> tuple[dict, list[dict]]:
        """Progress messages, then the job's one final message."""
        progress = []
        while True:
            message = self.receive(timeout)
            assert message is not None, (
                f"worker ended early: {self.stderr.decode(errors='replace')[-2000:]}"
            )
            if message["type"] == "progress":
                assert message["id"] == job_id
                progress.append(message)
            else:
                return message, progress

    def close(self) -> int:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=TIMEOUT_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._stderr_reader.join(timeout=10)


@pytest.fixture
def worker():
    w = WorkerProcess()
    yield w
    w.close()


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> list[str]:
    """The worker command: this venv's Python, or the same behind ssh to 127.0.0.1."""
    if request.param == "local":
        return worker_args()
    return request.getfixturevalue("ssh_server").command(worker_args())


@pytest.fixture
def any_worker(transport):
    w = WorkerProcess(transport)
    yield w
    w.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("worker")
    rng = np.random.default_rng(7)
    # content: a smooth gradient with a disc, alpha with a transparent corner and a half-transparent band
    yy, xx = np.mgrid[0:40, 0:48]
    rgba = np.zeros((40, 48, 4), np.uint8)
    rgba[..., 0] = xx * 255 // 47
    rgba[..., 1] = yy * 255 // 39
    rgba[..., 2] = np.where((xx - 24) ** 2 + (yy - 20) ** 2 < 120, 220, 40)
    rgba[..., 3] = 255
    rgba[:8, :8, 3] = 0
    rgba[30:, :, 3] = 128
    rgba.tofile(folder / "content.raw")
    # style: coloured stripes with noise, a file the engine loads itself
    stripes = (np.sin(xx[:, :, None] / 2.0 + np.array([0, 2, 4])) + 1) * 110 + rng.integers(
        0, 30, (40, 48, 3)
    )
    Image.fromarray(np.clip(stripes, 0, 255).astype(np.uint8)).resize((64, 64)).save(
        folder / "style.png"
    )
    good = (folder / "style.png").read_bytes()
    (folder / "corrupt.png").write_bytes(good[: len(good) // 3])  # a truncated PNG
    return {
        "folder": folder,
        "content": folder / "content.raw",
        "style": folder / "style.png",
        "corrupt": folder / "corrupt.png",
    }


def stylize_request(images, job_id: str, out: Path, style: Path | None = None, **options) -> dict:
    opts = {"preset": "draft", "device": "cpu", "seed": 1, "preserve_colors": "none"}
    opts.update(options)
    return {
        "type": "stylize",
        "id": job_id,
        "content": {"path": str(images["content"]), "width": 48, "height": 40, "format": "rgba8"},
        "output": {"path": str(out)},
        "styles": [{"path": str(style or images["style"]), "weight": 1.0}],
        "options": opts,
    }


def test_hello(any_worker):
    any_worker.send({"type": "hello", "protocol": P.PROTOCOL_VERSION})
    hello = any_worker.receive()
    assert hello["type"] == "hello" and hello["protocol"] == P.PROTOCOL_VERSION
    assert "CPUExecutionProvider" in hello["providers"]
    assert {
        "device": "cpu",
        "provider": "CPUExecutionProvider",
        "available": True,
        "reason": "",
    } in (hello["devices"])
    assert hello["max_frame_bytes"] == P.MAX_FRAME_BYTES and hello["files"] is False
    assert any_worker.close() == 0


def test_a_version_1_editor_gets_version_1_answers(worker):
    """The plug-in of an older onnxstyle: a version-1 hello, and its answer has v1's fields."""
    worker.send({"type": "hello", "protocol": 1})
    hello = worker.receive()
    assert hello["protocol"] == 1
    assert set(hello) == {"type", "protocol", "onnxstyle", "python", "providers"}


def test_stylize_result_progress_and_alpha(any_worker, images, tmp_path):
    worker = any_worker
    out = tmp_path / "result.raw"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep me")
    for planted in ("result.raw.part", ".result.raw.part"):  # links at guessable temporary names
        (tmp_path / planted).symlink_to(victim)
    worker.send(stylize_request(images, "j1", out))
    final, progress = worker.until_final("j1")
    assert final["type"] == "result", final
    assert (final["path"], final["width"], final["height"], final["format"]) == (
        str(out),
        48,
        40,
        "rgba8",
    )
    assert progress, "no progress messages"
    fractions = [p["fraction"] for p in progress]
    assert all(0.0 <= f <= 1.0 for f in fractions) and fractions == sorted(fractions)
    assert all(p["step"] <= p["steps"] and 1 <= p["scale"] <= p["scales"] for p in progress)
    assert progress[0]["text"].startswith("Neural style: scale ")
    content = np.fromfile(images["content"], np.uint8).reshape(40, 48, 4)
    result = np.fromfile(out, np.uint8).reshape(40, 48, 4)
    assert np.array_equal(result[..., 3], content[..., 3]), "alpha must pass through unchanged"
    assert np.abs(result[..., :3].astype(int) - content[..., :3]).mean() > 2.0, (
        "the pixels did not change"
    )
    assert victim.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".result.raw.part", "result.raw", "result.raw.part", "victim.txt"]
    ), "only the output is new"


def test_strength_reaches_the_engine(worker, images, tmp_path):
    out = tmp_path / "zero.raw"
    worker.send(stylize_request(images, "z", out, strength=0))
    final, _ = worker.until_final("z")
    assert final["type"] == "result", final
    content = np.fromfile(images["content"], np.uint8).reshape(40, 48, 4).astype(int)
    result = np.fromfile(out, np.uint8).reshape(40, 48, 4).astype(int)
    assert np.abs(result - content).max() <= 1, "strength 0 must give the content back"


def in_band(request: dict) -> tuple[dict, bytes]:
    """The request with its content and styles in a frame and its output in the result's."""
    content = Path(request["content"].pop("path")).read_bytes()
    request["content"]["bytes"] = len(content)
    frame = [content]
    for style in request["styles"]:
        data = Path(style.pop("path")).read_bytes()
        style.update(bytes=len(data), name="style.png")
        frame.append(data)
    request["output"] = {"frame": True}
    request["frame"] = sum(map(len, frame))
    return request, b"".join(frame)


def test_in_band_pixels_give_the_same_result_as_files(transport, images, tmp_path):
    """Content, style and result through the pipe (behind ssh too): the same pixels as the file
    job, and the worker writes no file."""
    w = WorkerProcess(transport)
    try:
        w.send(stylize_request(images, "files", tmp_path / "r.raw", steps=4))
        by_files, _ = w.until_final("files")
        assert by_files["type"] == "result", by_files
        request, frame = in_band(stylize_request(images, "frames", tmp_path / "x", steps=4))
        w.send(request, frame)
        final, progress = w.until_final("frames")
    finally:
        assert w.close() == 0
    assert final["type"] == "result" and {p["steps"] for p in progress} == {4}, final
    assert "path" not in final and final["frame"] == 48 * 40 * 4, final
    assert final.frame_bytes == (tmp_path / "r.raw").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.raw"]


def test_an_in_band_style_that_is_not_an_image_is_one_line_naming_it(
    shared_worker, images, tmp_path
):
    request, frame = in_band(stylize_request(images, "bad", tmp_path / "x"))
    request["styles"][0].update(name="holiday.jpg", bytes=9)
    request["frame"] = len(frame) - len(images["style"].read_bytes()) + 9
    shared_worker.send(request, frame[: request["frame"] - 9] + b"not a jpg")
    final, progress = shared_worker.until_final("bad")
    assert not progress and final["type"] == "error" and final["kind"] == "image", final
    assert final["message"].startswith("holiday.jpg: not an image"), final


def test_float_format_max_size_and_two_styles(worker, images, tmp_path):
    """rgbf32 in and out; a max_size below the content's makes the engine work smaller, and the
    worker brings the result back to the content's size; two styles blended by weight."""
    content = (
        np.fromfile(images["content"], np.uint8).reshape(40, 48, 4)[..., :3].astype("<f4") / 255.0
    )
    (tmp_path / "c.raw").write_bytes(content.tobytes())
    request = stylize_request(images, "f", tmp_path / "r.raw", max_size=32)
    request["content"].update(path=str(tmp_path / "c.raw"), format="rgbf32")
    Image.open(images["style"]).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "style2.png")
    request["styles"] = [
        {"path": str(images["style"]), "weight": 0.7},
        {"path": str(tmp_path / "style2.png"), "weight": 0.3},
    ]
    worker.send(request)
    final, _ = worker.until_final("f")
    assert final["type"] == "result", final
    result = np.fromfile(tmp_path / "r.raw", "<f4")
    assert result.size == 40 * 48 * 3 and np.all((result >= 0) & (result <= 1))


def test_steps_sets_the_schedule_and_bad_steps_are_refused(worker, images, tmp_path):
    """The option "steps" (the GIMP preview's fewer evaluations a scale) replaces the preset's."""
    worker.send(stylize_request(images, "few", tmp_path / "r.raw", steps=3))
    final, progress = worker.until_final("few")
    assert final["type"] == "result", final
    assert progress and {p["steps"] for p in progress} == {3}, progress
    for steps in (0, 2.5, "many", True):
        worker.send(stylize_request(images, "bad", tmp_path / "o.raw", steps=steps))
        final, _ = worker.until_final("bad")
        assert final["kind"] == "protocol" and "steps" in final["message"], final


def test_corrupt_style_is_a_one_line_image_error(worker, images, tmp_path):
    out = tmp_path / "result.raw"
    worker.send(stylize_request(images, "bad", out, style=images["corrupt"]))
    final, _ = worker.until_final("bad")
    assert final["type"] == "error" and final["kind"] == "image", final
    assert final["message"] and "\n" not in final["message"]
    assert not out.exists()
    # the worker is still usable
    worker.send({"type": "hello", "protocol": 1})
    assert worker.receive()["type"] == "hello"


@pytest.fixture(scope="module", params=TRANSPORTS)
def shared_worker(request):
    """One worker for the bad-request cases: each must leave it usable for the next."""
    command = worker_args()
    if request.param == "ssh":
        command = request.getfixturevalue("ssh_server").command(command)
    w = WorkerProcess(command)
    yield w
    w.close()


def _set(request: dict, dotted: str, value) -> dict:
    """request with one field (a dotted path; "styles.0.weight") set, or removed for DELETE."""
    *parents, last = dotted.split(".")
    node = request
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return request


DELETE = object()

# (field, value, expected kind, words in the message): one bad value each
BAD_FIELDS = [
    ("styles.0.path", "nope.png", "image", "no such file"),
    ("options.colour", "blue", "protocol", "colour"),
    ("options.strength", -1, "protocol", "strength"),
    ("options.strength", "strong", "protocol", "strength"),
    ("options.strength", True, "protocol", "strength"),
    ("options.style_strength", -1, "protocol", "strength"),  # the older name, still read
    ("styles.0.weight", "heavy", "protocol", "weight"),
    ("styles.0.weight", True, "protocol", "weight"),
    ("styles.0.weight", -0.5, "protocol", "weight"),
    ("content.width", 47, "image", "bytes"),
    ("content.width", "48", "protocol", "width"),
    ("content.width", 48.0, "protocol", "width"),
    ("content.height", True, "protocol", "height"),
    ("content.height", DELETE, "protocol", "height"),
    ("content.format", "cmyk8", "protocol", "format"),
    ("options.seed", -5, "protocol", "seed"),
    ("options.seed", "x", "protocol", "seed"),
    ("options.seed", 2**70, "protocol", "seed"),
    ("options.max_size", 8, "protocol", "max_size"),
    ("options.max_size", 1e9, "protocol", "max_size"),
    ("options.max_size", 17, "style", "aspect ratio: use at least 19"),
    ("options.preset", ["draft"], "protocol", "preset"),
    ("options.device", "tpu", "protocol", "device"),
    ("styles", [], "protocol", "styles"),
    ("output", "out.raw", "protocol", "output"),
    ("id", 7, "protocol", "id"),
]


@pytest.mark.parametrize(
    "dotted, value, kind, words", BAD_FIELDS, ids=[f"{f}={v!r}"[:40] for f, v, *_ in BAD_FIELDS]
)
def test_a_bad_field_gets_one_line_of_its_kind(
    shared_worker, images, tmp_path, dotted, value, kind, words
):
    request = _set(stylize_request(images, "bad", tmp_path / "o.raw"), dotted, value)
    shared_worker.send(request)
    final, progress = shared_worker.until_final("bad")
    assert not progress
    assert final["type"] == "error" and final["kind"] == kind, final
    assert words in final["message"] and "\n" not in final["message"], final
    assert final["id"] == (None if dotted == "id" else "bad")
    assert not (tmp_path / "o.raw").exists()


def test_a_nan_strength_is_a_protocol_error(shared_worker, images, tmp_path):
    request = stylize_request(images, "nan", tmp_path / "o.raw", strength=float("nan"))
    shared_worker.send_raw(json.dumps(request).encode() + b"\n")  # Python's json reads NaN
    final, _ = shared_worker.until_final("nan")
    assert final["kind"] == "protocol" and "strength" in final["message"], final


def _content_case(case: str, folder: Path, request: dict) -> None:
    """Point the request's content at a file that is not the pixels it claims to be."""
    content = request["content"]
    if case == "fifo":
        os.mkfifo(folder / "fifo.raw")
        content["path"] = str(folder / "fifo.raw")
    elif case == "dev-zero":
        content["path"] = "/dev/zero"
    elif case == "link-to-dev-zero":
        (folder / "zero.raw").symlink_to("/dev/zero")
        content["path"] = str(folder / "zero.raw")
    elif case == "folder":
        content["path"] = str(folder)
    elif case == "too-many-pixels":
        content.update(width=20_000, height=20_000)
    elif case == "too-small":
        (folder / "tiny.raw").write_bytes(bytes(8 * 8 * 4))
        content.update(path=str(folder / "tiny.raw"), width=8, height=8)
    elif case == "style-fifo":
        os.mkfifo(folder / "style.png")
        request["styles"][0]["path"] = str(folder / "style.png")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero are Unix's")
@pytest.mark.parametrize(
    "case, words",
    [
        ("fifo", "not a regular file"),
        ("dev-zero", "not a regular file"),
        ("link-to-dev-zero", "not a regular file"),
        ("folder", "is a folder"),
        ("too-many-pixels", "megapixels"),
        ("too-small", "at least 16 px"),
        ("style-fifo", "not a regular file"),
    ],
)
def test_pixels_are_checked_before_a_byte_is_read(shared_worker, images, tmp_path, case, words):
    """A FIFO would block the read (and cancel, and the exit), /dev/zero would never end."""
    request = stylize_request(images, "pix", tmp_path / "o.raw")
    _content_case(case, tmp_path, request)
    shared_worker.send(request)
    final, progress = shared_worker.until_final("pix", timeout=30)
    assert not progress and final["type"] == "error" and final["kind"] == "image", final
    assert words in final["message"], final
    assert not (tmp_path / "o.raw").exists()


@pytest.mark.parametrize(
    "case, words",
    [
        ("folder", "is a folder"),
        ("missing-folder", "does not exist"),
        ("fifo", "not a regular file"),  # a FIFO, not /dev/null: a regression must not break /dev
        ("content", "is an input"),
        ("style", "is an input"),
        ("link-to-style", "is an input"),
    ],
)
def test_an_output_that_cant_be_written_is_refused_before_any_work(
    shared_worker, images, tmp_path, case, words
):
    style = tmp_path / "style.png"
    style.write_bytes(images["style"].read_bytes())
    (tmp_path / "link.raw").symlink_to(style)
    os.mkfifo(tmp_path / "pipe.raw")
    output = {
        "folder": tmp_path,
        "missing-folder": tmp_path / "gone" / "o.raw",
        "fifo": tmp_path / "pipe.raw",
        "content": images["content"],
        "style": style,
        "link-to-style": tmp_path / "link.raw",
    }[case]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    shared_worker.send(stylize_request(images, "out", output, style=style))
    final, progress = shared_worker.until_final("out", timeout=30)
    assert not progress and final["type"] == "error" and final["kind"] == "output", final
    assert words in final["message"] and str(output) in final["message"], final
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    "line, words",
    [
        (b"this is not json\n", "not a JSON line"),
        (b'{"type": "hello", "protocol": NaN}\n', "protocol"),
        (b'{"type": "frobnicate", "id": "x"}\n', "frobnicate"),
        (b"[" * 100_000 + b"\n", "not a JSON line"),
    ],
    ids=["text", "nan", "unknown-type", "deep"],
)
def test_a_bad_line_gets_one_protocol_error(shared_worker, line, words):
    shared_worker.send_raw(line)
    reply = shared_worker.receive()
    assert reply["type"] == "error" and reply["kind"] == "protocol" and words in reply["message"]
    assert reply["id"] == ("x" if b"frobnicate" in line else None)
    shared_worker.send({"type": "hello", "protocol": 1})
    assert shared_worker.receive()["type"] == "hello"


def _first_progress(worker: WorkerProcess, job_id: str) -> dict:
    while True:
        message = worker.receive()
        assert message is not None and message["type"] == "progress", message
        if message["id"] == job_id:
            return message


def test_cancel_within_a_step_and_busy(any_worker, images, tmp_path):
    worker = any_worker
    out = tmp_path / "result.raw"
    # "normal" has many steps: the cancel lands mid-run
    worker.send(stylize_request(images, "c", out, preset="normal"))
    first = _first_progress(worker, "c")
    # busy: its frame is skipped, and the cancel right after it is read as the next request
    worker.send(*in_band(stylize_request(images, "second", tmp_path / "other.raw")))
    worker.send({"type": "cancel", "id": "c"})
    busy_seen, after = False, []
    while True:
        message = worker.receive()
        if message["type"] == "error" and message["id"] == "second":
            assert message["kind"] == "busy"
            busy_seen = True
        elif message["type"] == "progress":
            after.append(message)
        else:
            assert message == {"type": "cancelled", "id": "c"}
            break
    assert busy_seen
    last = after[-1] if after else first
    total = lambda p: (p["scale"], p["step"])  # noqa: E731
    assert total(last) <= (first["scale"], first["step"] + 3), (
        "cancel was not honoured within a step"
    )
    assert not out.exists()
    # and a new job runs after a cancel
    worker.send({"type": "hello", "protocol": 1})
    assert worker.receive()["type"] == "hello"


def test_warm_worker_reuses_graphs_and_a_stylize_after_cancel_waits_its_turn(images, tmp_path):
    """The GIMP dialog's pattern: previews of several sizes, cancelled and replaced, one worker."""
    w = WorkerProcess()
    try:
        w.send(stylize_request(images, "a", tmp_path / "a.raw", preset="normal"))
        _first_progress(w, "a")
        w.send({"type": "cancel", "id": "a"})
        w.send(stylize_request(images, "b", tmp_path / "b.raw", max_size=32))  # at once
        seen = []
        while not seen or seen[-1]["type"] == "progress" or seen[-1]["id"] != "b":
            seen.append(w.receive())
        finals = [(m["id"], m["type"]) for m in seen if m["type"] != "progress"]
        assert finals == [("a", "cancelled"), ("b", "result")], finals
        first_b = next(i for i, m in enumerate(seen) if m["id"] == "b")
        assert all(m["id"] == "b" for m in seen[first_b:]), "b started before a's final message"
        w.send(stylize_request(images, "c", tmp_path / "c.raw", max_size=None))
        final, _ = w.until_final("c")
        assert final["type"] == "result", final
    finally:
        assert w.close() == 0
    loads = w.stderr.decode(errors="replace").count("loading the avg-pooling graphs")
    assert loads == 1, f"the graphs were loaded {loads} times for three jobs"


def sentinel_folder(parent: Path) -> tuple[Path, dict[str, bytes]]:
    """A folder of the user's files, and what they hold."""
    folder = parent / "precious"
    folder.mkdir()
    files = {"notes.txt": b"the user's notes\n", "content.raw": b"not the job's pixels"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder, files


def assert_untouched(folder: Path, files: dict[str, bytes]) -> None:
    assert folder.is_dir(), f"{folder} was removed"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files


def test_exits_when_stdin_closes_mid_job_and_removes_nothing_it_did_not_make(images, tmp_path):
    folder, files = sentinel_folder(tmp_path)
    w = WorkerProcess()
    request = stylize_request(images, "e", tmp_path / "result.raw", preset="normal")
    request["workdir"] = str(folder)  # a request may name any folder: the worker removes none
    w.send(request)
    _first_progress(w, "e")
    started = time.monotonic()
    assert w.close() == 0
    assert time.monotonic() - started < 60
    assert_untouched(folder, files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"], "no output, no .part"


def test_exits_when_stdin_closes_idle():
    w = WorkerProcess()
    assert w.close() == 0
    assert w.process.stdout.read() == b""


PARENT = r"""
import json, subprocess, sys, time
request = json.loads(sys.argv[1])
worker = subprocess.Popen([sys.executable, "-m", "onnxstyle.plugin.worker"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
print(worker.pid, flush=True)
worker.stdin.write((json.dumps(request) + "\n").encode())
worker.stdin.flush()
worker.stdout.readline()  # the first progress line: the job runs
print("running", flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # exited; its new parent has yet to reap it


@pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)"
)
def test_a_killed_editor_takes_the_worker_down(images, tmp_path):
    """GIMP's progress cancel SIGKILLs the plug-in: its worker must stop and clean up on its own."""

    workdir, files = sentinel_folder(tmp_path)
    request = stylize_request(images, "k", tmp_path / "result.raw", preset="normal")
    request["workdir"] = str(workdir)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, json.dumps(request)], stdout=subprocess.PIPE, text=True
    )
    worker_pid = None
    try:
        worker_pid = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "running"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 60
        while not _gone(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(worker_pid), "the worker outlived its killed editor"
        assert_untouched(workdir, files)  # the editor's temporary folder is the editor's to remove
        assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"], "no output, no .part"
    finally:
        if parent.poll() is None:
            parent.kill()
        if worker_pid is not None and not _gone(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)


def test_a_forced_gpu_never_gets_the_cpu_graph_an_auto_job_fell_back_to(
    monkeypatch, images, tmp_path
):
    """GIMP's preview on Automatic, then OK with Advanced → CUDA, in one worker: the forced CUDA job
    must say the device can't work, not run on the CPU graph the auto job fell back to.

    Simulated at runtime's boundary, as on a machine with onnxruntime-gpu but no CUDA libraries: the
    package offers the CUDA provider and a driver is found, so "auto" picks cuda; the real session
    then lands on the CPU, which make_session detects (auto falls back, a forced cuda raises)."""
    monkeypatch.setattr(runtime, "_provider_problem", lambda device: None)
    monkeypatch.setattr(runtime, "_gpu_driver_present", lambda: True)
    graphs = W.GraphCache()

    def run(job_id: str, device: str) -> dict:
        request = stylize_request(images, job_id, tmp_path / f"{job_id}.raw", device=device)
        request["options"].update(max_size=32, steps=2)
        stream = io.BytesIO()
        W.run_job(W.Job(id=job_id, request=P.parse_request(request)), W.Channel(stream), graphs)
        return json.loads(stream.getvalue().splitlines()[-1])

    assert run("preview", "auto")["type"] == "result"  # auto fell back to the CPU
    final = run("final", "cuda")
    assert (final["type"], final.get("kind")) == ("error", "device"), final
    assert not (tmp_path / "final.raw").exists()
