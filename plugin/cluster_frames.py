"""A clip's frames on Ray (issue 17, "across machines"): the clip is cut into chunks, each chunk
runs on one StyleWorker (plugin/cluster.py) as a FrameSequence (core/frames.py), and the seams
between chunks are blended so they don't show. docs/decisions/frames-on-ray.md has the numbers.

- Chunks: frames [start, count) in pieces of `chunk`. Chunk k > 0 also styles the `overlap` frames
  before it, from a fresh FrameSequence (its first frame styled whole, each next from the last):
  by the time it reaches its own frames it has settled into its own texture.
- The seam: chunk k's results for those `overlap` frames are blended into chunk k−1's,
  out = (1 − a)·previous + a·this with a = (j + 1)/(overlap + 1) for the j-th of them, so the texture
  crosses over in steps instead of jumping at one frame pair.
- Memory: this process (the driver) reads the frames as chunks are sent, and holds at most about
  (workers + 1) chunks of input frames and results (the job loop's `admit`); results come out in
  frame order as soon as they are final (a chunk's last `overlap` frames wait for the next chunk's
  blend).
- Cancel and lost workers: Session.run's (workers stop at their next step; a chunk whose node died
  is redone on another worker). A cancel yields every frame already final, then raises Cancelled.

Ray itself is imported only by plugin/cluster.py (connect).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxstyle.core.engine import StyleOptions
from onnxstyle.core.errors import Cancelled, StyleError
from onnxstyle.core.frames import frame_at_work_size
from onnxstyle.core.images import check_image, resize

from .cluster import Done, Failed, Job, Session, _Worker, connect

ReportFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Chunk:
    """Chunk `index` styles frames first..end−1 and owns own..end−1 (first < own: the overlap)."""

    index: int
    first: int
    own: int
    end: int

    @property
    def name(self) -> str:
        return f"frames {self.first + 1}-{self.end}"  # numbered from 1, as the frames' messages


def plan_chunks(start: int, count: int, chunk: int, overlap: int) -> list[Chunk]:
    """[start, count) in pieces of `chunk` frames, each after the first reaching `overlap` back."""
    if chunk < 1:
        raise StyleError(f"a chunk must have at least 1 frame, got {chunk}")
    if not 0 <= overlap < chunk:
        raise StyleError(
            f"the overlap must be ≥ 0 and less than the chunk ({chunk}), got {overlap}"
        )
    owns = range(start, count, chunk)
    return [
        Chunk(k, own - (overlap if k else 0), own, min(own + chunk, count))
        for k, own in enumerate(owns)
    ]


def blend_weight(j: int, overlap: int) -> float:
    """The next chunk's share of the j-th overlap frame: rising in equal steps across the seam."""
    return (j + 1) / (overlap + 1)


class _Clip:
    """The input frames, read as the chunks are sent: each chunk's frames kept until its result
    comes (a lost worker's chunk is sent again), the last `overlap` read kept for the next chunk.
    Frames go out at the work size (core.engine.work_size): less to send, and what the worker
    would make of them anyway."""

    def __init__(
        self, frames: Iterator[np.ndarray], count: int, overlap: int, options: StyleOptions
    ):
        self.frames, self.count, self.overlap, self.options = frames, count, overlap, options
        self.inputs: dict[int, list[np.ndarray]] = {}
        self.recent: list[np.ndarray] = []  # the frames read last, for the next chunk's overlap
        self.first: tuple[tuple[int, ...], int] | None = None  # the first frame's size, number
        self.error: StyleError | None = None  # a bad frame: the run stops with its line

    def work(self, frame: np.ndarray, index: int) -> np.ndarray:
        """Frame `index` (from 0) checked, at the work size (core.frames.frame_at_work_size)."""
        given = np.shape(frame)[:2]
        frame = frame_at_work_size(frame, index + 1, self.first, self.options)
        self.first = self.first or (given, index + 1)
        return frame

    def load(self, chunk: Chunk) -> list[np.ndarray]:
        if chunk.index not in self.inputs:
            try:
                self.inputs[chunk.index] = self._read(chunk)
            except StyleError as exc:
                self.error = exc
                raise
        return self.inputs[chunk.index]

    def _read(self, chunk: Chunk) -> list[np.ndarray]:
        """The chunk's frames: the overlap (read for the chunk before) and its own, read now."""
        own = []
        for index in range(chunk.own, chunk.end):
            frame = next(self.frames, None)
            if frame is None:
                raise StyleError(f"the clip ended after {index} frames; expected {self.count}")
            own.append(self.work(frame, index))
        lead = self.recent[len(self.recent) - (chunk.own - chunk.first) :]
        self.recent = own[len(own) - self.overlap :]
        return lead + own

    def done(self, chunk: Chunk) -> None:
        self.inputs.pop(chunk.index, None)


