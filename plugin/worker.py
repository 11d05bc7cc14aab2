"""The editor worker: `python -m onnxstyle.plugin.worker`.

Speaks the JSON-lines protocol of `onnxstyle.plugin.protocol` on stdin/stdout (frames
included), runs one stylize job at a time with the engine, and exits when stdin closes
(cancelling a running job within one engine step). Logs go to stderr only: stdout carries
protocol lines and frames and nothing else, so the real stdout is kept private and fd 1 is
pointed at stderr. Exit status: 0 at the end of stdin (a frame cut short included: the link
dropped), 2 when a "frame" can't be followed (the next message can't be found).

The editor starts it in its own process group/session (start_new_session on Unix, a
kill-on-close Job object on Windows); the GIMP plug-in does both. Behind ssh, the remote sshd
closes its stdin when the connection drops, and it ends the same way; it makes no folder of its
own (in-band parts stay in memory), so nothing is left behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from onnxstyle.core import errors
from onnxstyle.core.engine import StyleOptions, check_sizes, resize, style_side, stylize
from onnxstyle.core.errors import Cancelled, ImageError, StyleError, first_line
from onnxstyle.core.files import (
    NotRegularFile,
    open_regular,
    read_exactly,
    same_file,
    write_all,
    write_atomic,
    write_problem,
)
from onnxstyle.core.graph import StyleGraph
from onnxstyle.core.imageio import MAX_PIXELS, EncodedImage, image_size, load_image
from onnxstyle.core.layers import MIN_SIDE
from onnxstyle.core.runtime import available_devices, resolve_device
from onnxstyle.plugin import protocol as P

log = logging.getLogger("onnxstyle.worker")

PROGRESS_INTERVAL_S = 0.05  # don't flood the editor's pipe with progress lines
GRAPHS_KEPT = 2  # loaded graph pairs kept across jobs (each holds two sessions' weights)
CHUNK = 1 << 20  # frames are skipped and zero-filled in pieces of this size, never held whole
ZEROS = bytes(CHUNK)
EXIT_LOST_FRAMING = 2  # a "frame" that can't be followed: the next message can't be found


class Channel:
    """Thread-safe writer of protocol lines and frames: a header and its frame go out under one
    lock, so a progress line from the job's thread never lands inside a frame."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any], *frame: Any) -> None:
        """One message; `frame`: the bytes-like pieces of its frame, written right after it."""
        data = P.encode(message)
        with self._lock:
            try:
                write_all(self._stream, data)
                for piece in frame:
                    write_all(self._stream, piece)
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the editor is gone; stdin EOF ends us shortly


def _zeros(count: int) -> list[memoryview]:
    """`count` zero bytes as views of one shared piece (a ping's download, never allocated whole)."""
    return [memoryview(ZEROS)[: min(CHUNK, count - at)] for at in range(0, count, CHUNK)]


class GraphCache:
    """Loaded StyleGraphs kept across jobs, so an editor's next job (a preview of another size, then
    the final one) starts at once: creating the sessions takes seconds. One job runs at a time, so
    only one thread uses it at a time.

    A graph is kept under the device its sessions actually run on (`concrete_device`), never under
    the one asked for: "auto" may fall back to the CPU when the GPU it picked can't start a session,
    and a later job forcing that GPU must then fail (DeviceUnavailable), not run on that CPU graph."""

    def __init__(self, keep: int = GRAPHS_KEPT) -> None:
        self._keep = keep
        self._graphs: dict[tuple, StyleGraph] = {}
        # what "auto" resolved to -> the device its graph fell back to, so auto doesn't retry the GPU
        # (seconds each time) on every job; a forced device never reads this
        self._auto_fell_back: dict[str, str] = {}

    def get(self, options: StyleOptions) -> StyleGraph:
        model_dir = None if options.model_dir is None else os.path.realpath(options.model_dir)
        device = resolve_device(options.device)  # a forced device that can't work raises here
        if options.device == "auto":
            device = self._auto_fell_back.get(device, device)
        graph = self._graphs.pop((options.pooling, device, model_dir), None)
        if graph is None:
            log.info("loading the %s-pooling graphs for device %s", options.pooling, options.device)
            graph = StyleGraph.load(options.pooling, options.device, options.model_dir)
            if graph.concrete_device != device:  # only "auto" falls back (make_session)
                self._auto_fell_back[device] = graph.concrete_device
        self._graphs[(options.pooling, graph.concrete_device, model_dir)] = graph  # newest last
        while len(self._graphs) > self._keep:
            del self._graphs[next(iter(self._graphs))]
        return graph


