#!/usr/bin/env python3
# onnxstyle — neural style transfer (Gatys et al. 2015) for GIMP 3, computed by ONNX Runtime.
#
# This file runs in GIMP's own Python, which has no numpy and no onnxruntime: it moves bytes,
# runs the onnxstyle worker with the command recorded by `onnxstyle gimp install` in
# onnxstyle-worker.json next to this file (`python -m onnxstyle.plugin.worker` in onnxstyle's
# Python environment, or `ssh gpu-box ... -m onnxstyle.plugin.worker` for a worker on another
# machine), and talks to it with JSON lines (protocol version 2, see
# onnxstyle/plugin/protocol.py). When the worker shares this machine's files (its hello says so)
# pixels travel as temporary files; otherwise the pixels and the style files' bytes travel
# in-band, as frames after the request's line, and the result comes back the same way. It
# imports nothing of onnxstyle (plugin/client.py is the CLI's copy of this side).
#
# Order of work, so that a failed or cancelled run changes nothing: read the pixels of the
# selection's bounds -> run the worker -> only on success write the result, blended through
# the selection mask by GIMP's shadow-buffer merge, inside one undo group.
#
# The dialog (interactive runs) adds a preview: a small copy of the layer styled with fewer
# steps, shown beside the style's thumbnail. The worker it starts stays for the dialog and also
# runs the final job on OK; closing the dialog stops it and removes every temporary file.

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")

from gi.repository import GdkPixbuf, Gegl, Gimp, GimpUi, GLib, GObject, Gtk  # noqa: E402

PROC_NAME = "plug-in-onnxstyle-neural-style"
PROTOCOL_VERSION = 2
CONFIG_NAME = "onnxstyle-worker.json"
# protocol.py's bounds, copied (tests/test_protocol.py keeps them in step)
MAX_FRAME_BYTES = 2136870912  # a frame after a line: larger ones are refused before reading
MAX_STYLE_BYTES = 268435456  # a style image file sent in-band
FRAME_DATA = "frame-data"  # where a received message keeps its frame's bytes (never on the wire)
HELLO_TIMEOUT_S = 120.0  # a cold start imports numpy and onnxruntime from disk
FIX_INSTALL = '"{python}" -m pip install "onnxstyle[cpu]"'
FIX_REGISTER = '"{python}" -m onnxstyle.plugin.gimp_install install'

PRESETS = (
    ("draft", "Fast draft"),
    ("normal", "Normal"),
    ("high", "High detail (slow)"),
)
PRESERVE = (
    ("none", "None"),
    ("luminance", "Luminance (keep the content's colours)"),
    ("histogram", "Histogram (match the content's colour statistics)"),
)
OUTPUTS = (("new-layer", "New layer above"), ("replace", "Replace the layer's pixels"))
DEVICES = (
    ("auto", "Automatic"),
    ("cpu", "CPU"),
    ("cuda", "CUDA (NVIDIA)"),
    ("directml", "DirectML (Windows)"),
    ("webgpu", "WebGPU (AMD, Intel, Apple, NVIDIA)"),
    ("coreml", "Core ML (macOS)"),
)

# The preview: a small copy, fewer steps; a few CPU seconds, not the draft preset's ~100
# (measured in DEVELOPERS.md, "Facts we have checked").
PREVIEW_SIZE = 160  # longest side, px
PREVIEW_STEPS = 15  # per scale
THUMB_SIZE = 96  # the style thumbnails' longest side, px
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
FINALS = ("result", "error", "cancelled")  # a job's last message

# Python variables GIMP sets for its own interpreter (bundles on Windows/macOS); they would
# make the worker's Python load the wrong standard library.
FOREIGN_ENV = (
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "__PYVENV_LAUNCHER__",
)


class PluginError(Exception):
    """A one-line message for the user; the image is left unchanged."""


class Cancelled(PluginError):
    """The worker honoured a cancel; the image is left unchanged."""


