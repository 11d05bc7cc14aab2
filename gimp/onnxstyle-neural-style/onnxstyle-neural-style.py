#!/usr/bin/env python3
# onnxstyle — neural style transfer (Gatys et al. 2015) for GIMP 3, computed by ONNX Runtime.
#
# This file runs in GIMP's own Python, which has no numpy and no onnxruntime: it moves bytes,
# runs the onnxstyle worker (`python -m onnxstyle.plugin.worker`) in the Python environment
# recorded by `onnxstyle gimp install` in onnxstyle-worker.json next to this file, and talks
# to it with JSON lines (protocol version 1, see onnxstyle/plugin/protocol.py). It imports
# nothing of onnxstyle.
#
# Order of work, so that a failed or cancelled run changes nothing: read the pixels of the
# selection's bounds -> run the worker -> only on success write the result, blended through
# the selection mask by GIMP's shadow-buffer merge, inside one undo group.

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")

from gi.repository import Gegl, Gimp, GimpUi, GLib, GObject  # noqa: E402

PROC_NAME = "plug-in-onnxstyle-neural-style"
PROTOCOL_VERSION = 1
CONFIG_NAME = "onnxstyle-worker.json"
HELLO_TIMEOUT_S = 120.0  # a cold start imports numpy and onnxruntime from disk
FIX_INSTALL = '"{python}" -m pip install "onnxstyle[cpu]"'
FIX_REGISTER = '"{python}" -m onnxstyle.plugin.gimp_install install'

PRESETS = ("draft", "normal", "high")
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
)

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
        python = config["python"]
    except FileNotFoundError:
        raise PluginError(
            f"The onnxstyle worker is not set up: {path} is missing. In the Python environment where "
            "onnxstyle is installed, run: onnxstyle gimp install"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PluginError(f"Unreadable {path} ({exc}). Rerun: onnxstyle gimp install") from None
    if not os.path.exists(python):
        raise PluginError(
            f"The worker's Python {python} no longer exists. Reinstall onnxstyle in a Python environment "
            "and run there: onnxstyle gimp install"
        )
    command = [python] + list(config.get("args") or ["-m", "onnxstyle.plugin.worker"])
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
    """The worker process and a reader thread that queues its stdout lines."""

    def __init__(self, python, command, stderr_path):
        self.python = python
        self.stderr_path = stderr_path
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
                f"Can't start the onnxstyle worker {python}: {exc.strerror or exc}"
            ) from None
        if os.name == "nt":
            try:
                _WindowsJob.adopt(self.process)
            except Exception as exc:  # the worker still exits when its stdin closes
                log(f"no kill-on-close job object for the worker: {exc}")
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in iter(self.process.stdout.readline, b""):
            self.lines.put(line)
        self.lines.put(None)  # EOF

    def send(self, message):
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            self.process.stdin.flush()
        except OSError:
            pass  # it died; the reader reports EOF and we say why

    def receive(self, timeout=None):
        """The next message; None at EOF. Lines that are not JSON objects are logged and skipped."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise PluginError(
                    f"The onnxstyle worker ({self.python}) did not answer within {timeout:.0f} s."
                ) from None
            if line is None:
                return None
            try:
                message = json.loads(line)
                if isinstance(message, dict):
                    return message
            except ValueError:
                pass
            log(f"ignored worker output: {line[:200]!r}")

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
        if "No module named" in tail and "onnxstyle" in tail:
            return f"onnxstyle is not installed in the worker's Python {self.python}. Fix: {FIX_INSTALL.format(python=self.python)}, then {FIX_REGISTER.format(python=self.python)}"
        if code is not None and code < 0:
            what = f"was killed by signal {-code}"
            if -code == 9:
                what += " (out of memory?)"
        else:
            what = f"exited with status {code}"
        return f"The onnxstyle worker crashed: it {what}{(': ' + tail) if tail else '.'}"

    def close(self):
        """Close stdin (the worker cancels and exits), then make sure it's gone."""
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


def check_hello(worker, device):
    worker.send({"type": "hello", "protocol": PROTOCOL_VERSION})
    hello = worker.receive(timeout=HELLO_TIMEOUT_S)
    if hello is None:
        raise PluginError(worker.crash_message())
    if hello.get("type") != "hello" or hello.get("protocol") != PROTOCOL_VERSION:
        raise PluginError(
            f"The onnxstyle worker speaks protocol {hello.get('protocol')}, this plug-in "
            f"{PROTOCOL_VERSION}. Reinstall the plug-in from the same onnxstyle: "
            + FIX_REGISTER.format(python=worker.python)
        )
    providers = hello.get("providers") or []
    if not providers:
        raise PluginError(
            f"ONNX Runtime is missing in the worker's Python {worker.python}. Fix: {FIX_INSTALL.format(python=worker.python)}"
        )
    wanted = {"cuda": "CUDAExecutionProvider", "directml": "DmlExecutionProvider"}.get(device)
    if wanted and wanted not in providers:
        raise PluginError(
            "Device {} is unavailable: the worker's ONNX Runtime offers {}.".format(
                device, ", ".join(providers)
            )
        )
    return hello


