"""The editor's side of the worker protocol (plugin/protocol/), written once: the CLI's
`stylize --worker CMD` and `onnxstyle gimp doctor` use it. The GIMP plug-in keeps a small copy of
its own, because GIMP's Python can't import onnxstyle.

The worker is any command that carries stdin and stdout: `python -m onnxstyle.plugin.worker`
here, or `ssh gpu-box /venv/bin/python -m onnxstyle.plugin.worker` on another machine. `hello`
finds out whether both sides see the same files (a nonce in a file of ours that the worker
reads); if they do, pixels travel as temporary files (the fast local path), else in-band as
frames. Every failure is one line: the worker refused the job (JobError, with its kind), or the
worker or the link to it ended (WorkerError, with the last line the command wrote to stderr,
e.g. ssh's "Connection refused").

Typed at one boundary: requests are built by the protocol's `*_message` functions, and each line
the worker writes is parsed into its reply dataclass (P.parse_reply) where it is read
(`_read_stdout`); everything after that handles HelloReply, Pong, Progress, Result, Cancelled and
Error, never a dict. A job's progress reaches the caller as the engine's own Progress, so a
front end shows a local run and a remote one alike.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from onnxstyle.core.engine import Progress
from onnxstyle.core.errors import Cancelled, StyleError
from onnxstyle.core.files import NotRegularFile, open_regular, read_exactly, write_all
from onnxstyle.plugin import protocol as P

HELLO_TIMEOUT_S = 120.0  # a cold start imports numpy and onnxruntime from disk; ssh logs in first
REPLY_TIMEOUT_S = 120.0  # a ping's answer, or the first word after a job was sent
CLOSE_TIMEOUT_S = 35.0  # the worker ends within its JOIN_S (30 s) of its stdin closing
POLL_S = 0.1  # how often a waiting client looks at its cancel flag: well within one engine step
STDERR_LINES = 20  # the worker's last stderr lines kept for the one-line error


class WorkerError(StyleError):
    """The worker, or the link to it, failed: one line for the user."""


class JobError(StyleError):
    """The worker refused or failed a job; `kind` is the protocol's ErrorKind value."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Pixels:
    """Raw pixels in a protocol format (plugin/protocol/, "Pixels")."""

    width: int
    height: int
    format: str
    data: Any = field(repr=False)  # bytes-like, width × height × channels × bytes long


@dataclass(frozen=True)
class WorkerInfo:
    """What the worker said to hello, and how long the answer took."""

    protocol: int
    onnxstyle: str
    python: str
    providers: list[str]
    devices: list[dict[str, Any]]
    files: bool  # both sides see the same files: pixels may travel as temporary files
    seconds: float

    @classmethod
    def of(cls, reply: P.HelloReply, seconds: float) -> WorkerInfo:
        return cls(
            protocol=reply.protocol,
            onnxstyle=reply.onnxstyle,
            python=reply.python,
            providers=list(reply.providers),
            devices=list(reply.devices),
            files=reply.files,
            seconds=seconds,
        )


def worker_command(command: str | Sequence[str]) -> list[str]:
    """The command as a list: a list as it is, a string split into words as a POSIX shell would."""
    try:
        words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    except ValueError as exc:  # an unclosed quote
        raise WorkerError(f"can't read the worker command {command!r}: {exc}") from None
    if not words:
        raise WorkerError("the worker command is empty")
    return words


_R = TypeVar("_R", bound=P.Reply)  # a reply type a request waits for