def log(message):
    sys.stderr.write(f"onnxstyle-neural-style: {message}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- the worker process


def worker_config():
    """The recorded worker command, or a PluginError that says how to record it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        python = config.get("python")  # None: the record holds only a command (a remote worker)
        args = config.get("args") or ["-m", "onnxstyle.plugin.worker"]
        command = config.get("command") or ([python] + list(args) if python else None)
        if not isinstance(command, list) or not command:
            raise KeyError("command")
        command = [str(word) for word in command]
    except FileNotFoundError:
        raise PluginError(
            f"The onnxstyle worker is not set up: {path} is missing. In the Python environment where "
            "onnxstyle is installed, run: onnxstyle gimp install"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PluginError(f"Unreadable {path} ({exc}). Rerun: onnxstyle gimp install") from None
    if python is None:  # a command of the user's (e.g. ssh to a GPU box): run as it is
        return None, command
    if not os.path.exists(python):
        raise PluginError(
            f"The worker's Python {python} no longer exists. Reinstall onnxstyle in a Python environment "
            "and run there: onnxstyle gimp install"
        )
    return python, command


class _WindowsJob:
    """A Job object that kills the worker when GIMP kills this plug-in (its handle closes)."""

    handle = None

    @classmethod
    def adopt(cls, process):
        import ctypes  # noqa: PLC0415 (Windows only)
        from ctypes import wintypes  # noqa: PLC0415 (Windows only)

        class IO_COUNTERS(ctypes.Structure):
            _fields_ = [
                (n, ctypes.c_ulonglong)
                for n in (
                    "ReadOperationCount",
                    "WriteOperationCount",
                    "OtherOperationCount",
                    "ReadTransferCount",
                    "WriteTransferCount",
                    "OtherTransferCount",
                )
            ]

        class BASIC_LIMIT(ctypes.Structure):
            _fields_ = [
                ("PerProcessUserTimeLimit", ctypes.c_int64),
                ("PerJobUserTimeLimit", ctypes.c_int64),
                ("LimitFlags", wintypes.DWORD),
                ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t),
                ("ActiveProcessLimit", wintypes.DWORD),
                ("Affinity", ctypes.c_size_t),
                ("PriorityClass", wintypes.DWORD),
                ("SchedulingClass", wintypes.DWORD),
            ]

        class EXTENDED_LIMIT(ctypes.Structure):
            _fields_ = [
                ("BasicLimitInformation", BASIC_LIMIT),
                ("IoInfo", IO_COUNTERS),
                ("ProcessMemoryLimit", ctypes.c_size_t),
                ("JobMemoryLimit", ctypes.c_size_t),
                ("PeakProcessMemoryUsed", ctypes.c_size_t),
                ("PeakJobMemoryUsed", ctypes.c_size_t),
            ]

        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
        JobObjectExtendedLimitInformation = 9
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.CreateJobObjectW.argtypes = (wintypes.LPVOID, wintypes.LPCWSTR)
        kernel32.CreateJobObjectW.restype = wintypes.HANDLE
        kernel32.SetInformationJobObject.argtypes = (
            wintypes.HANDLE,
            ctypes.c_int,
            wintypes.LPVOID,
            wintypes.DWORD,
        )
        kernel32.SetInformationJobObject.restype = wintypes.BOOL
        kernel32.AssignProcessToJobObject.argtypes = (wintypes.HANDLE, wintypes.HANDLE)
        kernel32.AssignProcessToJobObject.restype = wintypes.BOOL
        if cls.handle is None:
            job = kernel32.CreateJobObjectW(None, None)
            if not job:
                raise OSError(ctypes.get_last_error(), "CreateJobObjectW failed")
            info = EXTENDED_LIMIT()
            info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            if not kernel32.SetInformationJobObject(
                job, JobObjectExtendedLimitInformation, ctypes.byref(info), ctypes.sizeof(info)
            ):
                raise OSError(ctypes.get_last_error(), "SetInformationJobObject failed")
            cls.handle = job  # never closed by us: the OS closes it when this process ends
        if not kernel32.AssignProcessToJobObject(cls.handle, int(process._handle)):
            raise OSError(ctypes.get_last_error(), "AssignProcessToJobObject failed")


class Worker:
    """The worker process and a reader thread that queues its stdout lines.

    notify, if given, is called by the reader thread after each line (the dialog passes one that
    only calls GLib.idle_add, so every GTK and GIMP call stays on the main thread)."""

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
            try:
                _WindowsJob.adopt(self.process)
            except Exception as exc:  # the worker still exits when its stdin closes
                log(f"no kill-on-close job object for the worker: {exc}")
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        """Messages, each with the frame it announces (checked against MAX_FRAME_BYTES first) under
        FRAME_DATA; lines that are not JSON objects are logged and skipped."""
        stream = self.process.stdout
        try:
            for line in iter(stream.readline, b""):
                message = _parse(line)
                size = _frame_size(message)
                data = stream.read(size) if size else None
                if size and len(data) != size:
                    break  # the worker's output ended inside a frame
                if message is not None:
                    if data is not None:
                        message[FRAME_DATA] = data
                    self._put(message)
        except (OSError, ValueError) as exc:
            log(f"the worker's output can't be read: {exc}")
        self._put(None)  # EOF

    def _put(self, message):
        self.lines.put(message)
        notify = self.notify
        if notify is not None:
            notify()

    def send(self, message, *frame):
        """A request and its frame's bytes, piece by piece (a layer's pixels are not copied)."""
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            for piece in frame:
                self.process.stdin.write(piece)
            self.process.stdin.flush()
        except (OSError, ValueError):
            pass  # it died (or we closed it); the reader reports EOF and we say why

    def receive(self, timeout=None):
        """The next message; None at EOF."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise PluginError(
                f"The onnxstyle worker ({self.label}) did not answer within {timeout:.0f} s."
            ) from None

    def ready_messages(self):
        """The messages read so far, without waiting; a None in the list is EOF."""
        messages = []
        while True:
            try:
                messages.append(self.lines.get_nowait())
            except queue.Empty:
                return messages

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


