"""Messages the user reads are written once: the worker's line reaches the editor as it is."""

import errno
import io
import json
import os
from pathlib import Path

import pytest
from helpers import plugin_function
from PIL import Image

from onnxstyle.plugin import protocol as P
from onnxstyle.plugin import worker as W


def _one_job(folder: Path) -> dict:
    """A tiny job run in this process (so a fault can be injected); its one final message."""
    content, style = folder / "content.raw", folder / "style.png"
    content.write_bytes(bytes(32 * 32 * 4))
    Image.new("RGB", (32, 32), (200, 40, 40)).save(style)
    request = {
        "type": "stylize",
        "id": "j",
        "content": {"path": str(content), "width": 32, "height": 32, "format": "rgba8"},
        "output": {"path": str(folder / "out.raw")},
        "styles": [{"path": str(style)}],
        "options": {"preset": "draft", "device": "cpu"},
    }
    stream = io.BytesIO()
    W.run_job(W.Job(id="j", request=P.parse_request(json.dumps(request))), W.Channel(stream))
    (answer,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    return answer


@pytest.mark.parametrize(
    "failure", [MemoryError(), RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory")]
)
def test_out_of_memory_is_said_once_in_gimp(monkeypatch, tmp_path, failure):

    def stylize(*args, **kwargs):
        raise failure

    monkeypatch.setattr(
        W, "stylize", stylize
    )  # an allocation failure without exhausting the machine
    answer = _one_job(tmp_path)
    assert answer["kind"] == "memory"
    shown = plugin_function("error_text")(answer["kind"], answer["message"])
    assert shown == answer["message"], "the editor must show the worker's line as it is"
    assert shown.lower().count("out of memory") == 1 and shown.count("maximum size") == 1


def test_a_failed_write_is_one_line_of_kind_output_and_leaves_nothing(monkeypatch, tmp_path, capfd):
    """Disk full while the result is written (injected: a test can't fill a disk)."""
    # the engine has its own tests; here only the write matters, so the result is the content
    monkeypatch.setattr(W, "stylize", lambda content, *args, **kwargs: content)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    answer = _one_job(tmp_path)
    assert answer["kind"] == "output" and "No space left" in answer["message"], answer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.raw", "style.png"]
    assert "Traceback" not in capfd.readouterr().err