def run_worker(request, python, command, workdir):
    """Run one job with progress in GIMP's bar; returns the result message or raises PluginError."""
    worker = Worker(python, command, os.path.join(workdir, "worker-stderr.txt"))
    try:
        Gimp.progress_set_text("Neural style: starting the worker")
        check_hello(worker, request["options"].get("device"))
        Gimp.progress_set_text("Neural style: loading the model and the style images")
        worker.send(request)
        while True:
            message = worker.receive()
            if message is None:
                raise PluginError(worker.crash_message())
            kind = message.get("type")
            if kind == "progress":
                Gimp.progress_set_text(message.get("text") or "Neural style")
                Gimp.progress_update(float(message.get("fraction") or 0.0))
            elif kind == "result":
                return message
            elif kind == "error":
                raise PluginError(error_text(message, python))
            elif kind == "cancelled":
                raise Cancelled("Neural style was cancelled.")
    finally:
        worker.close()


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


def build_request(config, width, height, fmt, workdir):
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
    max_size = int(config.get_property("max-size"))
    return {
        "type": "stylize",
        "id": "gimp-1",
        "content": {
            "path": os.path.join(workdir, "content.raw"),
            "width": width,
            "height": height,
            "format": fmt,
        },
        "output": {"path": os.path.join(workdir, "result.raw")},
        "styles": specs,
        "options": {
            "preset": config.get_property("quality"),
            "style_strength": float(config.get_property("style-strength")),
            "max_size": max_size if max_size > 0 else None,
            "preserve_colors": config.get_property("preserve-colors"),
            "device": config.get_property("device"),
            "seed": int(config.get_property("seed")),
        },
        "workdir": workdir,
    }


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


def stylize(image, drawables, config):
    layer = the_layer(drawables)
    inside, x, y, width, height = layer.mask_intersect()
    if not inside or width < 1 or height < 1:
        raise PluginError("The selection does not overlap the layer.")
    python, command = worker_config()
    gegl_format, fmt = babl_format(image)
    rect = Gegl.Rectangle.new(x, y, width, height)

    workdir = tempfile.mkdtemp(prefix="onnxstyle-gimp-")
    try:
        request = build_request(config, width, height, fmt, workdir)
        pixels = layer.get_buffer().get(rect, 1.0, gegl_format, Gegl.AbyssPolicy.NONE)
        with open(request["content"]["path"], "wb") as f:
            f.write(bytes(pixels))
        del pixels
        result = run_worker(request, python, command, workdir)
        with open(result["path"], "rb") as f:
            data = f.read()
        if len(data) != width * height * (4 if fmt == "rgba8" else 16):
            raise PluginError(f"The worker's result has the wrong size ({len(data)} bytes).")
        Gimp.progress_set_text("Neural style: writing the layer")
        write_result(image, layer, rect, gegl_format, data, config.get_property("output"))
    finally:
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


def run(procedure, run_mode, image, drawables, config, data):
    if run_mode == Gimp.RunMode.INTERACTIVE:
        GimpUi.init(PROC_NAME)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, "Neural Style (ONNX)")
        dialog.fill(None)
        confirmed = dialog.run()
        dialog.destroy()
        if not confirmed:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    Gimp.progress_init("Neural style")
    try:
        stylize(image, drawables, config)
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
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _choice(items):
    choice = Gimp.Choice.new()
    for i, item in enumerate(items):
        nick, label = item if isinstance(item, tuple) else (item, item.capitalize())
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
            "_Style image",
            "The image whose style is painted",
            Gimp.FileChooserAction.OPEN,
            True,
            None,
            rw,
        )
        procedure.add_file_argument(
            "style-file-2",
            "Second style (optional)",
            "A second style image to blend in",
            Gimp.FileChooserAction.OPEN,
            True,
            None,
            rw,
        )
        procedure.add_double_argument(
            "style-blend",
            "Second style's _share",
            "0 = first style only, 1 = second only",
            0.0,
            1.0,
            0.5,
            rw,
        )
        procedure.add_double_argument(
            "style-strength",
            "Style s_trength",
            "Weight of style against content (1 = preset)",
            0.01,
            100.0,
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
            "Preserve _colours",
            "Keep the content's colours",
            _choice(PRESERVE),
            "none",
            rw,
        )
        procedure.add_choice_argument(
            "output", "_Output", "Where the result goes", _choice(OUTPUTS), "new-layer", rw
        )
        procedure.add_choice_argument(
            "device", "_Device", "Where ONNX Runtime computes", _choice(DEVICES), "auto", rw
        )
        procedure.add_int_argument(
            "seed", "S_eed", "Random seed of the starting image", 0, 2147483647, 0, rw
        )
        return procedure


Gimp.main(NeuralStyle.__gtype__, sys.argv)