def _parse(line):
    """One protocol line as a dict, or None (logged) if it is not a JSON object."""
    try:
        message = json.loads(line)
        if isinstance(message, dict):
            return message
    except ValueError:
        pass
    log(f"ignored worker output: {line[:200]!r}")
    return None


def _frame_size(message):
    """The bytes announced after this message ("frame"), 0 if none (or not a protocol line);
    ValueError if not trustworthy."""
    size = message.get("frame", 0) if message is not None else 0
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FRAME_BYTES:
        raise ValueError(f"a frame of {size!r} bytes")
    return size


def hello_request(workdir):
    """Our hello: protocol 2, with a nonce in a file of ours that the worker can read only if it
    shares our files (then pixels travel as temporary files, else in-band)."""
    nonce = os.urandom(16).hex()
    probe = os.path.join(workdir, "files-probe")
    with open(probe, "w", encoding="utf-8") as f:
        f.write(nonce)
    return {"type": "hello", "protocol": PROTOCOL_VERSION, "files": {"path": probe, "nonce": nonce}}


def check_hello(worker, device, workdir):
    worker.send(hello_request(workdir))
    hello = worker.receive(timeout=HELLO_TIMEOUT_S)
    if hello is None:
        raise PluginError(worker.crash_message())
    return validate_hello(worker, hello, device)


def validate_hello(worker, hello, device):
    """The worker's hello, if it speaks our protocol and offers `device`; else a PluginError.
    (A version-1 worker answers protocol 1, or refuses the hello's "files" with an error.)"""
    if hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL_VERSION:
        fix = (
            FIX_REGISTER.format(python=worker.python) if worker.python else "onnxstyle gimp install"
        )
        raise PluginError(
            f"The onnxstyle worker ({worker.label}) speaks protocol {hello.get('protocol', 1)}, "
            f"this plug-in {PROTOCOL_VERSION}: update onnxstyle where the worker runs, then: {fix}"
        )
    worker.files = hello.get("files") is True
    shared = "files shared" if worker.files else "files not shared: pixels in-band"
    log(f"worker {worker.label}: {shared}")
    providers = hello.get("providers") or []
    if not providers:
        fix = (
            FIX_INSTALL.format(python=worker.python)
            if worker.python
            else ('pip install "onnxstyle[cuda]" (or [cpu]) where the worker runs')
        )
        raise PluginError(f"ONNX Runtime is missing for the worker ({worker.label}). Fix: {fix}")
    wanted = {"cuda": "CUDAExecutionProvider", "directml": "DmlExecutionProvider"}.get(device)
    if wanted and wanted not in providers:
        raise PluginError(
            "Device {} is unavailable: the worker's ONNX Runtime offers {}.".format(
                device, ", ".join(providers)
            )
        )
    return hello


def run_worker(request, python, command, workdir):
    """Start a worker, run one job on it, stop it; returns the result message or raises PluginError."""
    worker = Worker(python, command, os.path.join(workdir, "worker-stderr.txt"))
    try:
        Gimp.progress_set_text("Neural style: starting the worker")
        check_hello(worker, request["options"].get("device"), workdir)
        return run_job(worker, request)
    finally:
        worker.close()


def run_job(worker, request):
    """One job on a greeted, idle worker, with progress in GIMP's bar."""
    Gimp.progress_set_text("Neural style: loading the model and the style images")
    send_job(worker, request)
    while True:
        message = worker.receive()
        if message is None:
            raise PluginError(worker.crash_message())
        kind = message.get("type")
        if message.get("id") not in (None, request["id"]):
            continue  # a line of an earlier (preview) job
        if kind == "progress":
            Gimp.progress_set_text(message.get("text") or "Neural style")
            Gimp.progress_update(float(message.get("fraction") or 0.0))
        elif kind == "result":
            return message
        elif kind == "error":
            raise PluginError(error_text(message, worker.python))
        elif kind == "cancelled":
            raise Cancelled("Neural style was cancelled.")


def send_job(worker, request):
    """A stylize request as built (temporary files) when the worker shares our files; otherwise
    the content's pixels and the style files' bytes go in-band, and the result comes back so."""
    if worker.files:
        worker.send(request)
        return
    content = dict(request["content"])
    with open(content.pop("path"), "rb") as f:
        frame = [f.read()]
    content["bytes"] = len(frame[0])
    styles = []
    for spec in request["styles"]:
        frame.append(style_bytes(spec["path"]))
        name = os.path.basename(spec["path"])[:200]
        styles.append({"bytes": len(frame[-1]), "name": name, "weight": spec["weight"]})
    in_band = {key: value for key, value in request.items() if key != "workdir"}
    in_band.update(content=content, styles=styles, output={"frame": True})
    in_band["frame"] = sum(len(part) for part in frame)
    worker.send(in_band, *frame)


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


def result_data(message):
    """A result's pixels: its frame (in-band), or the file it names."""
    if FRAME_DATA in message:
        return message[FRAME_DATA]
    with open(message["path"], "rb") as f:
        return f.read()


def error_text(message, python):
    text = message.get("message") or "unknown error"
    kind = message.get("kind")
    if kind == "device":
        return f"{text} (Device 'auto' or 'cpu' always works.)"
    if kind == "internal":
        return f"{text} (please report this)"
    return text


