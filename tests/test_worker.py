"""The editor worker driven over its protocol, as the GIMP plug-in drives it: real engine, tiny images."""

from __future__ import annotations

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

from onnxstyle.plugin import protocol as P

TIMEOUT_S = 240.0  # a whole draft run on a 2-core machine, with room to spare


class WorkerProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "onnxstyle.plugin.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.stderr = b""
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        for line in iter(self.process.stdout.readline, b""):
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        self.stderr = self.process.stderr.read()

    def send(self, message: dict) -> None:
        self.process.stdin.write(P.encode(message))
        self.process.stdin.flush()

    def send_raw(self, data: bytes) -> None:
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def receive(self, timeout: float = TIMEOUT_S) -> dict | None:
        line = self.lines.get(timeout=timeout)
        return None if line is None else json.loads(line)

    def until_final(self, job_id: str) -> tuple[dict, list[dict]]:
        """Progress messages, then the job's one final message."""
        progress = []
        while True:
            message = self.receive()
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


@pytest.fixture
def worker():
    w = WorkerProcess()
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


def test_hello(worker):
    worker.send({"type": "hello", "protocol": P.PROTOCOL_VERSION})
    hello = worker.receive()
    assert hello["type"] == "hello" and hello["protocol"] == P.PROTOCOL_VERSION
    assert "CPUExecutionProvider" in hello["providers"]
    assert worker.close() == 0


def test_stylize_result_progress_and_alpha(worker, images, tmp_path):
    out = tmp_path / "result.raw"
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
    assert not list(tmp_path.glob("*.part"))


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
    """ "steps" (the GIMP preview's fewer evaluations a scale) replaces the preset's count."""
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


def test_missing_style_and_bad_requests(worker, images, tmp_path):
    worker.send(stylize_request(images, "m", tmp_path / "o.raw", style=tmp_path / "nope.png"))
    final, _ = worker.until_final("m")
    assert final["type"] == "error" and final["kind"] == "image", final
    worker.send_raw(b"this is not json\n")
    assert worker.receive()["kind"] == "protocol"
    worker.send({"type": "frobnicate", "id": "x"})
    reply = worker.receive()
    assert reply["kind"] == "protocol" and reply["id"] == "x"
    worker.send(stylize_request(images, "o", tmp_path / "o.raw", colour="blue"))
    final, _ = worker.until_final("o")
    assert final["kind"] == "protocol" and "colour" in final["message"]
    for strength in (0, -1, "strong"):  # 0 is refused, not silently read as "default"
        worker.send(stylize_request(images, "t", tmp_path / "o.raw", style_strength=strength))
        final, _ = worker.until_final("t")
        assert final["kind"] == "protocol" and "style_strength" in final["message"], final
    bad_size = stylize_request(images, "s", tmp_path / "o.raw")
    bad_size["content"]["width"] = 47
    worker.send(bad_size)
    final, _ = worker.until_final("s")
    assert final["kind"] == "image" and "bytes" in final["message"]


def _first_progress(worker: WorkerProcess, job_id: str) -> dict:
    while True:
        message = worker.receive()
        assert message is not None and message["type"] == "progress", message
        if message["id"] == job_id:
            return message


def test_cancel_within_a_step_and_busy(worker, images, tmp_path):
    out = tmp_path / "result.raw"
    # "normal" has many steps: the cancel lands mid-run
    worker.send(stylize_request(images, "c", out, preset="normal"))
    first = _first_progress(worker, "c")
    worker.send(stylize_request(images, "second", tmp_path / "other.raw"))
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


def test_exits_when_stdin_closes_mid_job_and_cleans_its_workdir(images, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    content = workdir / "content.raw"
    content.write_bytes(images["content"].read_bytes())
    w = WorkerProcess()
    request = stylize_request(
        {**images, "content": content}, "e", workdir / "result.raw", preset="normal"
    )
    request["workdir"] = str(workdir)
    w.send(request)
    _first_progress(w, "e")
    started = time.monotonic()
    assert w.close() == 0
    assert time.monotonic() - started < 60
    assert not workdir.exists(), "the editor's workdir should go when the editor does"


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

    workdir = tmp_path / "work"
    workdir.mkdir()
    request = stylize_request(images, "k", workdir / "result.raw", preset="normal")
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
        assert not workdir.exists()
    finally:
        if parent.poll() is None:
            parent.kill()
        if worker_pid is not None and not _gone(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
