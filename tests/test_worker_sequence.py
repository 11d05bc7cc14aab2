"""The worker's "sequence" field: the frames of an animation styled in order, through one warm
worker, as the GIMP plug-in's "on all layers" sends them (real worker process, real engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_worker import WorkerProcess, stylize_request

from onnxstyle.core.frames import DEFAULT_TEMPORAL_WEIGHT
from onnxstyle.plugin import protocol as P

SIZE = 48
FAST = {"steps": 4, "scales": 1}  # a frame in a second or two on the test machine


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> dict[str, Path]:
    """Four 48 px frames of a textured square moving right over stripes, and a style image."""
    folder = tmp_path_factory.mktemp("sequence")
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    paths = {}
    for t in range(4):
        rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
        rgba[..., 0] = 60 + 40 * np.sin(yy / 3.0)
        rgba[..., 1] = 90
        rgba[..., 2] = 140
        square = (abs(xx - 16 - 3 * t) < 8) & (abs(yy - 24) < 8)
        rgba[square, 0] = 230
        rgba[square, 1] = np.where((xx + yy)[square] % 4 < 2, 200, 40)
        rgba[..., 3] = 255
        rgba[:4, :4, 3] = 0  # alpha goes through untouched
        path = folder / f"frame{t}.raw"
        rgba.tofile(path)
        paths[f"frame{t}"] = path
    rng = np.random.default_rng(3)
    stripes = (np.sin(xx[..., None] / 2.0 + np.array([0, 2, 4])) + 1) * 110
    stripes += rng.integers(0, 30, stripes.shape)
    Image.fromarray(np.clip(stripes, 0, 255).astype(np.uint8)).save(folder / "style.png")
    paths["style"] = folder / "style.png"
    paths["folder"] = folder
    return paths


def frame_request(frames, job_id: str, index: int, out: Path, *, content: int | None = None,
                  sequence_id: str = "anim", weight: float = 1.0, **options) -> dict:  # fmt: skip
    """Frame `index` of sequence `sequence_id` (its content: frame `content`, else `index`)."""
    images = {"content": frames[f"frame{index if content is None else content}"]}
    request = stylize_request(images, job_id, out, style=frames["style"], **{**FAST, **options})
    request["content"].update(width=SIZE, height=SIZE)
    request["sequence"] = {"id": sequence_id, "index": index, "temporal_weight": weight}
    return request


@pytest.fixture(scope="module")
def worker():
    w = WorkerProcess()
    yield w
    w.close()


# ------------------------------------------------------------------ refused before any work

BAD_SEQUENCES = [
    ({"id": "", "index": 0, "temporal_weight": 1.0}, '"sequence.id"'),
    ({"id": "x" * (P.SEQUENCE_ID_CHARS + 1), "index": 0, "temporal_weight": 1.0}, '"sequence.id"'),
    ({"id": 7, "index": 0, "temporal_weight": 1.0}, '"sequence.id"'),
    ({"id": "a", "index": -1, "temporal_weight": 1.0}, '"sequence.index"'),
    ({"id": "a", "index": 1.0, "temporal_weight": 1.0}, '"sequence.index"'),
    ({"id": "a", "index": True, "temporal_weight": 1.0}, '"sequence.index"'),
    ({"id": "a", "index": 0, "temporal_weight": -0.5}, '"sequence.temporal_weight"'),
    ({"id": "a", "index": 0, "temporal_weight": 1e39}, '"sequence.temporal_weight"'),
    ({"id": "a", "index": 0}, '"sequence.temporal_weight"'),
    ({"id": "a", "index": 0, "temporal_weight": 1.0, "fps": 25}, '"fps"'),
    ([0, 1], '"sequence" must be an object'),
]


@pytest.mark.parametrize("sequence, words", BAD_SEQUENCES, ids=[w for _, w in BAD_SEQUENCES])
def test_a_bad_sequence_field_is_one_protocol_line(worker, frames, tmp_path, sequence, words):
    request = frame_request(frames, "bad", 0, tmp_path / "o.raw")
    request["sequence"] = sequence
    worker.send(request)
    final, progress = worker.until_final("bad")
    assert not progress
    assert final["type"] == "error" and final["kind"] == "protocol", final
    assert words in final["message"] and "\n" not in final["message"], final
    assert not (tmp_path / "o.raw").exists()


def test_a_frame_of_no_sequence_under_way_says_index_0_is_expected(worker, frames, tmp_path):
    worker.send(frame_request(frames, "late", 2, tmp_path / "o.raw", sequence_id="never"))
    final, progress = worker.until_final("late")
    assert not progress and final["type"] == "error" and final["kind"] == "protocol", final
    assert '"never"' in final["message"] and "expected index 0" in final["message"], final
    assert not (tmp_path / "o.raw").exists()


def _pixels(path: Path) -> np.ndarray:
    return np.fromfile(path, np.uint8).reshape(SIZE, SIZE, 4)


def test_frames_in_order_through_one_worker_then_a_wrong_index_and_a_cancel(frames, tmp_path):
    """Frames 0-2 of one sequence; a repeated index, other options, a cancelled frame (which
    leaves the sequence where it was: the same index comes again and goes through)."""
    w = WorkerProcess()
    try:
        out = [tmp_path / f"anim{i}.raw" for i in range(4)]
        for i in range(3):
            w.send(frame_request(frames, f"f{i}", i, out[i], weight=DEFAULT_TEMPORAL_WEIGHT))
            final, progress = w.until_final(f"f{i}")
            assert final["type"] == "result", final
            assert progress and progress[-1]["fraction"] == 1.0
            styled, content = _pixels(out[i]), _pixels(frames[f"frame{i}"])
            assert np.array_equal(styled[..., 3], content[..., 3]), "alpha must go through"
            assert np.abs(styled[..., :3].astype(int) - content[..., :3]).mean() > 2.0

        w.send(frame_request(frames, "again", 1, tmp_path / "x.raw"))
        final, _ = w.until_final("again")
        assert final["kind"] == "protocol" and "expected index 3" in final["message"], final
        w.send(frame_request(frames, "other", 3, tmp_path / "x.raw", weight=5.0))
        final, _ = w.until_final("other")
        assert final["kind"] == "protocol" and "temporal weight" in final["message"], final
        assert not (tmp_path / "x.raw").exists()

        request = frame_request(frames, "stop", 3, out[3], weight=DEFAULT_TEMPORAL_WEIGHT)
        w.send_raw(P.encode(request) + P.encode({"type": "cancel", "id": "stop"}))
        final, _ = w.until_final("stop")
        assert final == {"type": "cancelled", "id": "stop"} and not out[3].exists()
        w.send(frame_request(frames, "f3", 3, out[3], weight=DEFAULT_TEMPORAL_WEIGHT))
        final, _ = w.until_final("f3")
        assert final["type"] == "result", final

        # frame 2 on its own (a new sequence, index 0) is another picture: the sequence's frame 2
        # started from frame 1's result, warped
        solo = tmp_path / "solo.raw"
        w.send(frame_request(frames, "solo", 0, solo, content=2, sequence_id="solo"))
        final, _ = w.until_final("solo")
        assert final["type"] == "result", final
        assert np.abs(_pixels(solo).astype(int) - _pixels(out[2])).mean() > 1.0
        # and "anim" was dropped for it
        w.send(frame_request(frames, "gone", 4, tmp_path / "x.raw", content=3))
        final, _ = w.until_final("gone")
        assert final["kind"] == "protocol" and "expected index 0" in final["message"], final
    finally:
        w.close()