# ---------------------------------------------------------------- GIMP side


def babl_format(image):
    """sRGB-encoded ("R'G'B'"), never linear; bytes for 8-bit images, float otherwise."""
    precision = image.get_precision()
    if precision in (
        Gimp.Precision.U8_LINEAR,
        Gimp.Precision.U8_NON_LINEAR,
        Gimp.Precision.U8_PERCEPTUAL,
    ):
        return "R'G'B'A u8", "rgba8"
    return "R'G'B'A float", "rgbaf32"


def file_path(config, name):
    gfile = config.get_property(name)
    if gfile is None:
        return None
    path = gfile.get_path()
    if not path:
        raise PluginError(f"The style image {gfile.get_uri()} is not a local file.")
    return path


def style_specs(config):
    """The styles as the protocol wants them, each checked to exist and be readable."""
    style = file_path(config, "style-file")
    if style is None:
        raise PluginError("Choose a style image.")
    second = file_path(config, "style-file-2")
    blend = float(config.get_property("style-blend"))
    for path in [style] + ([second] if second else []):
        if not os.path.isfile(path):
            raise PluginError(f"The style image {path} does not exist.")
        if not os.access(path, os.R_OK):
            raise PluginError(f"The style image {path} can't be read (permissions).")
    specs = [{"path": style, "weight": 1.0}]
    if second and blend > 0.0:
        specs = [{"path": style, "weight": 1.0 - blend}, {"path": second, "weight": blend}]
        specs = [s for s in specs if s["weight"] > 0.0]
    return specs


def build_request(config, job_id, content, width, height, fmt, workdir, preview=False):
    """A stylize request for the pixel file `content`; a preview gets the preview schedule."""
    max_size = int(config.get_property("max-size"))
    request = {
        "type": "stylize",
        "id": job_id,
        "content": {"path": content, "width": width, "height": height, "format": fmt},
        "output": {"path": content[: -len(".raw")] + "-result.raw"},
        "styles": style_specs(config),
        "options": {
            "preset": config.get_property("quality"),
            "strength": float(config.get_property("strength")),
            "max_size": max_size if max_size > 0 else None,
            "preserve_colors": config.get_property("preserve-colors"),
            "device": config.get_property("device"),
            "seed": int(config.get_property("seed")),
        },
        "workdir": workdir,
    }
    if preview:
        request["options"].update(max_size=PREVIEW_SIZE, steps=PREVIEW_STEPS)
    return request


def the_layer(drawables):
    if len(drawables) != 1:
        raise PluginError(
            f"Neural Style works on one layer: select exactly one layer ({len(drawables)} are selected)."
        )
    layer = drawables[0]
    if not isinstance(layer, Gimp.Layer) or layer.is_layer_mask():
        raise PluginError("Neural Style works on a layer: select a layer, not a mask or channel.")
    if layer.is_group_layer():
        raise PluginError("Neural Style can't paint on a layer group: select a layer inside it.")
    return layer


def layer_region(layer):
    """The selection's bounds within the layer (x, y, width, height in layer coordinates)."""
    inside, x, y, width, height = layer.mask_intersect()
    if not inside or width < 1 or height < 1:
        raise PluginError("The selection does not overlap the layer.")
    return x, y, width, height


def stylize(image, drawables, config, preview=None):
    """The whole run on the layer; `preview`, the dialog's, lends its warm worker and folder."""
    layer = the_layer(drawables)
    x, y, width, height = layer_region(layer)
    python, command = worker_config()
    gegl_format, fmt = babl_format(image)
    rect = Gegl.Rectangle.new(x, y, width, height)

    own = not (preview and preview.workdir)  # else the dialog's folder, removed when it closes
    workdir = tempfile.mkdtemp(prefix="onnxstyle-gimp-") if own else preview.workdir
    try:
        content = os.path.join(workdir, "content.raw")
        request = build_request(config, "gimp-1", content, width, height, fmt, workdir)
        pixels = layer.get_buffer().get(rect, 1.0, gegl_format, Gegl.AbyssPolicy.NONE)
        with open(content, "wb") as f:
            f.write(bytes(pixels))
        del pixels
        warm = preview.warm_worker(request["options"]["device"]) if preview else None
        if warm:
            result = run_job(warm, request)
        else:
            result = run_worker(request, python, command, workdir)
        data = result_data(result)
        if len(data) != width * height * (4 if fmt == "rgba8" else 16):
            raise PluginError(f"The worker's result has the wrong size ({len(data)} bytes).")
        Gimp.progress_set_text("Neural style: writing the layer")
        write_result(image, layer, rect, gegl_format, data, config.get_property("output"))
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def write_result(image, layer, rect, gegl_format, data, output):
    """One undo group; the shadow merge blends through the (feathered) selection mask."""
    image.undo_group_start()
    try:
        target = layer
        if output == "new-layer":
            target = layer.copy()  # same size, offsets, type and alpha as the source
            target.set_name(f"{layer.get_name()} (neural style)")
            image.insert_layer(target, layer.get_parent(), image.get_item_position(layer))
        shadow = target.get_shadow_buffer()
        shadow.set(rect, gegl_format, data)
        shadow.flush()
        target.merge_shadow(True)
        target.update(rect.x, rect.y, rect.width, rect.height)
    finally:
        image.undo_group_end()
    Gimp.displays_flush()