class Sequence:
    """An animation under way: the engine's FrameSequence (its Gram targets and the last result)
    and what every later frame must share with frame 0."""

    def __init__(self, frame: P.SequenceFrame, key: tuple, size: tuple[int, int], frames) -> None:
        self.id = frame.id
        self.key = key  # styles, options and temporal weight of frame 0
        self.size = size  # the content's (height, width)
        self.frames = frames  # core.frames.FrameSequence: .index, the frames finished
        self.notes_shown = 0


class Sequences:
    """The one sequence a worker keeps: the latest id. One job runs at a time, and only a job's
    thread touches it, so it needs no lock."""

    def __init__(self) -> None:
        self.current: Sequence | None = None

    def continued(self, request: P.Stylize) -> Sequence | None:
        """The sequence a frame continues, checked (ProtocolError naming the index expected);
        None for frame 0, which drops any sequence kept."""
        frame = request.sequence
        assert frame is not None
        if frame.index == 0:
            self.current = None  # its memory goes before the new one's
            return None
        current = self.current
        if current is None or current.id != frame.id:
            raise P.ProtocolError(
                f'sequence "{frame.id}" is not under way (the worker keeps the latest one only): '
                "expected index 0 to start it"
            )
        # a frame whose result could not be sent ended the sequence: index counts results sent
        finished = current.frames.index
        if frame.index != finished:
            raise P.ProtocolError(
                f'sequence "{frame.id}" expected index {finished} (frame '
                f"{finished - 1} was the last to finish), not {frame.index}"
            )
        if _sequence_key(request) != current.key:
            raise P.ProtocolError(
                f'sequence "{frame.id}" was started with other styles, options or temporal weight: '
                "send them as at index 0, or start again at index 0"
            )
        if (request.content.height, request.content.width) != current.size:
            height, width = current.size
            raise ImageError(
                f"frame {frame.index} is {request.content.width}x{request.content.height} px, "
                f"the sequence's frames are {width}x{height}: every frame must have one size"
            )
        return current

    def start(self, request: P.Stylize, styles: list, options: StyleOptions, graph) -> Sequence:
        """Frame 0: a new FrameSequence with these styles (their Gram targets, once)."""
        # imported here: OpenCV (the optical flow) loads only for animations, not for every worker
        from onnxstyle.core.frames import FrameSequence  # noqa: PLC0415

        frame = request.sequence
        assert frame is not None
        frames = FrameSequence(styles, options, frame.temporal_weight, graph=graph)
        size = (request.content.height, request.content.width)
        self.current = Sequence(frame, _sequence_key(request), size, frames)
        return self.current


def _sequence_key(request: P.Stylize) -> tuple:
    """What frame 0 fixes for the whole sequence: the styles (in-band ones by their bytes'
    digest), the options and the temporal weight."""
    assert request.sequence is not None
    styles = tuple(
        (s.path, s.weight, None if s.data is None else hashlib.sha256(s.data).digest())
        for s in request.styles
    )
    return styles, request.options, request.sequence.temporal_weight


BUSY_MESSAGE = "a job is already running; cancel it or wait"


class OutputError(StyleError):
    """The result can't be written where the request says (kind "output")."""


@dataclass
class Job:
    id: str
    request: P.Stylize
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


