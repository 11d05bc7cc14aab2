"""The link to the onnxstyle worker: starting its process, the reader thread that turns its
output into replies (protocol.read_reply), the hello and its checks, and running one job.

A new worker message is parsed in protocol.py; what the plug-in does with it goes in `run_job`
(the final run) and in preview.py's `Preview._on_reply` (the dialog's previews).
"""

import json
import os
import queue
import subprocess
import threading
import time

from errors import JobCancelled, PluginError, log
from gi.repository import Gimp
from protocol import (
    MAX_STYLE_BYTES,
    PROTOCOL_VERSION,
    Cancelled,
    Error,
    Hello,
    Progress,
    Result,
    error_text,
    hello_request,
    read_reply,
    stylize_request,
)
from worker_record import FIX_INSTALL, FIX_REGISTER

HELLO_TIMEOUT_S = 120.0  # a cold start imports numpy and onnxruntime from disk
# Python variables GIMP sets for its own interpreter (bundles on Windows/macOS); they would
# make the worker's Python load the wrong standard library.
FOREIGN_ENV = (
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "__PYVENV_LAUNCHER__",
)


class WorkerLink:
    """The worker process and a reader thread that queues its replies.

    notify, if given, is called by the reader thread after each reply (the dialog passes one
    that only calls GLib.idle_add, so every GTK and GIMP call stays on the main thread)."""

    def __init__(self, python, command, stderr_path, notify=None):
        self.python = python  # None for a command of the user's (a worker on another machine)
        shown = " ".join(command)
        self.label = python or (shown if len(shown) <= 80 else shown[:77] + "...")  # for messages
        self.ssh = os.path.basename(command[0]) in ("ssh", "ssh.exe")
        self.files = False  # the worker shares our files (its hello says): else pixels in-band
        self.stderr_path = stderr_path
        self.notify = notify
        self.started = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        kwargs = {}
        if os.name == "nt":
            # no console window; Ctrl+Break of GIMP's console doesn't reach it
            kwargs["creationflags"] = (
                0x08000000 | 0x00000200
            )  # CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True  # its own process group, killed as a group below
        self._stderr = open(stderr_path, "wb")
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                **kwargs,
            )
        except OSError as exc:
            self._stderr.close()
            raise PluginError(
                f"Can't start the onnxstyle worker {self.label}: {exc.strerror or exc}"
            ) from None
        if os.name == "nt":
            from windows_job import WindowsJob  # noqa: PLC0415 (Windows only)

            try:
                WindowsJob.adopt(self.process)
            except Exception as exc:  # the worker still exits when its stdin closes
                log(f"no kill-on-close job object for the worker: {exc}")
        self.replies = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        """Queues each reply (protocol.read_reply: the one place the worker's output is parsed),
        then None at the end of the output."""
        try:
            for reply in iter(lambda: read_reply(self.process.stdout), None):
                self._put(reply)
        except (OSError, ValueError) as exc:
            log(f"the worker's output can't be read: {exc}")
        self._put(None)  # EOF

    def _put(self, reply):
        self.replies.put(reply)
        notify = self.notify
        if notify is not None:
            notify()

    def send(self, request, *frame):
        """A request and its frame's bytes, piece by piece (a layer's pixels are not copied)."""
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
            for piece in frame:
                self.process.stdin.write(piece)
            self.process.stdin.flush()
        except (OSError, ValueError):
            pass  # it died (or we closed it); the reader reports EOF and we say why

    def receive(self, timeout=None):
        """The next reply; None at EOF."""
        try:
            return self.replies.get(timeout=timeout)
        except queue.Empty:
            raise PluginError(
                f"The onnxstyle worker ({self.label}) did not answer within {timeout:.0f} s."
            ) from None

    def ready_replies(self):
        """The replies read so far, without waiting; a None in the list is EOF."""
        replies = []
        while True:
            try:
                replies.append(self.replies.get_nowait())
            except queue.Empty:
                return replies

    def crash_message(self):
        """Why the worker ended without a final answer: exit status and its last stderr line."""
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        tail = ""
        try:
            self._stderr.flush()
            with open(self.stderr_path, "rb") as f:
                lines = [
                    line.strip()
                    for line in f.read()[-8000:].decode("utf-8", "replace").splitlines()
                    if line.strip()
                ]
            tail = lines[-1] if lines else ""
        except OSError:
            pass
        if "No module named" in tail and "onnxstyle" in tail and self.python:
            return f"onnxstyle is not installed in the worker's Python {self.python}. Fix: {FIX_INSTALL.format(python=self.python)}, then {FIX_REGISTER.format(python=self.python)}"
        if self.ssh and (code is None or code < 0 or code == 255):  # ssh's own failures
            return f"The connection to the onnxstyle worker dropped ({self.label}){': ' + tail if tail else '.'}"
        if code is not None and code < 0:
            what = f"was killed by signal {-code}"
            if -code == 9:
                what += " (out of memory?)"
            tail = ""  # its last log line says what it was doing, not why it died
        else:
            what = f"exited with status {code}"
        return f"The onnxstyle worker crashed: it {what}{(': ' + tail) if tail else '.'}"

    def close(self):
        """Close stdin (the worker cancels and exits), then make sure it's gone."""
        self.notify = None
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                if os.name == "nt":
                    self.process.kill()
                else:
                    os.killpg(self.process.pid, 9)
            except OSError:
                pass
            self.process.wait()
        self._stderr.close()


