"""The editor's client (plugin/client.py) against a local worker and against broken ones: files
when both sides share them, frames otherwise, and every failure one line. (Behind ssh:
tests/test_remote.py.)"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sshd import worker_args

from onnxstyle.core.errors import StyleError
from onnxstyle.plugin import protocol as P
from onnxstyle.plugin.client import JobError, Pixels, WorkerClient, WorkerError, worker_command

OPTIONS = {"preset": "draft", "device": "cpu", "steps": 2, "scales": 1, "max_size": 32}


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[Pixels, Path]:
    folder = tmp_path_factory.mktemp("client")
    rng = np.random.default_rng(11)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / "style.png")
    content = rng.integers(0, 256, (40, 48, 4), dtype=np.uint8).tobytes()
    return Pixels(48, 40, "rgba8", content), folder / "style.png"


def test_files_when_shared_frames_otherwise_and_the_same_pixels(job):
    content, style = job
    results, folders = {}, []
    for files in (True, False):
        with WorkerClient(worker_args(), files=files) as worker:
            assert worker.hello().files is files
            results[files] = bytes(worker.stylize(content, [(style, 1.0)], OPTIONS).data)
            folders.append(worker._folder)
    assert results[True] == results[False]
    assert results[True][3::4] == content.data[3::4], "alpha comes back unchanged"
    assert not any(folder.exists() for folder in folders), "the client's temporary folder is left"


def test_a_refused_job_is_a_job_error_and_the_worker_goes_on(job):
    content, style = job
    with WorkerClient(worker_args(), files=False) as worker:
        with pytest.raises(JobError) as caught:
            worker.stylize(content, [(style, 1.0)], {**OPTIONS, "steps": 0})
        assert caught.value.kind == "protocol" and '"options.steps"' in str(caught.value)
        assert worker.ping() > 0


FAKE_V1 = r"""
import json, sys
for line in sys.stdin:
    if json.loads(line)["type"] == "hello":
        print(json.dumps({"type": "hello", "protocol": 1, "onnxstyle": "0.0.9", "python": "x",
                          "providers": []}), flush=True)
"""
FAKE_OLD_STRICT = r"""
import json, sys
for line in sys.stdin:
    print(json.dumps({"type": "error", "id": None, "kind": "protocol",
                      "message": 'unknown field "files" in a "hello" request'}), flush=True)
"""
FAKE_HUGE_PONG = r"""
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message["type"] == "hello":
        print(json.dumps({"type": "hello", "protocol": 2, "files": False}), flush=True)
    else:
        print(json.dumps({"type": "pong", "id": message["id"], "bytes": 0, "frame": 10**9}),
              flush=True)
        sys.stdout.write("x" * 100)
        sys.stdout.flush()
"""

FAKE_HELLO_TWICE = r"""
import json, sys
for line in sys.stdin.buffer:  # binary: the frame is read from the same buffer
    message = json.loads(line)
    if message["type"] == "hello":
        for _ in range(2):
            print(json.dumps({"type": "hello", "protocol": 2, "files": False}), flush=True)
    elif message["type"] == "stylize":
        sys.stdin.buffer.read(message["frame"])
        print(json.dumps({"type": "error", "id": message["id"], "kind": "internal",
                          "message": "no GPU here"}), flush=True)
"""


def test_a_stray_hello_answer_during_a_job_is_skipped(job):
    """A hello's answer has no id: one arriving while a job runs is skipped like any answer
    that is not the job's, and the job's own answer still comes through."""
    content, style = job
    with WorkerClient([sys.executable, "-c", FAKE_HELLO_TWICE], files=False) as worker:
        with pytest.raises(JobError, match="no GPU here"):
            worker.stylize(content, [(style, 1.0)], OPTIONS)


@pytest.mark.parametrize("script", [FAKE_V1, FAKE_OLD_STRICT], ids=["answers-v1", "refuses-files"])
def test_a_version_1_worker_is_one_line_naming_the_side_to_update(script):
    with WorkerClient([sys.executable, "-c", script]) as worker:
        with pytest.raises(WorkerError, match="speaks protocol 1; this onnxstyle needs 2: update"):
            worker.hello()


def test_a_frame_larger_than_asked_for_is_refused_before_it_is_read():
    with WorkerClient([sys.executable, "-c", FAKE_HUGE_PONG]) as worker:
        worker.hello()
        with pytest.raises(WorkerError, match="a frame of 1000000000 bytes, 0 expected"):
            worker.ping()


FAILURES = [
    (["/nonexistent/python", "-m", "x"], "can't start the worker command /nonexistent/python"),
    (["false"], "the worker exited with status 1"),
    ([sys.executable, "-c", "import sys; sys.exit('boom: no GPU here')"], "status 1: boom"),
    ([sys.executable, "-c", "print('Welcome to gpu-box!')"], "(stdout) Welcome to gpu-box!"),
    (
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-p", "1", "127.0.0.1", "true"],
        "the link to the worker dropped (ssh exited with status 255): ssh: connect to host",
    ),
]


@pytest.mark.parametrize("command, words", FAILURES, ids=lambda v: str(v)[:30])
def test_a_worker_command_that_fails_is_one_line(command, words):
    if command[0] == "ssh" and not shutil.which("ssh"):
        pytest.skip("no ssh client")
    with pytest.raises(WorkerError) as caught:
        with WorkerClient(command) as worker:
            worker.hello(timeout=60)
    assert words in str(caught.value) and "\n" not in str(caught.value), caught.value
    assert isinstance(caught.value, StyleError)  # the CLI prints it as one line, exit 2


def test_the_worker_command_is_split_like_a_shell():
    assert worker_command("ssh -p 22 'gpu box' /venv/bin/python -m w") == [
        "ssh",
        "-p",
        "22",
        "gpu box",
        "/venv/bin/python",
        "-m",
        "w",
    ]
    assert worker_command(["a b", "c"]) == ["a b", "c"]
    for bad in ("", "   ", "ssh 'unclosed"):
        with pytest.raises(WorkerError):
            worker_command(bad)


def test_a_style_file_too_large_to_send_is_refused_here(job, tmp_path, monkeypatch):
    content, _ = job
    big = tmp_path / "big.png"
    big.write_bytes(bytes(1000))
    monkeypatch.setattr(P, "MAX_STYLE_BYTES", 999)
    with WorkerClient(worker_args(), files=False) as worker:
        with pytest.raises(StyleError, match="a style image may have"):
            worker.stylize(content, [(big, 1.0)], OPTIONS)