def _kind_of(exc: BaseException) -> P.ErrorKind:
    if isinstance(exc, OutputError):
        return P.ErrorKind.OUTPUT
    if isinstance(exc, errors.ImageError):
        return P.ErrorKind.IMAGE
    if isinstance(exc, errors.DeviceUnavailable):
        return P.ErrorKind.DEVICE
    if isinstance(exc, errors.ModelError):
        return P.ErrorKind.MODEL
    if errors.is_out_of_memory(exc):
        return P.ErrorKind.MEMORY
    if isinstance(exc, errors.StyleError):
        return P.ErrorKind.STYLE
    return P.ErrorKind.INTERNAL


def check_content_size(spec: P.PixelFile) -> None:
    """The content's declared size against the engine's limits (before its file or frame is read)."""
    width, height = spec.width, spec.height
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"the content is {width}x{height} px: more than the "
            f"{MAX_PIXELS // 1_000_000} megapixels onnxstyle works on"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"the content is {width}x{height} px; style transfer needs at least {MIN_SIDE} px a side"
        )


def _read_content(spec: P.PixelFile):
    """The content pixels (a file, or the frame's part) -> (rgb float32 [H,W,3], alpha or None).

    Its size is checked against the engine's limits, and a file is checked to be a regular file
    of exactly width × height × channels × bytes, before a byte is read; then that many are read."""
    check_content_size(spec)
    data = spec.data if spec.path is None else _read_pixel_file(Path(spec.path), spec)
    return _pixels_to_float(data, spec)


def _read_pixel_file(path: Path, spec: P.PixelFile) -> bytearray:
    width, height = spec.width, spec.height
    try:
        with open_regular(path) as file:
            found = os.fstat(file.fileno()).st_size
            if found != spec.size:
                raise ImageError(
                    f"content pixel file {path.name} has {found} bytes, expected "
                    f"{spec.size} for {width}x{height} {spec.format}"
                )
            data = read_exactly(file, spec.size)
    except NotRegularFile:
        raise ImageError(f"{path}: not a regular file (a pipe or a device?)") from None
    except (OSError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ImageError(f"can't read the content pixels {path}: {reason}") from None
    return data


def _pixels_to_float(data: Any, spec: P.PixelFile):
    width, height = spec.width, spec.height
    channels, depth = P.PIXEL_FORMATS[spec.format]
    if depth == 1:
        pixels = (
            np.frombuffer(data, dtype=np.uint8).reshape(height, width, channels).astype(np.float32)
            / 255.0
        )
    else:
        pixels = (
            np.frombuffer(data, dtype="<f4").reshape(height, width, channels).astype(np.float32)
        )
        pixels = np.nan_to_num(pixels, nan=0.0, posinf=1.0, neginf=0.0)
    rgb = np.ascontiguousarray(np.clip(pixels[..., :3], 0.0, 1.0))
    alpha = pixels[..., 3].copy() if channels == 4 else None
    return rgb, alpha


def _check_output(request: P.Stylize) -> None:
    """Before any work: the output file can be written, and is none of the input files."""
    output = request.output
    if output is None:  # the result goes back in-band
        return
    problem = write_problem(output)
    if problem:
        raise OutputError(f"can't write the result {output}: {problem}")
    inputs = [request.content.path] + [style.path for style in request.styles]
    for name in filter(None, inputs):
        if same_file(output, name):
            raise OutputError(f"the output {output} is an input ({name}); it would be overwritten")


def _encode_pixels(rgb, alpha, fmt: str) -> bytes:
    """Pixels in protocol format `fmt` (alpha as it came in)."""
    channels, depth = P.PIXEL_FORMATS[fmt]
    planes = [np.clip(rgb, 0.0, 1.0)]
    if channels == 4:
        planes.append(alpha[..., None])
    pixels = np.concatenate(planes, axis=2)
    if depth == 1:
        return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8).tobytes()
    return pixels.astype("<f4").tobytes()


def _write_output(path: Path, data: bytes) -> None:
    """Written to a temporary name and renamed, so `path` is always whole."""
    try:
        write_atomic(path, data)  # its temporary file is gone whatever fails
    except OSError as exc:
        raise OutputError(f"can't write the result {path}: {exc.strerror or exc}") from None