# ---------------------------------------------------------------- the dialog's preview


def preview_pixels(layer, x, y, width, height):
    """A copy of the region scaled by GIMP to at most PREVIEW_SIZE: (RGBA bytes, width, height)."""
    scale = min(1.0, PREVIEW_SIZE / max(width, height))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    data, w, h, bpp = layer.get_sub_thumbnail_data(x, y, width, height, w, h)
    data = bytes(data.get_data())
    if bpp not in (1, 2, 3, 4) or len(data) != w * h * bpp:
        raise PluginError(f"GIMP gave an unexpected preview copy ({w}x{h}, {bpp} bytes a pixel).")
    return to_rgba(data, w * h, bpp), w, h


def to_rgba(data, pixels, bpp):
    """8-bit grey, grey+alpha, RGB or RGBA pixels as RGBA (slices: no per-pixel Python)."""
    out = bytearray(b"\xff" * (4 * pixels))
    for c in range(3):
        out[c::4] = data[(0 if bpp < 3 else c) :: bpp]
    if bpp in (2, 4):
        out[3::4] = data[bpp - 1 :: bpp]
    return bytes(out)


def checkered(data, width, height):
    """RGBA bytes as a pixbuf over GIMP-like grey checks, so transparency shows."""
    pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(
        GLib.Bytes.new(data), GdkPixbuf.Colorspace.RGB, True, 8, width, height, width * 4
    )
    return pixbuf.composite_color_simple(
        width, height, GdkPixbuf.InterpType.NEAREST, 255, 8, 0x999999, 0x666666
    )


