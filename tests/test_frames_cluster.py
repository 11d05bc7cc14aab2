"""A clip's frames in chunks on a real local Ray (plugin/cluster_frames.py): two workers, the 48 px
example clip of 8 frames, chunks of 3 with 2 frames of overlap, a few steps.

One Ray session (two StyleWorkers) is shared by the module; the cancel test runs last: it ends the
session and checks that no Ray process is left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import ExitStack

import numpy as np
import pytest
from helpers import example_clip
from PIL import Image

from onnxstyle.core.engine import StyleOptions
from onnxstyle.core.errors import Cancelled, StyleError
from onnxstyle.core.flow import flicker
from onnxstyle.core.frames import FrameSequence
from onnxstyle.plugin import cluster, cluster_frames
from onnxstyle.plugin.cluster_frames import Chunk, plan_chunks

ray = pytest.importorskip("ray", reason="Ray is not installed (the [cluster] or dev extra)")
pytest.importorskip("cv2", reason="OpenCV is not installed (the [video] or dev extra)")
from test_batch import kill_all, processes_of  # noqa: E402 (after the skip: it needs Ray)

OPTIONS = StyleOptions(steps=12, max_size=48, min_size=24)
FRAMES, CHUNK, OVERLAP = 8, 3, 2
STYLE = os.path.join(os.path.dirname(__file__), "..", "examples", "swirls.jpg")


def style() -> np.ndarray:
    with Image.open(STYLE) as im:
        return np.asarray(im.convert("RGB").resize((64, 64)), np.float32) / 255


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray (its own temporary folder), two workers: (session, temporary folder, its end)."""
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
    stack = ExitStack()
    patch = stack.enter_context(pytest.MonkeyPatch.context())
    patch.setenv("RAY_TMPDIR", temp)
    patch.setenv("RAY_AUTH_MODE", "disabled")  # as test_batch: no token in ~/.ray needed
    patch.delenv("RAY_ADDRESS", raising=False)
    try:
        session = stack.enter_context(cluster.connect(None))
        session.start_workers(OPTIONS, 2)
        yield session, temp, stack
    finally:
        stack.close()
        kill_all(temp)
        shutil.rmtree(temp, ignore_errors=True)


def run(session, frames, cancel=lambda: False, report=None, temporal_weight=1000.0):
    chunks = plan_chunks(0, FRAMES, CHUNK, OVERLAP)
    return cluster_frames.session_frames(
        session, frames, chunks, [style()], OPTIONS, temporal_weight, None, OVERLAP, cancel,
        report, FRAMES,
    )  # fmt: skip


def pair_flicker(results: list[np.ndarray], contents: list[np.ndarray], t: int) -> float:
    return flicker(results[t - 1 : t + 1], contents[t - 1 : t + 1])


# --------------------------------------------------------------------------------- without Ray


def test_chunks_reach_back_by_the_overlap_and_the_bad_ones_are_one_line():
    assert plan_chunks(0, 8, 3, 2) == [Chunk(0, 0, 0, 3), Chunk(1, 1, 3, 6), Chunk(2, 4, 6, 8)]
    # a resumed clip: the first chunk starts at `start` and has no overlap
    assert plan_chunks(5, 9, 3, 1) == [Chunk(0, 5, 5, 8), Chunk(1, 7, 8, 9)]
    assert plan_chunks(8, 8, 3, 2) == []
    for chunk, overlap in ((0, 0), (3, 3), (3, -1)):
        with pytest.raises(StyleError):
            plan_chunks(0, 8, chunk, overlap)


def test_the_seams_blend_in_equal_steps_and_frames_come_out_in_order():
    chunks = plan_chunks(0, 8, 3, 2)
    seams = cluster_frames.Seams(chunks, 2)
    results = {
        c.index: [np.full((2, 2, 3), c.index, np.float32)] * (c.end - c.first) for c in chunks
    }
    assert list(seams.add(2, results[2])) == []  # early: waits for chunks 0 and 1
    out = list(seams.add(0, results[0]))
    assert [i for i, _ in out] == [0]  # frames 1 and 2 wait for chunk 1's blend
    out += list(seams.add(1, results[1]))
    assert [i for i, _ in out] == list(range(8)) and seams.finished
    values = [float(r[0, 0, 0]) for _, r in out]
    # frame 1: 2/3 chunk 0 + 1/3 chunk 1; frame 2: 1/3 + 2/3; then chunk 1 alone, then 1 → 2
    np.testing.assert_allclose(values, [0, 1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2, 2], atol=1e-6)