def _engine_options(options: P.JobOptions, weights: list[float]) -> StyleOptions:
    """Checked protocol options -> engine StyleOptions.

    "strength" is the engine's strength; "preserve_colors": "none" is the engine's None; an absent
    or null "max_size" keeps the preset's; several styles are blended with their relative weights;
    engine options override the preset's."""
    overrides: dict[str, Any] = {
        "strength": options.strength,
        "preserve_colors": None if options.preserve_colors == "none" else options.preserve_colors,
        "device": options.device,
        "seed": options.seed,
        **dict(options.engine),
    }
    if options.max_size is not None:
        overrides["max_size"] = options.max_size
    if len(weights) > 1:
        overrides["style_blend"] = tuple(weights)  # relative: the engine normalises them
    return StyleOptions.from_preset(options.preset, **overrides)


def _load_styles(job: Job, longer_at_least: int) -> list:
    """The style images, decoded no larger than the run needs; a cancel is honoured between them."""
    images = []
    for spec in job.request.styles:
        images.append(load_image(_style_source(spec), longer_at_least).rgb)
        _stop_if_cancelled(job)
    return images


def _height_width(size: tuple[int, int]) -> tuple[int, int]:
    """image_size's (width, height) in the engine's order."""
    width, height = size
    return height, width


def _style_source(spec: P.StyleSpec) -> str | EncodedImage:
    """A style's file, or its bytes from the frame (decoded in memory, checked alike)."""
    return spec.path if spec.path is not None else EncodedImage(spec.label, spec.data)


def _stop_if_cancelled(job: Job) -> None:
    """Between the phases of a job (the engine itself checks before every step)."""
    if job.cancel.is_set():
        raise Cancelled()


def _progress_message(job_id: str, p: Any) -> dict[str, Any]:
    """An engine Progress as a protocol progress line."""
    return P.progress(job_id, p.scale, p.scales, p.step, p.steps, p.loss, p.eta_s)


def _memory_message(exc: BaseException) -> str:
    """The whole line an editor shows for kind "memory", advice included (editors add nothing)."""
    detail = first_line(exc) if str(exc).strip() else ""
    return (
        f"Out of memory{f' ({detail})' if detail else ''}: try a smaller maximum size, the draft "
        "preset or a smaller selection."
    )


# A final message and its frame's pieces (the result's pixels when they go back in-band).
Final = tuple[dict[str, Any], tuple[Any, ...]]


def run_job(
    job: Job,
    out: Channel,
    graphs: GraphCache | None = None,
    sequences: Sequences | None = None,
) -> None:
    """Run one stylize request and send its single final message (result, error or cancelled)."""
    final, frame = execute(job, out, graphs or GraphCache(), sequences or Sequences())
    out.send(final, *frame)


def execute(job: Job, out: Channel, graphs: GraphCache, sequences: Sequences) -> Final:
    """Run one stylize request, sending its progress; returns its final message (not sent)."""
    try:
        return _execute(job, out, graphs, sequences)
    except Exception as exc:  # every failure is one final message
        return _failure(job, exc), ()


