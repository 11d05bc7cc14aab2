"""What the dialog's Preview does: one warm worker for the dialog, at most one preview job at a
time, the newest request wins; on OK the same worker runs the final job.

Its widgets are dialog.py's PreviewPanel; this file holds the behaviour behind them. A new
worker message the preview reacts to goes in `Preview._on_reply`; a new value that changes the
preview goes in PREVIEW_ARGS.
"""

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from errors import PluginError, log
from gi.repository import GLib
from pixels import preview_pixels, selected_layer, selection_bounds
from protocol import (
    FINAL_REPLIES,
    Error,
    Hello,
    Progress,
    Result,
    StylizeJob,
    cancel_request,
    error_text,
)
from settings import PREVIEW_SIZE, file_path, stylize_job
from worker_link import HELLO_TIMEOUT_S, WorkerLink, say_hello, send_job, validate_hello
from worker_record import read_record

AUTO_DELAY_MS = 700  # auto-update waits until the values stop changing
# the arguments a preview depends on: changing one cancels a running preview
PREVIEW_ARGS = (
    "style-file",
    "style-file-2",
    "style-blend",
    "strength",
    "quality",
    "preserve-colors",
    "device",
    "seed",
)


@dataclass
class PreviewJob:
    request: StylizeJob
    key: tuple  # what it computes: a request with the same key needs no new job
    asked: float = field(default_factory=time.monotonic)
    stale: bool = False  # the values changed since: its answer is dropped

    @property
    def id(self):
        return self.request.id