class Seams:
    """The chunks' results put in frame order, the seams blended; `add` yields the frames that
    became final."""

    def __init__(self, chunks: list[Chunk], overlap: int):
        self.chunks, self.overlap = chunks, overlap
        self.waiting: dict[int, list[np.ndarray]] = {}  # results that came before their turn
        self.next = 0  # the chunk whose results go out next
        self.tail: list[np.ndarray] = []  # chunk next−1's last `overlap` results, to blend

    @property
    def finished(self) -> bool:
        return self.next == len(self.chunks)

    def add(self, index: int, results: list[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
        self.waiting[index] = results
        while self.next in self.waiting:
            chunk, results = self.chunks[self.next], self.waiting.pop(self.next)
            lead = chunk.own - chunk.first
            for j in range(lead):
                a = np.float32(blend_weight(j, self.overlap))
                yield chunk.first + j, (1 - a) * self.tail[j] + a * results[j]
            own = results[lead:]
            final = len(own) if self.next == len(self.chunks) - 1 else len(own) - self.overlap
            for j in range(final):
                yield chunk.own + j, own[j]
            self.tail = own[final:]
            self.next += 1


def distributed_frames(
    address: str | None,
    frames: Iterator[np.ndarray],
    start: int,
    count: int,
    styles: list[np.ndarray],
    options: StyleOptions,
    temporal_weight: float,
    resume: tuple[np.ndarray, np.ndarray] | None,
    chunk: int,
    overlap: int,
    cancel: Callable[[], bool],
    report: ReportFn | None,
    *,
    workers: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Frames start..count−1 of a clip styled on a local Ray (address None) or the cluster at
    `address`, in chunks (module doc): (index, result) in frame order, each result at the work
    size. `frames` gives the input frames from `start` on; `resume` is (content, result) of frame
    start−1 when going on from an earlier run. `report(frames finished, count)` whenever a frame
    is final (the finished count includes the `start` frames done before). `workers`: as
    `batch --workers` (default one per GPU, or per CPU node)."""
    chunks = plan_chunks(start, count, chunk, overlap)
    if not chunks:
        return
    with connect(address) as session:
        session.start_workers(options, workers)
        yield from session_frames(
            session, frames, chunks, styles, options, temporal_weight, resume, overlap, cancel,
            report, count,
        )  # fmt: skip


def session_frames(
    session: Session,
    frames: Iterator[np.ndarray],
    chunks: list[Chunk],
    styles: list[np.ndarray],
    options: StyleOptions,
    temporal_weight: float,
    resume: tuple[np.ndarray, np.ndarray] | None,
    overlap: int,
    cancel: Callable[[], bool],
    report: ReportFn | None,
    count: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """distributed_frames on a connected Session whose workers are started (the tests share one)."""
    ray = session.ray
    clip = _Clip(frames, count, overlap, options)
    if resume is not None:  # the frame before `start`: also at the work size, and sets the size
        content = clip.work(resume[0], chunks[0].own - 1)
        resume = (content, resize(check_image(resume[1], "the result to resume from"),
                                  *content.shape[:2]))  # fmt: skip
    seams = Seams(chunks, overlap)
    by_name = {c.name: c for c in chunks}
    jobs = [Job(c.name, lambda c=c: clip.load(c), ()) for c in chunks]
    options_ref, styles_ref, clip_id = ray.put(options), ray.put(styles), uuid.uuid4().hex

    def submit(worker: _Worker, job: Job, contents: Any):
        c = by_name[job.name]
        return worker.handle.frames.remote(
            job.name, contents, options_ref, styles_ref, temporal_weight,
            resume if c.index == 0 else None, c.first, clip_id,
        )  # fmt: skip

    def admit(job: Job) -> bool:
        """Chunks sent at most `workers` ahead of the first whose results aren't out."""
        return by_name[job.name].index <= seams.next + len(session.workers)

    for event in session.run(jobs, submit, cancel, admit):
        if isinstance(event, Failed):
            if clip.error is not None:
                raise clip.error
            if event.message == "cancelled":
                raise Cancelled()
            raise StyleError(f"{event.job.name}: {event.message}")
        if isinstance(event, Done):
            c = by_name[event.job.name]
            clip.done(c)
            for index, result in seams.add(c.index, event.result):  # type: ignore[arg-type]
                if report is not None:
                    report(index + 1, count)
                yield index, result
    if not seams.finished:
        raise Cancelled()