class WorkerClient:
    """One worker process and the protocol spoken with it; use as a context manager."""

    def __init__(self, command: str | Sequence[str], files: bool = True) -> None:
        """`files`: use temporary files when the worker shares them (False: always frames)."""
        self.command = worker_command(command)
        self.use_files = files
        self.process: subprocess.Popen | None = None
        self.info: WorkerInfo | None = None
        self._messages: queue.Queue = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._threads: list[threading.Thread] = []
        self._folder: Path | None = None  # our temporary folder (the files probe, local pixels)
        self._ids = itertools.count(1)
        self._frame_limit = 0  # the largest frame the next answers may carry: what we asked for
        self._broken: str | None = None  # why the worker's output can't be followed, if so
        self.bytes_sent = self.bytes_received = 0  # over the link, frames included

    def __enter__(self) -> WorkerClient:
        self.start()
        return self

    def __exit__(self, kind: type | None, *exc_info: object) -> None:
        # a second Ctrl-C means now: the worker gets a moment to end, then it is killed
        self.close(2.0 if kind is KeyboardInterrupt else CLOSE_TIMEOUT_S)

    @property
    def shown(self) -> str:
        """The command as the user would type it (for messages)."""
        return shlex.join(self.command)

    # ------------------------------------------------------------------------ the process

    def start(self) -> None:
        """Start the command, in its own session: a Ctrl-C in the terminal is ours to turn into a
        cancel, not a signal that kills ssh and drops the link."""
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = 0x00000200  # CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                **kwargs,
            )
        except OSError as exc:
            raise WorkerError(
                f"can't start the worker command {self.command[0]}: {exc.strerror or exc}"
            ) from None
        # all three are pipes (PIPE above): never None
        stdout, stderr = self.process.stdout, self.process.stderr
        assert stdout is not None and stderr is not None
        for target, stream in ((self._read_stdout, stdout), (self._read_stderr, stderr)):
            thread = threading.Thread(target=target, args=(stream,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read_stdout(self, stream: IO[bytes]) -> None:
        """Replies (parsed: the one place a worker's line is read) and their frames into the
        queue; None at the end."""
        try:
            while line := stream.readline(P.MAX_LINE_BYTES + 1):
                try:
                    message = P.decode(line)
                except P.ProtocolError:  # not ours (a login banner?): skipped, kept for errors
                    self._note(line)
                    continue
                size = P.frame_length(message)
                if size > self._frame_limit:
                    raise P.FrameError(f"a frame of {size} bytes, {self._frame_limit} expected")
                self.bytes_received += len(line) + size
                frame = read_exactly(stream, size) if size else None
                try:
                    reply = P.parse_reply(message)
                except P.ProtocolError:  # a reply this side can't use: skipped (its frame read)
                    self._note(line)
                    continue
                self._messages.put((reply, frame))
        except P.FrameError as exc:
            self._broken = f"the worker's answer can't be read ({exc})"
        except (OSError, ValueError, EOFError):
            pass  # the end of the stream: the waiting side says why
        finally:
            self._messages.put(None)

    def _note(self, line: bytes) -> None:
        """A stdout line that is no reply of ours: kept with stderr's, for the error message."""
        self._stderr.append(f"(stdout) {line[:200].decode('utf-8', 'replace').strip()}")

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", "replace").strip()
            if text:
                self._stderr.append(text)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Close the worker's stdin (it cancels what runs and ends; behind ssh, the remote worker
        sees the same), wait for it, kill what is left, remove our temporary folder."""
        process, self.process = self.process, None
        try:
            if process is not None:
                _close_quietly(process.stdin)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    _kill_group(process)
                    process.wait()
                for thread in self._threads:
                    thread.join(5)
        finally:
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None

    def _ended(self) -> WorkerError:
        """Why the worker's output ended: its exit and the last thing it said on stderr."""
        if self._broken:  # the worker may still be running: nothing to wait for
            last = self._stderr[-1] if self._stderr else "-"
            return WorkerError(f"{self._broken}; the worker's last words: {last}")
        process = self.process
        code = None
        if process is not None:
            try:
                code = process.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for thread in self._threads[1:]:
                thread.join(2)
        last = self._stderr[-1] if self._stderr else ""
        ssh = is_ssh(self.command)
        if code is None:
            status = "closed its output"
        elif code < 0:
            status = f"was killed by signal {-code}"
            status += " (out of memory?)" if code == -9 and not ssh else ""
        else:
            status = f"exited with status {code}"
        # ssh's own failures are 255 (or a signal); other statuses are the remote worker's
        link = ssh and (code is None or code < 0 or code == 255)
        what = f"the link to the worker dropped (ssh {status})" if link else f"the worker {status}"
        return WorkerError(what + (f": {last}" if last else ""))

    # ------------------------------------------------------------------------ messages

    def send(self, message: dict[str, Any], *frame: Any) -> None:
        """One request and its frame's pieces; WorkerError if the worker is gone."""
        if self.process is None:
            raise WorkerError("the worker is not running")
        stdin = self.process.stdin
        assert stdin is not None  # a pipe: started with stdin=PIPE
        try:
            line = P.encode(message)
            write_all(stdin, line)
            for piece in frame:
                write_all(stdin, piece)
            stdin.flush()
            self.bytes_sent += len(line) + sum(len(memoryview(piece).cast("B")) for piece in frame)
        except (BrokenPipeError, OSError, ValueError):
            raise self._ended() from None

    def receive(self, timeout: float | None) -> tuple[P.Reply, Any] | None:
        """The next reply and its frame (None without one); None when `timeout` passes first.
        WorkerError when the worker's output ends."""
        try:
            item = self._messages.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self._messages.put(None)  # every later call sees the end too
            raise self._ended()
        return item

    def _answer(self, kind: type[_R], timeout: float) -> tuple[_R | P.Error, Any]:
        """The next reply of `kind` (or an Error in its place), skipping others."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            item = self.receive(left)
            if item is None:
                continue
            reply, frame = item
            if isinstance(reply, (kind, P.Error)):
                return reply, frame
        raise WorkerError(f"the worker ({self.shown}) did not answer within {timeout:.0f} s")

    # ------------------------------------------------------------------------ requests

    def hello(self, timeout: float = HELLO_TIMEOUT_S) -> WorkerInfo:
        """Say hello in version 2 with a files probe; WorkerError naming the side to update if
        the worker speaks only version 1."""
        nonce = secrets.token_hex(16)
        probe = self._temp_folder() / "files-probe"
        probe.write_text(nonce, encoding="utf-8")
        started = time.monotonic()
        files = P.FilesProbe(str(probe), nonce) if self.use_files else None
        try:
            self.send(P.hello_message(files))
            reply, _ = self._answer(P.HelloReply, timeout)
        finally:
            probe.unlink(missing_ok=True)
        if isinstance(reply, P.Error) or reply.protocol < 2:  # a version-1 worker
            raise WorkerError(
                f"the worker ({self.shown}) speaks protocol 1; this onnxstyle needs "
                f"{P.PROTOCOL_VERSION}: update onnxstyle where the worker runs"
            )
        self.info = WorkerInfo.of(reply, time.monotonic() - started)
        return self.info

    def ping(self, upload: int = 0, download: int = 0, timeout: float = REPLY_TIMEOUT_S) -> float:
        """Seconds for a ping carrying `upload` random bytes (incompressible, as pixels are) that
        the worker answers with `download` bytes."""
        data = os.urandom(upload) if upload else b""
        self._frame_limit = download
        started = time.monotonic()
        self.send(P.ping_message(f"ping-{next(self._ids)}", upload, download), data)
        reply, frame = self._answer(P.Pong, timeout)
        seconds = time.monotonic() - started
        self._frame_limit = 0
        if isinstance(reply, P.Error):
            raise JobError(reply.kind, reply.message)
        if reply.bytes != upload or len(frame or b"") != download:
            raise WorkerError(f"the worker's pong does not match the ping: {reply}")
        return seconds

    def stylize(
        self,
        content: Pixels,
        styles: Sequence[tuple[str | os.PathLike, float]],
        options: Mapping[str, Any],
        progress: Callable[[Progress], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Pixels:
        """Run one job: `content` pixels, `styles` as (local image file, weight), `options` the
        request's (protocol names). Returns the result in the content's format and size. Progress
        goes to `progress` as the engine's Progress (what a local run reports); when
        `cancelled()` turns true a cancel is sent, and Cancelled is raised once the worker
        confirms (within one engine step). JobError when the worker refuses or fails it."""
        info = self.info or self.hello()
        job_id = f"job-{next(self._ids)}"
        request, frame, output = self._job_request(job_id, content, styles, options, info.files)
        try:
            self._frame_limit = 0 if output is not None else len(content.data)
            self.send(request, *frame)
            del frame  # the pieces may be large
            reply, data = self._follow(job_id, progress, cancelled)
            return self._result(reply, data, content, output)
        finally:
            self._frame_limit = 0
            for path in self._job_files(job_id):
                path.unlink(missing_ok=True)

    def _job_request(
        self,
        job_id: str,
        content: Pixels,
        styles: Sequence[tuple[str | os.PathLike, float]],
        options: Mapping[str, Any],
        files: bool,
    ) -> tuple[dict[str, Any], list[Any], Path | None]:
        """The stylize request, its frame's pieces and the output file (None: in-band); `files`:
        the worker shares our files (its hello said so)."""
        if len(content.data) != P.frame_size(content.width, content.height, content.format):
            raise ValueError("content.data does not match its width, height and format")
        size = (content.width, content.height, content.format)
        if files:  # the fast local path: the worker reads and writes our files
            pixels, output = self._job_files(job_id)
            pixels.write_bytes(content.data)
            specs = [P.StyleSpec(os.path.abspath(path), weight) for path, weight in styles]
            request = P.stylize_message(
                job_id, P.PixelFile(str(pixels), *size), str(output), specs, options
            )
            return request, [], output
        frame: list[Any] = [content.data]
        specs = []
        for path, weight in styles:
            data = _style_bytes(path)
            specs.append(P.StyleSpec(None, weight, size=len(data), name=Path(path).name))
            frame.append(data)
        return (
            P.stylize_message(job_id, P.PixelFile(None, *size), None, specs, options),
            frame,
            None,
        )

    def _job_files(self, job_id: str) -> tuple[Path, Path]:
        folder = self._temp_folder()
        return folder / f"{job_id}-content.raw", folder / f"{job_id}-result.raw"

    def _follow(
        self,
        job_id: str,
        progress: Callable[[Progress], None] | None,
        cancelled: Callable[[], bool] | None,
    ) -> tuple[P.Result, Any]:
        """Progress until the job's final reply; a cancel sent when asked for."""
        cancel_sent = False
        while True:
            if not cancel_sent and cancelled is not None and cancelled():
                self.send(P.cancel_message(job_id))
                cancel_sent = True
            item = self.receive(POLL_S)
            if item is None:
                continue
            reply, data = item
            if isinstance(reply, P.HelloReply) or reply.id not in (job_id, None):
                continue  # an earlier request's late answer (a hello's has no id)
            if isinstance(reply, P.Progress):
                if progress is not None:
                    progress(engine_progress(reply))
            elif isinstance(reply, P.Result):
                return reply, data
            elif isinstance(reply, P.Cancelled):
                raise Cancelled()
            elif isinstance(reply, P.Error):
                raise JobError(reply.kind, reply.message)

    def _result(self, reply: P.Result, data: Any, content: Pixels, output: Path | None) -> Pixels:
        size = (reply.width, reply.height, reply.format)
        if size != (content.width, content.height, content.format):
            raise WorkerError(f"the worker's result is not the content's size and format: {size}")
        expected = len(content.data)
        if output is not None:
            data = _read_file(output, expected)
        if data is None or len(data) != expected:
            raise WorkerError(f"the worker's result is not {expected} bytes")
        return Pixels(content.width, content.height, content.format, data)

    def _temp_folder(self) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="onnxstyle-client-"))
        return self._folder