class Preview:
    """The dialog's preview: one warm worker for the dialog, at most one job at a time, and the
    newest request wins (a running job is cancelled; its late answer is dropped by job id).

    Every GTK and GIMP call happens on the main thread: the worker's reader thread only queues
    lines and calls GLib.idle_add(self._drain)."""

    def __init__(self, dialog, config, drawables):
        self.dialog = dialog
        self.config = config
        self.drawables = drawables
        self.workdir = None  # made by the first preview
        self.worker = None
        self.hello = None  # the worker's hello, once it came and suited us
        self.running = None  # the job the worker computes: {"id", "request", "key", "asked", ...}
        self.pending = None  # the newest wanted job; sent when the worker is free
        self.jobs = 0
        self.shown = False  # a preview is on show
        self.detached = False  # the dialog has closed: its widgets are gone
        self.timers = {}
        self.box = self._widgets(dialog)
        self._placeholder()
        self._show_styles()
        self._status("Press Preview to try the style on a small copy of the layer.")
        self.handler = config.connect("notify", self._changed)

    # -- widgets

    def _widgets(self, dialog):
        self.image = Gtk.Image()
        self.image.set_size_request(PREVIEW_SIZE, PREVIEW_SIZE)
        self.image.get_accessible().set_name("Preview image")
        self.styles = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        self.styles.set_size_request(THUMB_SIZE, -1)
        pictures = Gtk.Box(spacing=12)
        for title, widget in (("Preview", self.image), ("Style", self.styles)):
            frame = Gtk.Frame(label=title, shadow_type=Gtk.ShadowType.ETCHED_IN)
            frame.add(widget)
            pictures.pack_start(frame, False, False, 0)
        self.button = Gtk.Button.new_with_mnemonic("_Preview")
        self.button.set_tooltip_text("Style a small copy of the layer with these values")
        self.button.connect("clicked", lambda _button: self.request())
        buttons = Gtk.Box(spacing=12)
        buttons.pack_start(self.button, False, False, 0)
        buttons.pack_start(dialog.get_widget("auto-preview", Gtk.CheckButton), False, False, 0)
        self.bar = Gtk.ProgressBar(show_text=True)
        self.bar.set_text("")
        self.warning = Gtk.Image.new_from_icon_name("dialog-warning", Gtk.IconSize.BUTTON)
        # a fixed width: the dialog keeps its layout whatever the status says
        self.label = Gtk.Label(xalign=0.0, wrap=True, width_chars=38, max_width_chars=38)
        self.label.get_accessible().set_description("Preview status")
        status = Gtk.Box(spacing=6)
        status.pack_start(self.warning, False, False, 0)
        status.pack_start(self.label, True, True, 0)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8)
        for widget in (pictures, buttons, self.bar, status):
            box.pack_start(widget, False, False, 0)
        box.show_all()
        return box

    def _placeholder(self):
        """A plain grey area of the preview's shape, so the user sees where it will appear."""
        try:
            region = layer_region(the_layer(self.drawables))
            scale = PREVIEW_SIZE / max(region[2:])
            width, height = round(region[2] * scale), round(region[3] * scale)
        except PluginError:
            width = height = PREVIEW_SIZE
        pixbuf = GdkPixbuf.Pixbuf.new(
            GdkPixbuf.Colorspace.RGB, False, 8, max(width, 1), max(height, 1)
        )
        pixbuf.fill(0x5A5A5AFF)
        self.image.set_from_pixbuf(pixbuf)

    def _show_styles(self):
        for child in self.styles.get_children():
            child.destroy()
        for path in self._style_paths():
            try:
                pixbuf = GdkPixbuf.Pixbuf.new_from_file_at_scale(path, THUMB_SIZE, THUMB_SIZE, True)
                thumb = Gtk.Image.new_from_pixbuf(pixbuf)
                thumb.get_accessible().set_name("Style thumbnail")
            except GLib.Error:
                thumb = Gtk.Label(label=f"(can't show {os.path.basename(path)})", wrap=True)
            self.styles.pack_start(thumb, False, False, 0)
        if not self.styles.get_children():
            self.styles.pack_start(Gtk.Label(label="(none chosen)"), False, False, 0)
        self.styles.show_all()
        # the share means something only with a second style
        second = self.config.get_property("style-file-2") is not None
        self.dialog.get_widget("style-blend", GObject.TYPE_NONE).set_sensitive(second)

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

    def _status(self, text, error=False):
        self._stop_timer("pulse")
        self.bar.set_fraction(0.0)
        self.bar.set_text("")
        self.label.set_text(text)
        self.warning.set_opacity(1.0 if error else 0.0)  # hidden, its room kept: no layout jump

    def _busy(self, text):
        """An indeterminate bar until the first progress line."""
        self.bar.set_text(text)
        self.warning.set_opacity(0.0)
        if "pulse" not in self.timers:
            self.timers["pulse"] = GLib.timeout_add(120, self._pulse)

    def _pulse(self):
        self.bar.pulse()
        return True

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
            self._status(str(exc), error=True)
            return False
        if self.running and not self.running.get("stale") and self.running["key"] == job["key"]:
            self._forget(job)  # the running job computes exactly this already
            return False
        self._cancel_running()
        self.pending = job
        self.label.set_text("Working on the preview…")
        self.warning.set_opacity(0.0)
        self._pump()
        return False  # also a one-shot GLib timeout callback

    def _new_job(self):
        layer = the_layer(self.drawables)
        region = layer_region(layer)
        self.jobs += 1
        job_id = f"preview-{self.jobs}"
        self.workdir = self.workdir or tempfile.mkdtemp(prefix="onnxstyle-gimp-")
        content = os.path.join(self.workdir, f"{job_id}.raw")
        pixels, width, height = preview_pixels(layer, *region)
        request = build_request(
            self.config, job_id, content, width, height, "rgba8", self.workdir, preview=True
        )
        with open(content, "wb") as f:
            f.write(pixels)
        key = json.dumps([request["styles"], request["options"], region], sort_keys=True)
        return {"id": job_id, "request": request, "key": key, "asked": time.monotonic()}

    def _pump(self):
        """Start the worker if there is none; send the pending job once the worker is free."""
        if self.pending is None or self.running is not None:
            return
        if self.worker is None:
            try:
                self._start_worker()
            except PluginError as exc:
                self._forget(self.pending)
                self.pending = None
                self._status(str(exc), error=True)
            return
        if self.hello is None:
            return  # _on_hello pumps again
        job, self.pending = self.pending, None
        try:
            send_job(self.worker, job["request"])
        except (PluginError, OSError) as exc:
            self._forget(job)
            self._status(str(exc), error=True)
            return
        self.running = job
        log(f"preview job {job['id']} sent")
        self._busy("Loading the model and the style")

    def _start_worker(self):
        python, command = worker_config()
        self.worker = Worker(
            python,
            command,
            os.path.join(self.workdir, "worker-stderr.txt"),
            notify=lambda: GLib.idle_add(self._drain),
        )
        self.hello = None
        self.worker.send(hello_request(self.workdir))
        self._busy("Starting the worker")
        self.timers["hello"] = GLib.timeout_add_seconds(int(HELLO_TIMEOUT_S), self._hello_late)
        log(f"worker started (pid {self.worker.process.pid})")

    def _hello_late(self):
        self.timers.pop("hello", None)
        label = self.worker.label
        self._stop_worker()
        self._status(
            f"The onnxstyle worker ({label}) did not answer within {HELLO_TIMEOUT_S:.0f} s.", True
        )
        return False

    def _cancel_running(self):
        """Cancel the running job (its answer will be dropped) and forget the pending one."""
        if self.pending:
            self._forget(self.pending)
            self.pending = None
        if self.running and not self.running.get("stale"):
            self.running["stale"] = True
            self.worker.send({"type": "cancel", "id": self.running["id"]})
            log(f"preview job {self.running['id']} cancelled")

    def _forget(self, job):
        for path in (job["request"]["content"]["path"], job["request"]["output"]["path"]):
            try:
                os.remove(path)
            except OSError:
                pass

    # -- answers (main thread)

    def _drain(self):
        worker = None if self.detached else self.worker  # after OK, the final job reads the lines
        if worker is not None:
            for message in worker.ready_messages():
                if worker is not self.worker:
                    break  # it crashed or was stopped while we handled an earlier line
                self._on_message(message)
        return False

    def _on_message(self, message):
        kind = message and message.get("type")
        ours = message and self.running and message.get("id") == self.running["id"]
        if message is None:
            self._crashed()
        elif kind == "hello":
            self._on_hello(message)
        elif ours and kind == "progress":
            self._progress(message)
        elif ours and kind in FINALS:
            self._finished(message)
        elif kind == "error":
            log(f"worker error outside a preview job: {message.get('message')}")

    def _on_hello(self, message):
        self._stop_timer("hello")
        try:
            self.hello = validate_hello(self.worker, message, self.config.get_property("device"))
        except PluginError as exc:
            self._stop_worker()
            self._status(str(exc), error=True)
            return
        log(f"worker ready {time.monotonic() - self.worker.started:.1f} s after its start")
        self._pump()

    def _progress(self, message):
        self._stop_timer("pulse")
        self.bar.set_fraction(float(message.get("fraction") or 0.0))
        scale = f"scale {message.get('scale')}/{message.get('scales')}, "
        step = f"step {message.get('step')}/{message.get('steps')}"
        self.bar.set_text("Styling: " + (scale if message.get("scales", 1) > 1 else "") + step)

    def _finished(self, message):
        job, self.running = self.running, None
        kind, stale = message["type"], job.get("stale")
        log(f"preview job {job['id']} ended: {kind}{' (stale: dropped)' if stale else ''}")
        if kind == "result" and not stale:
            self._show(job, message)
        elif kind == "error" and not stale:
            self._status(error_text(message, self.worker.python), error=True)
        self._forget(job)
        self._pump()

    def _show(self, job, message):
        try:
            width, height = int(message["width"]), int(message["height"])
            data = result_data(message)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            self._status(f"Can't read the worker's preview: {exc}", error=True)
            return
        if len(data) != width * height * 4:
            self._status(f"The worker's preview has the wrong size ({len(data)} bytes).", True)
            return
        self.image.set_from_pixbuf(checkered(data, width, height))
        self.image.set_opacity(1.0)
        self.shown = True
        seconds = time.monotonic() - job["asked"]
        log(f"preview job {job['id']} shown {seconds:.1f} s after it was asked for")
        self._status(f"Preview ready in {seconds:.1f} s. OK styles the whole layer.")

    def _crashed(self):
        text = self.worker.crash_message()
        log(text)
        for job in (self.running, self.pending):
            if job:
                self._forget(job)
        self.running = self.pending = None
        self._stop_worker()
        self._status(f"{text} Press Preview to start it again.", error=True)

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
            self._stop_timer("pulse")
            self.bar.set_text("")
        if name not in PREVIEW_ARGS:
            return
        had_preview = self.running or self.pending or self.shown
        self._cancel_running()
        self.image.set_opacity(0.4)  # the preview shown no longer matches the values
        if auto:
            self._schedule()
        elif had_preview:
            self._status("The values changed: press Preview to see them.")

    def _schedule(self):
        """Auto-update: preview once the values have stopped changing for a moment."""
        self._stop_timer("auto")
        self.timers["auto"] = GLib.timeout_add(AUTO_DELAY_MS, self.request)
        self._busy("Waiting for the values to settle")

    # -- the end of the dialog

    def detach(self):
        """The dialog closes: no more widget updates; a running preview is cancelled."""
        self.detached = True
        self.config.disconnect(self.handler)
        for name in list(self.timers):
            self._stop_timer(name)
        self._cancel_running()
        if self.worker:
            self.worker.notify = None

    def warm_worker(self, device):
        """The dialog's worker, greeted and idle, for the final job; None if it has none that works."""
        if self.worker is None:
            return None
        try:
            if self.hello is None:
                hello = self.worker.receive(timeout=HELLO_TIMEOUT_S)
                if hello is None:
                    raise PluginError(self.worker.crash_message())
                self.hello = hello
            validate_hello(self.worker, self.hello, device)
            while self.running:  # the cancelled preview's last answer
                message = self.worker.receive(timeout=HELLO_TIMEOUT_S)
                if message is None:
                    raise PluginError(self.worker.crash_message())
                if message.get("id") == self.running["id"] and message.get("type") in FINALS:
                    self.running = None
        except PluginError as exc:
            log(f"the dialog's worker can't take the final job ({exc}); starting a new one")
            self._stop_worker()
            return None
        log("final job on the dialog's warm worker")
        return self.worker

    def _stop_worker(self):
        self._stop_timer("hello")
        if self.worker:
            self.worker.close()
        self.worker, self.hello, self.running = None, None, None

    def close(self):
        """Stop the worker (it exits when its stdin closes) and remove every temporary file."""
        self._stop_worker()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def dialog_layout(dialog):
    """The procedure's widgets in a column, the advanced ones in an expander; returns the row
    that the preview column joins."""
    dialog.get_scale_entry("strength", 1.0)
    dialog.get_scale_entry("style-blend", 1.0)
    dialog.fill_box("advanced-box", ["max-size", "device", "seed"])
    dialog.get_label("advanced-label", "Advanced", False, False)
    dialog.fill_expander("advanced", "advanced-label", False, "advanced-box")
    settings = dialog.fill_box(
        "settings",
        ["style-file", "style-file-2", "style-blend", "strength", "quality"]
        + ["preserve-colors", "output", "advanced"],
    )
    settings.set_size_request(360, -1)
    row = dialog.fill_box("main", ["settings"])
    row.set_orientation(Gtk.Orientation.HORIZONTAL)
    row.set_spacing(18)
    dialog.fill(["main"])
    return row