# ---------------------------------------------------------------- the hello


def say_hello(link, workdir):
    """Send our hello, with a nonce in a file of ours that the worker can read only if it
    shares our files (then pixels travel as temporary files, else in-band)."""
    nonce = os.urandom(16).hex()
    probe = os.path.join(workdir, "files-probe")
    with open(probe, "w", encoding="utf-8") as f:
        f.write(nonce)
    link.send(hello_request(probe, nonce))


def greet(link, device, workdir):
    """Hello and its answer, checked (validate_hello)."""
    say_hello(link, workdir)
    hello = link.receive(timeout=HELLO_TIMEOUT_S)
    if hello is None:
        raise PluginError(link.crash_message())
    return validate_hello(link, hello, device)


def validate_hello(link, reply, device):
    """The worker's hello, if it speaks our protocol and offers `device`; else a PluginError.
    (A version-1 worker answers protocol 1, or refuses the hello's "files" with an error.)"""
    if not isinstance(reply, Hello) or reply.protocol != PROTOCOL_VERSION:
        fix = FIX_REGISTER.format(python=link.python) if link.python else "onnxstyle gimp install"
        spoken = reply.protocol if isinstance(reply, Hello) else 1
        raise PluginError(
            f"The onnxstyle worker ({link.label}) speaks protocol {spoken}, "
            f"this plug-in {PROTOCOL_VERSION}: update onnxstyle where the worker runs, then: {fix}"
        )
    link.files = reply.files
    shared = "files shared" if link.files else "files not shared: pixels in-band"
    log(f"worker {link.label}: {shared}")
    if not reply.providers:
        fix = (
            FIX_INSTALL.format(python=link.python)
            if link.python
            else ('pip install "onnxstyle[cuda]" (or [cpu]) where the worker runs')
        )
        raise PluginError(f"ONNX Runtime is missing for the worker ({link.label}). Fix: {fix}")
    wanted = {"cuda": "CUDAExecutionProvider", "directml": "DmlExecutionProvider"}.get(device)
    if wanted and wanted not in reply.providers:
        raise PluginError(
            "Device {} is unavailable: the worker's ONNX Runtime offers {}.".format(
                device, ", ".join(reply.providers)
            )
        )
    return reply


# ---------------------------------------------------------------- a job


def run_on_new_worker(job, python, command, workdir):
    """Start a worker, run one job on it, stop it; returns the Result or raises PluginError."""
    link = open_worker(python, command, workdir, job.options.device)
    try:
        return run_job(link, job)
    finally:
        link.close()


def open_worker(python, command, workdir, device):
    """A new worker, greeted: ready for jobs (the caller closes it)."""
    link = WorkerLink(python, command, os.path.join(workdir, "worker-stderr.txt"))
    try:
        Gimp.progress_set_text("Neural style: starting the worker")
        greet(link, device, workdir)
    except BaseException:
        link.close()
        raise
    return link


def show_progress(reply):
    """A job's Progress in GIMP's bar."""
    Gimp.progress_set_text(reply.text or "Neural style")
    Gimp.progress_update(reply.fraction)


def run_job(link, job, show=None):
    """One job on a greeted, idle worker, its progress in GIMP's bar (or given to `show`, which
    says what the job is itself); returns its Result."""
    if show is None:
        Gimp.progress_set_text("Neural style: loading the model and the style images")
        show = show_progress
    send_job(link, job)
    while True:
        reply = link.receive()
        if reply is None:
            raise PluginError(link.crash_message())
        if reply.id not in (None, job.id):
            continue  # a reply of an earlier (preview) job
        if isinstance(reply, Progress):
            show(reply)
        elif isinstance(reply, Result):
            return reply
        elif isinstance(reply, Error):
            raise PluginError(error_text(reply.kind, reply.message))
        elif isinstance(reply, Cancelled):
            raise JobCancelled("Neural style was cancelled.")


def send_job(link, job):
    """A stylize request with paths when the worker shares our files; otherwise the content's
    pixels and the style files' bytes go in-band, and the result comes back so."""
    if link.files:
        link.send(stylize_request(job))
        return
    with open(job.content, "rb") as f:
        frame = [f.read()]
    frame += [style_bytes(style.path) for style in job.styles]
    link.send(stylize_request(job, [len(part) for part in frame]), *frame)


def style_bytes(path):
    """A style image file's bytes, to send in-band (bounded like the worker's)."""
    try:
        if os.path.getsize(path) > MAX_STYLE_BYTES:
            raise PluginError(
                f"The style image {path} is larger than the {MAX_STYLE_BYTES >> 20} MB "
                "a style may have."
            )
        with open(path, "rb") as f:
            return f.read(MAX_STYLE_BYTES + 1)
    except OSError as exc:
        raise PluginError(
            f"The style image {path} can't be read ({exc.strerror or exc})."
        ) from None