def engine_progress(reply: P.Progress) -> Progress:
    """A worker's progress as the engine's Progress (a local run's; loss NaN when not sent)."""
    loss = math.nan if reply.loss is None else reply.loss
    return Progress(reply.scale, reply.scales, reply.step, reply.steps, loss, reply.eta_s)


def is_ssh(command: Sequence[str]) -> bool:
    """Whether a worker command runs through ssh (its failures are then the link's)."""
    return Path(command[0]).name in ("ssh", "ssh.exe")


def _style_bytes(path: str | os.PathLike) -> bytes:
    """A style image file's bytes, to send in-band: a regular file, read with its bound."""
    try:
        with open_regular(path) as file:
            size = os.fstat(file.fileno()).st_size
            if size > P.MAX_STYLE_BYTES:
                raise StyleError(
                    f"{path}: {size / 1e6:.0f} MB, more than the "
                    f"{P.MAX_STYLE_BYTES // (1 << 20)} MiB a style image may have"
                )
            return bytes(read_exactly(file, size))
    except NotRegularFile:
        raise StyleError(f"{path}: not a regular file (a pipe or a device?)") from None
    except (OSError, EOFError) as exc:
        raise StyleError(f"{path}: can't read ({getattr(exc, 'strerror', None) or exc})") from None


def _read_file(path: Path, expected: int) -> bytearray:
    """The worker's result file, which must hold exactly `expected` bytes."""
    try:
        with open_regular(path) as file:
            if os.fstat(file.fileno()).st_size != expected:
                raise WorkerError(f"the worker's result file {path} is not {expected} bytes")
            return read_exactly(file, expected)
    except (OSError, EOFError) as exc:
        raise WorkerError(f"can't read the worker's result {path}: {exc}") from None


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except OSError:
        pass


def _kill_group(process: subprocess.Popen) -> None:
    """The command and whatever it started (its own session): a worker that won't end."""
    try:
        if os.name == "nt":
            process.kill()
        else:
            os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass
