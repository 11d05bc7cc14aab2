"""The image's layers as the frames of an animation, styled without flicker (Ruder et al. 2016):
the worker styles each frame from the previous result (its "sequence"), one after another, on
one worker, the dialog's warm one when there is one.

Frames are in GIMP's animation order: the bottom layer is frame 1, as Filters → Animation →
Playback and the GIF export play them. Order of work, so that a failed or cancelled run changes
nothing: every frame is styled first, each result kept in a file of ours; only when all have
come back are the layers written, in one undo group.
"""

import os
import shutil
import tempfile

from errors import PluginError, log
from gi.repository import Gegl, Gimp
from pixels import BYTES_PER_PIXEL, babl_format, save_region, selection_bounds, write_layers
from settings import stylize_job
from worker_link import open_worker, run_job
from worker_record import read_record


def animation_frames(image):
    """The image's layers, frame 1 (the bottom layer) first; a PluginError unless they can be
    frames: plain layers, each of one size at one place."""
    layers = list(reversed(image.get_layers()))
    if any(layer.is_group_layer() for layer in layers):
        raise PluginError(
            "Neural Style on all layers: the frames must be layers, not layer groups."
        )
    first = layers[0]
    for number, layer in enumerate(layers[1:], 2):
        if _place(layer) != _place(first):
            raise PluginError(
                "Neural Style on all layers: every frame must have one size and position; "
                f"frame {number} ({layer.get_name()}) is {_described(layer)}, "
                f"frame 1 ({first.get_name()}) {_described(first)}."
            )
    return layers


def _place(layer):
    _, x, y = layer.get_offsets()
    return layer.get_width(), layer.get_height(), x, y


def _described(layer):
    width, height, x, y = _place(layer)
    return f"{width}x{height} at ({x}, {y})"


def stylize_frames(image, frames, config, preview=None):
    """Every frame styled on one worker (the dialog's warm one if it has one), then all written in
    one undo group; a failure or a cancel leaves every layer as it was."""
    x, y, width, height = selection_bounds(frames[0])  # the same for every frame
    rect = Gegl.Rectangle.new(x, y, width, height)
    gegl_format, fmt = babl_format(image)
    own = not (preview and preview.workdir)  # else the dialog's folder, removed when it closes
    workdir = tempfile.mkdtemp(prefix="onnxstyle-gimp-") if own else preview.workdir
    link = warm = None
    try:
        device = config.get_property("device")
        warm = preview.warm_worker(device) if preview else None
        link = warm or open_worker(*read_record(), workdir, device)
        results, notes = style_frames(link, frames, config, workdir, (rect, gegl_format, fmt))
        Gimp.progress_set_text(f"Neural style: writing {len(frames)} layers")
        write_layers(image, frames, rect, gegl_format, results)
        for note in notes:  # after the layers: the run went through, with these caveats
            Gimp.message(f"Neural Style on all layers: {note}")
    finally:
        if link is not None and link is not warm:
            link.close()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def style_frames(link, frames, config, workdir, region):
    """Each frame through the worker, in order; returns the result files, frame 1 first, and the
    worker's notes (each sent once)."""
    rect, gegl_format, fmt = region
    sequence = f"gimp-layers-{os.urandom(6).hex()}"  # the worker keeps the latest sequence only
    results, notes = [], []
    for index, layer in enumerate(frames):
        content = os.path.join(workdir, f"frame-{index + 1}.raw")
        save_region(layer, rect, gegl_format, content)
        job = stylize_job(
            config, f"frame-{index + 1}", content, rect.width, rect.height, fmt,
            sequence=(sequence, index),
        )  # fmt: skip
        Gimp.progress_set_text(f"Neural style: frame {index + 1} of {len(frames)}")
        log(f"frame {index + 1} of {len(frames)}: layer {layer.get_name()!r}")
        result = run_job(link, job, show=_frame_progress(index, len(frames)))
        results.append(_kept(result, job, rect.width * rect.height * BYTES_PER_PIXEL[fmt]))
        notes.extend(result.notes)
        os.remove(content)
    return results, notes


def _frame_progress(index, count):
    """A frame's progress in GIMP's bar: which frame, and the fraction of the whole animation."""

    def show(reply):
        Gimp.progress_set_text(f"Neural style: frame {index + 1} of {count}: {reply.text}")
        Gimp.progress_update((index + reply.fraction) / count)

    return show


def _kept(result, job, size):
    """The result's pixels in the job's output file (the worker wrote it when it shares our files;
    else they came in-band and go there now), checked to be whole."""
    if result.data is not None:
        with open(job.output, "wb") as f:
            f.write(result.data)
    found = os.path.getsize(job.output)
    if found != size:
        raise PluginError(f"The worker's result for {job.id} has the wrong size ({found} bytes).")
    return job.output
