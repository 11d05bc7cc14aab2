#!/usr/bin/env python3
# onnxstyle — neural style transfer (Gatys et al. 2015) for GIMP 3, computed by ONNX Runtime.
#
# This file registers the filters with GIMP and runs them: Neural Style on the selected layer,
# and on all layers, the frames of an animation (animation.py). GIMP runs it with its own Python (no
# numpy, no onnxruntime, nothing of onnxstyle) and puts this folder on sys.path, so the modules
# beside it import:
#   protocol.py       the worker protocol as we speak it: constants, requests, typed replies
#   worker_link.py    the worker process, its reader thread, the hello, running a job
#   worker_record.py  the worker command `onnxstyle gimp install` recorded (onnxstyle-worker.json)
#   settings.py       the procedure's values -> a stylize job (styles checked, options)
#   animation.py      on all layers: the layers as frames, styled in order, written together
#   pixels.py         the layer's pixels: read, preview copy, write back through the selection
#   dialog.py         the dialog's layout and the Preview panel's widgets
#   preview.py        what the Preview does: one warm worker, one job at a time, newest wins
#   errors.py         PluginError (one line for the user) and log
#   windows_job.py    Windows only: the worker dies with GIMP
# The worker runs with the command recorded next to this file (`python -m
# onnxstyle.plugin.worker` in onnxstyle's Python environment, or `ssh gpu-box ... -m
# onnxstyle.plugin.worker` for a worker on another machine) and talks JSON lines (protocol
# version 2, see onnxstyle/plugin/protocol.py). When the worker shares this machine's files
# (its hello says so) pixels travel as temporary files; otherwise in-band, as frames.
#
# Order of work, so that a failed or cancelled run changes nothing: read the pixels of the
# selection's bounds -> run the worker -> only on success write the result, blended through
# the selection mask by GIMP's shadow-buffer merge, inside one undo group.
#
# A new argument: registered in add_arguments below, read in settings.py, placed in the
# dialog in dialog.py.

import os
import shutil
import sys
import tempfile
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")

# the modules beside this file import GIMP's libraries: only after the versions are required
from animation import animation_frames, stylize_frames  # noqa: E402
from dialog import show_dialog  # noqa: E402
from errors import JobCancelled, PluginError, log  # noqa: E402
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402
from pixels import (  # noqa: E402
    BYTES_PER_PIXEL,
    babl_format,
    save_region,
    selected_layer,
    selection_bounds,
    write_result,
)
from protocol import DEFAULT_TEMPORAL_WEIGHT  # noqa: E402
from settings import stylize_job  # noqa: E402
from worker_link import run_job, run_on_new_worker  # noqa: E402
from worker_record import read_record  # noqa: E402

PROC_NAME = "plug-in-onnxstyle-neural-style"
PROC_LAYERS = "plug-in-onnxstyle-neural-style-layers"  # every layer, as an animation's frames
TEMPORAL_WEIGHT_MAX = 1000000.0  # the dialog's range; the worker takes up to float32's largest
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


def run(procedure, run_mode, image, drawables, config, data):
    def work(preview):
        stylize(image, drawables, config, preview)

    return run_with_dialog(procedure, run_mode, config, drawables, work)


def run_on_layers(procedure, run_mode, image, drawables, config, data):
    """Every layer, as the frames of an animation; the preview shows the selected one."""
    try:
        frames = animation_frames(image)
    except PluginError as exc:
        return failed(procedure, exc)
    shown = drawables[:1] if len(drawables) >= 1 else frames[-1:]

    def work(preview):
        stylize_frames(image, frames, config, preview)

    return run_with_dialog(procedure, run_mode, config, shown, work, animation=True)


def run_with_dialog(procedure, run_mode, config, drawables, work, animation=False):
    """The dialog when interactive, then `work(preview)`: one message for whatever goes wrong."""
    preview = None
    if run_mode == Gimp.RunMode.INTERACTIVE:
        preview = show_dialog(procedure, config, drawables, animation)
        if preview is None:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    Gimp.progress_init("Neural style")
    try:
        work(preview)
    except JobCancelled:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    except PluginError as exc:
        return failed(procedure, exc)
    except Exception as exc:  # a bug here: still a message, and the image is unchanged or whole
        traceback.print_exc()
        message = f"Neural style failed: {type(exc).__name__}: {exc}"
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))
    finally:
        Gimp.progress_end()
        if preview:
            preview.close()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def failed(procedure, exc):
    log(str(exc))
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(str(exc)))