# --------------------------------------------------------------------------------- on Ray


def test_a_clip_in_chunks_on_two_workers_comes_back_in_order_with_seams_that_do_not_show(
    ray_session,
):
    session, _, _ = ray_session
    contents = list(example_clip(48, 48, FRAMES))
    read = []  # the input frames read so far

    def frames():
        for frame in contents:
            read.append(frame)
            yield frame

    reports, results, read_at = [], [], []
    for index, result in run(session, frames(), report=lambda *r: reports.append(r)):
        results.append((index, result))
        read_at.append(len(read))
    # read as the chunks are sent: chunks 0 and 1 (frames 0-5) when frame 0 came out, not all
    assert read_at[0] == 2 * CHUNK, read_at
    assert [i for i, _ in results] == list(range(FRAMES))
    assert reports == [(i + 1, FRAMES) for i in range(FRAMES)]
    assert all(r.shape == (48, 48, 3) and r.dtype == np.float32 for _, r in results)
    styled = [r for _, r in results]

    independent = FrameSequence([style()], OPTIONS, 0.0)
    alone = [independent.next(c) for c in contents]
    pairs = {t: pair_flicker(styled, contents, t) for t in range(1, FRAMES)}
    # (2, 3) and (5, 6): where one chunk's frames end and the next one's begin. With chunks of 3
    # most other pairs are in a blend too: docs/decisions/frames-on-ray.md has a longer clip.
    seams = [3, 6]
    others = [f for t, f in pairs.items() if t not in seams]
    assert max(pairs[t] for t in seams) <= 2 * np.mean(others), pairs
    assert flicker(styled, contents) < 0.6 * flicker(alone, contents)
    assert max(pairs[t] for t in seams) < 0.6 * flicker(alone, contents)


def test_a_resumed_clip_goes_on_from_the_last_result_without_a_seam(ray_session):
    """The frames command's resume: frames 5.. from (content, result) of frame 4, as one chunk with
    no overlap; its first frame starts from the given result (an independent start would flicker
    like independent frames, above 1.5 on this clip)."""
    session, _, _ = ray_session
    contents = list(example_clip(48, 48, FRAMES))
    before = FrameSequence([style()], OPTIONS).next(contents[4])
    chunks = plan_chunks(5, FRAMES, CHUNK, OVERLAP)
    out = list(
        cluster_frames.session_frames(
            session, iter(contents[5:]), chunks, [style()], OPTIONS, 1000.0,
            (contents[4], before), OVERLAP, lambda: False, None, FRAMES,
        )
    )  # fmt: skip
    assert [i for i, _ in out] == [5, 6, 7]
    assert pair_flicker([before, out[0][1]], contents[4:6], 1) < 0.5


def test_a_cancel_keeps_the_final_frames_stops_the_workers_and_leaves_no_ray_process(
    ray_session,
):
    """Runs last: it ends the module's Ray."""
    session, temp, stack = ray_session
    contents = list(example_clip(48, 48, FRAMES))
    yielded: list[int] = []
    started = time.monotonic()
    with pytest.raises(Cancelled):
        for index, _ in run(session, iter(contents), cancel=lambda: bool(yielded)):
            yielded.append(index)
    assert yielded and yielded == list(range(len(yielded))) and len(yielded) < FRAMES
    assert time.monotonic() - started < 30
    # every worker stopped at its next step: nothing runs on them any more
    statuses = [
        w.handle.status.options(concurrency_group="control").remote() for w in session.workers
    ]
    assert ray.get(statuses) == [None, None]
    stack.close()
    time.sleep(2)  # Ray's processes are ended by ray.shutdown; give the kernel a moment
    assert processes_of(temp) == [], "Ray processes left behind"