def show_dialog(procedure, config, drawables):
    """Runs the dialog; returns its Preview (holding the warm worker) on OK, None on Cancel."""
    GimpUi.init(PROC_NAME)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Style (ONNX)")
    row = dialog_layout(dialog)
    preview = Preview(dialog, config, drawables)
    row.pack_start(preview.box, False, False, 0)
    try:
        confirmed = dialog.run()
    finally:
        preview.detach()
        dialog.destroy()
    if not confirmed:
        preview.close()
        return None
    return preview


def run(procedure, run_mode, image, drawables, config, data):
    preview = None
    if run_mode == Gimp.RunMode.INTERACTIVE:
        preview = show_dialog(procedure, config, drawables)
        if preview is None:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    Gimp.progress_init("Neural style")
    try:
        stylize(image, drawables, config, preview)
    except Cancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except PluginError as exc:
        log(str(exc))
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(str(exc)))
    except Exception as exc:  # a bug here: still a message, and the image is unchanged or whole
        traceback.print_exc()
        message = f"Neural style failed: {type(exc).__name__}: {exc}"
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))
    finally:
        Gimp.progress_end()
        if preview:
            preview.close()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _choice(items):
    choice = Gimp.Choice.new()
    for i, (nick, label) in enumerate(items):
        choice.add(nick, i, label, "")
    return choice