def stylize(image, drawables, config, preview=None):
    """The whole run on the layer; `preview`, the dialog's, lends its warm worker and folder."""
    layer = selected_layer(drawables)
    x, y, width, height = selection_bounds(layer)
    python, command = read_record()
    gegl_format, fmt = babl_format(image)
    rect = Gegl.Rectangle.new(x, y, width, height)

    own = not (preview and preview.workdir)  # else the dialog's folder, removed when it closes
    workdir = tempfile.mkdtemp(prefix="onnxstyle-gimp-") if own else preview.workdir
    try:
        content = os.path.join(workdir, "content.raw")
        job = stylize_job(config, "gimp-1", content, width, height, fmt)
        save_region(layer, rect, gegl_format, content)
        warm = preview.warm_worker(job.options.device) if preview else None
        if warm:
            result = run_job(warm, job)
        else:
            result = run_on_new_worker(job, python, command, workdir)
        data = result.pixels()
        if len(data) != width * height * BYTES_PER_PIXEL[fmt]:
            raise PluginError(f"The worker's result has the wrong size ({len(data)} bytes).")
        Gimp.progress_set_text("Neural style: writing the layer")
        write_result(image, layer, rect, gegl_format, data, config.get_property("output"))
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def _choice(items):
    choice = Gimp.Choice.new()
    for i, (nick, label) in enumerate(items):
        choice.add(nick, i, label, "")
    return choice


class NeuralStyle(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROC_NAME, PROC_LAYERS]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        mask = Gimp.ProcedureSensitivityMask
        if name == PROC_LAYERS:
            procedure = Gimp.ImageProcedure.new(
                self, name, Gimp.PDBProcType.PLUGIN, run_on_layers, None
            )
            procedure.set_sensitivity_mask(mask.DRAWABLE | mask.DRAWABLES | mask.NO_DRAWABLES)
            procedure.set_menu_label("Neural Style (ONNX) on all layers…")
            procedure.set_documentation(
                "Paint every layer, as the frames of an animation, in the style of another image",
                "Neural style transfer for videos (Ruder et al. 2016) computed by ONNX Runtime in "
                "the onnxstyle worker: the layers are frames in GIMP's animation order (the bottom "
                "layer first), each styled from the previous result so the texture does not "
                "flicker. Replaces every layer's pixels within the selection, in one undo step.",
                name,
            )
        else:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
            # active with several layers selected too: the user gets a clear message, not a grey item
            procedure.set_sensitivity_mask(mask.DRAWABLE | mask.DRAWABLES)
            procedure.set_menu_label("Neural Style (ONNX)…")
            procedure.set_documentation(
                "Paint the layer in the style of another image (neural style transfer)",
                "Gatys et al. (2015) neural style transfer computed by ONNX Runtime in the onnxstyle "
                "worker. Works on the selected layer within the selection; the result goes to a new "
                "layer above or replaces the layer's pixels, in one undo step.",
                name,
            )
        procedure.set_image_types("RGB*, GRAY*")
        procedure.add_menu_path("<Image>/Filters/Artistic")
        add_arguments(procedure, animation=name == PROC_LAYERS)
        return procedure


def add_arguments(procedure, animation):
    """The dialog's values; on all layers the temporal weight takes the output's place (a new
    layer per frame would double the animation's frames: the layers are replaced)."""
    rw = GObject.ParamFlags.READWRITE
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
    if animation:
        procedure.add_double_argument(
            "temporal-weight",
            "Tem_poral weight",
            "How closely each frame follows the previous one (0: every frame on its own, "
            "which flickers)",
            0.0,
            TEMPORAL_WEIGHT_MAX,
            DEFAULT_TEMPORAL_WEIGHT,
            rw,
        )
    else:
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


Gimp.main(NeuralStyle.__gtype__, sys.argv)