def _execute(job: Job, out: Channel, graphs: GraphCache, sequences: Sequences) -> Final:
    started = time.monotonic()
    request = job.request
    try:
        # a frame of an animation: in order, before anything else is looked at
        sequence = sequences.continued(request) if request.sequence else None
        _check_output(request)
        style_options = _engine_options(request.options, [s.weight for s in request.styles])
        styles, longer = [], 0
        if sequence is None:  # a later frame reuses frame 0's styles (their Gram targets)
            size = (request.content.height, request.content.width)
            style_sizes = [_height_width(image_size(_style_source(s))) for s in request.styles]
            height, width = check_sizes(size, style_sizes, style_options)  # before any decode
            longer = style_side(height, width, style_options.style_scale)
        content, alpha = _read_content(request.content)
        _stop_if_cancelled(job)
        if sequence is None:
            styles = _load_styles(job, longer)
        graph = graphs.get(style_options)
        _stop_if_cancelled(job)

        last = [0.0]

        def on_progress(p: Any) -> None:
            now = time.monotonic()
            done = p.step >= p.steps and p.scale >= p.scales
            if now - last[0] >= PROGRESS_INTERVAL_S or done:
                last[0] = now
                out.send(_progress_message(job.id, p))

        with np.errstate(over="ignore", invalid="ignore"):  # the engine reports inf/NaN itself
            if request.sequence is None:
                result = stylize(
                    content,
                    styles,
                    style_options,
                    progress=on_progress,
                    cancel=job.cancel.is_set,
                    graph=graph,
                )
                _stop_if_cancelled(job)
            else:
                if sequence is None:
                    sequence = sequences.start(request, styles, style_options, graph)
                # on Cancelled or an error the FrameSequence is as it was: the index may come again
                result = sequence.frames.next(
                    content, progress=on_progress, cancel=job.cancel.is_set
                )
                # finished: a cancel that comes now is too late (the sequence moved on)
        height, width = content.shape[:2]
        try:
            result = resize(result, height, width)  # the engine may work smaller; no-op if not
            data = _encode_pixels(result, alpha, request.content.format)
            del result, content, alpha  # the answer may be large: drop the floats first
            if request.output is not None:
                _write_output(Path(request.output), data)
        except BaseException:
            if sequence is not None:  # it moved on to a frame the editor never gets
                sequences.current = None
            raise
        notes = [] if sequence is None else _new_notes(sequence)
        message = P.result(
            job.id,
            request.output,
            width,
            height,
            request.content.format,
            time.monotonic() - started,
            notes,
        )
        return message, (() if request.output is not None else (data,))
    except Cancelled:
        log.info("job %s cancelled", job.id)
        return P.cancelled(job.id), ()


def _new_notes(sequence: Sequence) -> list[str]:
    """The engine's one-line notes (a flow that failed on a frame, ...) not yet sent: logged, and
    sent once with the frame's result, for the editor to show."""
    notes = sequence.frames.notes[sequence.notes_shown :]
    for note in notes:
        log.warning("sequence %s: %s", sequence.id, note)
    sequence.notes_shown = len(sequence.frames.notes)
    return notes


def _failure(job: Job, exc: Exception) -> dict[str, Any]:
    """A failed job's one final message."""
    if isinstance(exc, P.ProtocolError):
        return P.error(job.id, P.ErrorKind.PROTOCOL, str(exc))
    if isinstance(exc, MemoryError):
        return P.error(job.id, P.ErrorKind.MEMORY, _memory_message(exc))
    if isinstance(exc, StyleError):
        return P.error(job.id, _kind_of(exc), str(exc))
    # a bug or an unmapped library error: one line out, details to stderr
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    kind = _kind_of(exc)
    if kind == P.ErrorKind.MEMORY:
        return P.error(job.id, kind, _memory_message(exc))
    message = f"internal error in the worker ({type(exc).__name__}: {exc}); details on its stderr"
    return P.error(job.id, kind, message)


def hello(request: P.Hello) -> dict[str, Any]:
    """The answer to a hello, in the version the editor asked for (at most ours)."""
    try:
        import onnxruntime  # noqa: PLC0415 (optional until a session is made)

        providers = list(onnxruntime.get_available_providers())
        devices = available_devices() if request.spoken >= 2 else []
    except Exception as exc:  # still answer: the editor shows what's wrong
        providers, devices = [], []
        log.warning("onnxruntime unavailable: %s", exc)
    try:
        onnxstyle_version = version("onnxstyle")
    except Exception:
        onnxstyle_version = "unknown"
    return P.hello_reply(
        onnxstyle_version,
        sys.executable,
        providers,
        protocol=request.spoken,
        devices=devices,
        files=request.files is not None and files_shared(request.files),
    )