class NeuralStyle(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROC_NAME]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        rw = GObject.ParamFlags.READWRITE
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        procedure.set_image_types("RGB*, GRAY*")
        # active with several layers selected too, so the user gets a clear message, not a grey item
        procedure.set_sensitivity_mask(
            Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES
        )
        procedure.set_menu_label("Neural Style (ONNX)…")
        procedure.add_menu_path("<Image>/Filters/Artistic")
        procedure.set_documentation(
            "Paint the layer in the style of another image (neural style transfer)",
            "Gatys et al. (2015) neural style transfer computed by ONNX Runtime in the onnxstyle worker. "
            "Works on the selected layer within the selection; the result goes to a new layer above "
            "or replaces the layer's pixels, in one undo step.",
            name,
        )
        procedure.set_attribution("onnxstyle contributors", "onnxstyle contributors", "2026")
        procedure.add_file_argument(
            "style-file",
            "Style _image",
            "The image whose style is painted",
            Gimp.FileChooserAction.OPEN,
            True,
            None,
            rw,
        )
        procedure.add_file_argument(
            "style-file-2",
            "Second st_yle (optional)",
            "A second style image to blend in",
            Gimp.FileChooserAction.OPEN,
            True,
            None,
            rw,
        )
        procedure.add_double_argument(
            "style-blend",
            "Second style's sh_are",
            "0 = first style only, 1 = second only",
            0.0,
            1.0,
            0.5,
            rw,
        )
        procedure.add_double_argument(
            "strength",
            "S_trength",
            "How much style: 0 keeps the layer, 1 a clearly styled picture, more gives more",
            0.0,
            10.0,
            1.0,
            rw,
        )
        procedure.add_choice_argument(
            "quality", "_Quality", "Speed against quality", _choice(PRESETS), "normal", rw
        )
        procedure.add_int_argument(
            "max-size",
            "_Maximum size",
            "Longest side worked on, in pixels (0 = the preset's)",
            0,
            16384,
            0,
            rw,
        )
        procedure.add_choice_argument(
            "preserve-colors",
            "_Keep colours",
            "Keep the content's colours",
            _choice(PRESERVE),
            "none",
            rw,
        )
        procedure.add_choice_argument(
            "output", "Result _goes to", "Where the result goes", _choice(OUTPUTS), "new-layer", rw
        )
        procedure.add_choice_argument(
            "device", "_Device", "Where ONNX Runtime computes", _choice(DEVICES), "auto", rw
        )
        procedure.add_int_argument(
            "seed", "S_eed", "Random seed of the starting image", 0, 2147483647, 0, rw
        )
        # the dialog's own setting: remembered like the arguments, not part of the PDB call
        procedure.add_boolean_aux_argument(
            "auto-preview",
            "Update a_utomatically",
            "Preview again after every change",
            False,
            rw,
        )
        return procedure


Gimp.main(NeuralStyle.__gtype__, sys.argv)