class Preview:
    """The dialog's preview: one warm worker for the dialog, at most one job at a time, and the
    newest request wins (a running job is cancelled; its late answer is dropped by job id).

    Every GTK and GIMP call happens on the main thread: the worker's reader thread only queues
    replies and calls GLib.idle_add(self._drain)."""

    def __init__(self, panel, config, drawables):
        self.panel = panel
        self.config = config
        self.drawables = drawables
        self.workdir = None  # made by the first preview
        self.link = None
        self.hello = None  # the worker's Hello, once it came and suited us
        self.running = None  # the PreviewJob the worker computes
        self.pending = None  # the newest wanted PreviewJob; sent when the worker is free
        self.jobs = 0
        self.shown = False  # a preview is on show
        self.detached = False  # the dialog has closed: its widgets are gone
        self.timers = {}
        panel.on_preview(self.request)
        panel.placeholder(*self._placeholder_size())
        self._show_styles()
        panel.status("Press Preview to try the style on a small copy of the layer.")
        self.handler = config.connect("notify", self._changed)

    def _placeholder_size(self):
        """The preview's shape, so the user sees where it will appear."""
        try:
            region = selection_bounds(selected_layer(self.drawables))
        except PluginError:
            return PREVIEW_SIZE, PREVIEW_SIZE
        scale = PREVIEW_SIZE / max(region[2:])
        return round(region[2] * scale), round(region[3] * scale)

    def _show_styles(self):
        # the share means something only with a second style
        second = self.config.get_property("style-file-2") is not None
        self.panel.show_styles(self._style_paths(), second)

    def _style_paths(self):
        paths = []
        for name in ("style-file", "style-file-2"):
            try:
                path = file_path(self.config, name)
            except PluginError:
                continue
            if path and (name == "style-file" or self.config.get_property("style-blend") > 0):
                paths.append(path)
        return paths

    def _stop_timer(self, name):
        if name in self.timers:
            GLib.source_remove(self.timers.pop(name))

    # -- requests

    def request(self):
        """Preview the dialog's current values (the Preview button, or the auto-update timer)."""
        self._stop_timer("auto")
        try:
            job = self._new_job()
        except PluginError as exc:
            self._cancel_running()
            self.panel.status(str(exc), error=True)
            return False
        if self.running and not self.running.stale and self.running.key == job.key:
            self._forget(job)  # the running job computes exactly this already
            return False
        self._cancel_running()
        self.pending = job
        self.panel.working()
        self._pump()
        return False  # also a one-shot GLib timeout callback

    def _new_job(self):
        layer = selected_layer(self.drawables)
        region = selection_bounds(layer)
        self.jobs += 1
        job_id = f"preview-{self.jobs}"
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="onnxstyle-gimp-")
        content = os.path.join(self.workdir, f"{job_id}.raw")
        pixels, width, height = preview_pixels(layer, region, PREVIEW_SIZE)
        request = stylize_job(self.config, job_id, content, width, height, "rgba8", preview=True)
        with open(content, "wb") as f:
            f.write(pixels)
        return PreviewJob(request, key=(request.styles, request.options, region))

    def _pump(self):
        """Start the worker if there is none; send the pending job once the worker is free."""
        if self.pending is None or self.running is not None:
            return
        if self.link is None:
            try:
                self._start_worker()
            except PluginError as exc:
                self._forget(self.pending)
                self.pending = None
                self.panel.status(str(exc), error=True)
            return
        if self.hello is None:
            return  # _on_hello pumps again
        job, self.pending = self.pending, None
        try:
            send_job(self.link, job.request)
        except (PluginError, OSError) as exc:
            self._forget(job)
            self.panel.status(str(exc), error=True)
            return
        self.running = job
        log(f"preview job {job.id} sent")
        self.panel.busy("Loading the model and the style")

    def _start_worker(self):
        python, command = read_record()
        self.link = WorkerLink(
            python,
            command,
            os.path.join(self.workdir, "worker-stderr.txt"),
            notify=lambda: GLib.idle_add(self._drain),
        )
        self.hello = None
        say_hello(self.link, self.workdir)
        self.panel.busy("Starting the worker")
        self.timers["hello"] = GLib.timeout_add_seconds(int(HELLO_TIMEOUT_S), self._hello_late)
        log(f"worker started (pid {self.link.process.pid})")

    def _hello_late(self):
        self.timers.pop("hello", None)
        label = self.link.label
        self._stop_worker()
        self.panel.status(
            f"The onnxstyle worker ({label}) did not answer within {HELLO_TIMEOUT_S:.0f} s.", True
        )
        return False

    def _cancel_running(self):
        """Cancel the running job (its answer will be dropped) and forget the pending one."""
        if self.pending:
            self._forget(self.pending)
            self.pending = None
        if self.running and not self.running.stale:
            self.running.stale = True
            self.link.send(cancel_request(self.running.id))
            log(f"preview job {self.running.id} cancelled")

    def _forget(self, job):
        for path in (job.request.content, job.request.output):
            try:
                os.remove(path)
            except OSError:
                pass

    # -- answers (main thread)

    def _drain(self):
        link = None if self.detached else self.link  # after OK, the final job reads the replies
        if link is not None:
            for reply in link.ready_replies():
                if link is not self.link:
                    break  # it crashed or was stopped while we handled an earlier reply
                self._on_reply(reply)
        return False

    def _on_reply(self, reply):
        ours = reply is not None and self.running is not None and reply.id == self.running.id
        if reply is None:
            self._crashed()
        elif isinstance(reply, Hello):
            self._on_hello(reply)
        elif ours and isinstance(reply, Progress):
            self.panel.progress(reply)
        elif ours and isinstance(reply, FINAL_REPLIES):
            self._finished(reply)
        elif isinstance(reply, Error):
            log(f"worker error outside a preview job: {reply.message}")

    def _on_hello(self, reply):
        self._stop_timer("hello")
        try:
            self.hello = validate_hello(self.link, reply, self.config.get_property("device"))
        except PluginError as exc:
            self._stop_worker()
            self.panel.status(str(exc), error=True)
            return
        log(f"worker ready {time.monotonic() - self.link.started:.1f} s after its start")
        self._pump()

    def _finished(self, reply):
        job, self.running = self.running, None
        log(f"preview job {job.id} ended: {reply.TYPE}{' (stale: dropped)' if job.stale else ''}")
        if isinstance(reply, Result) and not job.stale:
            self._show(job, reply)
        elif isinstance(reply, Error) and not job.stale:
            self.panel.status(error_text(reply.kind, reply.message), error=True)
        self._forget(job)
        self._pump()

    def _show(self, job, result):
        try:
            data = result.pixels()
        except OSError as exc:
            self.panel.status(f"Can't read the worker's preview: {exc}", error=True)
            return
        if len(data) != result.width * result.height * 4:
            self.panel.status(f"The worker's preview has the wrong size ({len(data)} bytes).", True)
            return
        self.panel.show(data, result.width, result.height)
        self.shown = True
        seconds = time.monotonic() - job.asked
        log(f"preview job {job.id} shown {seconds:.1f} s after it was asked for")
        self.panel.status(f"Preview ready in {seconds:.1f} s. {self.panel.ok_text}")

    def _crashed(self):
        text = self.link.crash_message()
        log(text)
        for job in (self.running, self.pending):
            if job:
                self._forget(job)
        self.running = self.pending = None
        self._stop_worker()
        self.panel.status(f"{text} Press Preview to start it again.", error=True)

    # -- value changes

    def _changed(self, config, pspec):
        name = pspec.get_name()
        if name in ("style-file", "style-file-2", "style-blend"):
            self._show_styles()
        auto = config.get_property("auto-preview")
        if name == "auto-preview" and auto:
            self._schedule()
        elif name == "auto-preview" and "auto" in self.timers:
            self._stop_timer("auto")
            self.panel.idle()
        if name not in PREVIEW_ARGS:
            return
        had_preview = self.running or self.pending or self.shown
        self._cancel_running()
        self.panel.dim()  # the preview shown no longer matches the values
        if auto:
            self._schedule()
        elif had_preview:
            self.panel.status("The values changed: press Preview to see them.")

    def _schedule(self):
        """Auto-update: preview once the values have stopped changing for a moment."""
        self._stop_timer("auto")
        self.timers["auto"] = GLib.timeout_add(AUTO_DELAY_MS, self.request)
        self.panel.busy("Waiting for the values to settle")

    # -- the end of the dialog

    def detach(self):
        """The dialog closes: no more widget updates; a running preview is cancelled."""
        self.detached = True
        self.config.disconnect(self.handler)
        for name in list(self.timers):
            self._stop_timer(name)
        self.panel.stop()
        self._cancel_running()
        if self.link:
            self.link.notify = None

    def warm_worker(self, device):
        """The dialog's worker, greeted and idle, for the final job; None if it has none that works."""
        if self.link is None:
            return None
        try:
            if self.hello is None:
                reply = self.link.receive(timeout=HELLO_TIMEOUT_S)
                if reply is None:
                    raise PluginError(self.link.crash_message())
                self.hello = reply
            validate_hello(self.link, self.hello, device)
            while self.running:  # the cancelled preview's last answer
                reply = self.link.receive(timeout=HELLO_TIMEOUT_S)
                if reply is None:
                    raise PluginError(self.link.crash_message())
                if reply.id == self.running.id and isinstance(reply, FINAL_REPLIES):
                    self.running = None
        except PluginError as exc:
            log(f"the dialog's worker can't take the final job ({exc}); starting a new one")
            self._stop_worker()
            return None
        log("final job on the dialog's warm worker")
        return self.link

    def _stop_worker(self):
        self._stop_timer("hello")
        if self.link:
            self.link.close()
        self.link, self.hello, self.running = None, None, None

    def close(self):
        """Stop the worker (it exits when its stdin closes) and remove every temporary file."""
        self._stop_worker()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