def files_shared(probe: P.FilesProbe) -> bool:
    """Whether the editor's probe file holds its nonce here: then both see the same files. Read
    like any input: opened without blocking, a regular file, at most NONCE_FILE_BYTES."""
    try:
        with open_regular(probe.path) as file:
            data = file.read(P.NONCE_FILE_BYTES + 1)
    except (OSError, ValueError):  # missing, a FIFO, a folder, a NUL in the name: not shared
        return False
    return data == probe.nonce.encode("utf-8")


class Worker:
    """Reads requests until EOF; runs one job at a time, each in its own thread.

    A "stylize" while a job runs is refused ("busy"), except right after that job was cancelled:
    then it waits (one at most) and starts once the cancelled job has sent its final message."""

    JOIN_S = 30.0  # at EOF: how long a cancelled job may take to stop (a step, a session load)

    def __init__(self, stdin: BinaryIO, out: Channel, graphs: GraphCache | None = None) -> None:
        self.stdin = stdin
        self.out = out
        self.graphs = graphs or GraphCache()
        self.sequences = Sequences()  # the animation under way, frame after frame
        self.job: Job | None = None  # the running job
        self.waiting: Job | None = None  # a job sent after the running one was cancelled
        self._lock = threading.Lock()

    def handle(self, line: bytes) -> int | None:
        """One request line and its frame: answered here (hello, ping, a bad request) or handed to
        a job thread. None to go on reading; an exit status when the stream can't go on."""
        try:
            message = P.decode_object(line)
            frame = P.frame_length(message)
        except P.FrameError as exc:
            why = f"{exc}; the next request can't be found, the worker stops"
            self.out.send(P.error(exc.id, P.ErrorKind.PROTOCOL, why))
            return EXIT_LOST_FRAMING
        except P.ProtocolError as exc:  # not a JSON object: it declares no frame
            self.out.send(P.error(exc.id, P.ErrorKind.PROTOCOL, str(exc)))
            return None
        try:
            request = P.parse_request(message)
        except P.ProtocolError as exc:
            return self._answer_after_frame(frame, P.error(exc.id, P.ErrorKind.PROTOCOL, str(exc)))
        if isinstance(request, P.Hello):
            self.out.send(hello(request))
        elif isinstance(request, P.Ping):
            return self._pong(request)
        elif isinstance(request, P.Stylize):
            return self._receive(request)
        else:
            self._cancel(request.id)
        return None

    def _answer_after_frame(
        self, frame: int, answer: dict[str, Any], *reply: bytes | memoryview
    ) -> int | None:
        """Skip a refused (or pinged) request's frame (never held), then answer with the reply's
        bytes: the stream stays in step."""
        try:
            self._skip(frame)
        except EOFError as exc:
            return self._cut_short(exc)
        self.out.send(answer, *reply)
        return None

    def _skip(self, count: int) -> None:
        while count > 0:
            piece = self.stdin.read(min(CHUNK, count))
            if not piece:
                raise EOFError(f"{count} bytes short")
            count -= len(piece)

    def _cut_short(self, exc: EOFError) -> int:
        """stdin ended inside a frame: the link dropped (or the editor stopped mid-send)."""
        log.info("stdin ended inside a frame (%s): the editor's link dropped", exc)
        message = f"the request's frame ended {exc}: the link closed"
        self.out.send(P.error(None, P.ErrorKind.PROTOCOL, message))
        return 0

    def _pong(self, request: P.Ping) -> int | None:
        answer = P.pong(request.id, request.frame, request.reply_bytes)
        return self._answer_after_frame(request.frame, answer, *_zeros(request.reply_bytes))

    def _receive(self, request: P.Stylize) -> int | None:
        """A stylize: its frame read (after the checks that need no bytes of it), then submitted."""
        refusal = self._refusal(request)
        if refusal is not None:
            return self._answer_after_frame(request.frame, refusal)
        if request.frame:
            try:
                request = request.with_frame(read_exactly(self.stdin, request.frame))
            except EOFError as exc:
                return self._cut_short(exc)
        self._submit(Job(id=request.id, request=request))
        return None

    def _refusal(self, request: P.Stylize) -> dict[str, Any] | None:
        """The answer to a stylize refused before its frame is read: busy, or content too large."""
        if not request.frame:
            return None  # nothing to skip: the job thread says everything, in v1's order
        with self._lock:
            busy = self.job is not None and not self._may_wait(self.job)
        if busy:
            return P.error(request.id, P.ErrorKind.BUSY, BUSY_MESSAGE)
        if request.content.path is None:
            try:
                check_content_size(request.content)
            except ImageError as exc:
                return P.error(request.id, P.ErrorKind.IMAGE, str(exc))
        return None

    def _lines(self) -> Iterator[bytes | None]:
        """stdin's lines, each read with a bound; None for one too long (skipped to its end)."""
        while line := self.stdin.readline(P.MAX_LINE_BYTES + 1):
            if len(line) <= P.MAX_LINE_BYTES or line.endswith(b"\n"):
                yield line
                continue
            while (rest := self.stdin.readline(P.MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield None

    def _submit(self, job: Job) -> None:
        with self._lock:
            if self.job is None:
                self.job = job
                self._start(job)
                return
            if self._may_wait(self.job):
                self.waiting = job
                return
        self.out.send(P.error(job.id, P.ErrorKind.BUSY, BUSY_MESSAGE))

    def _may_wait(self, running: Job) -> bool:
        """(Under the lock; `running` is self.job.) A new job may wait for the running one: it was
        cancelled and nothing waits yet."""
        return running.cancel.is_set() and self.waiting is None

    def _cancel(self, job_id: str | None) -> None:
        with self._lock:
            for job in (self.waiting, self.job):
                if job is not None and job_id in (None, job.id):
                    job.cancel.set()

    def _start(self, job: Job) -> None:
        job.thread = threading.Thread(
            target=self._run, args=(job,), name=f"job-{job.id}", daemon=True
        )
        job.thread.start()

    def _run(self, job: Job) -> None:
        cancelled: Final = (P.cancelled(job.id), ())
        final, frame = (
            execute(job, self.out, self.graphs, self.sequences)
            if not job.cancel.is_set()
            else cancelled
        )
        with self._lock:
            # the next job becomes current before this one's final message goes out, so a request
            # sent after that message never finds the worker busy with a finished job
            self.job, self.waiting = self.waiting, None
            self.out.send(final, *frame)
            if self.job is not None:
                self._start(self.job)

    def serve(self) -> int:
        """Answer requests until stdin ends; returns the exit status."""
        status = None
        for line in self._lines():
            if line is None:
                message = f"a request line is longer than {P.MAX_LINE_BYTES} bytes"
                self.out.send(P.error(None, P.ErrorKind.PROTOCOL, message))
            elif line.strip():
                status = self.handle(line)
                if status is not None:
                    break
        self._end()
        return status or 0

    def _end(self) -> None:
        """stdin closed: the editor is gone or done; cancel what runs or waits, then end."""
        with self._lock:
            jobs = [job for job in (self.job, self.waiting) if job is not None]
        for job in jobs:
            job.cancel.set()
        deadline = time.monotonic() + self.JOIN_S
        for job in jobs:  # the waiting one starts (and answers "cancelled") when the first ends
            while job.thread is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))


def _private_stdout() -> BinaryIO:
    """Keep the real stdout for protocol lines; anything printed elsewhere goes to stderr."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def main(argv: list[str] | None = None) -> int:
    # Nothing left behind on the worker's machine: ONNX Runtime ≥ 1.32 on Linux and macOS writes a
    # telemetry session file into $TMPDIR and a cache under ~/.cache at import unless told not to
    # (its ORT_DISABLE_TELEMETRY=1, read once, before the import); a user's own setting wins.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    logging.basicConfig(
        level=os.environ.get("ONNXSTYLE_WORKER_LOG", "INFO"),
        stream=sys.stderr,
        format="onnxstyle-worker: %(message)s",
    )
    out = Channel(_private_stdout())
    return Worker(sys.stdin.buffer, out).serve()


if __name__ == "__main__":
    sys.exit(main())
