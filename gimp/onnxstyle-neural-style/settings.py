"""The procedure's settings (its arguments, as the dialog or a script set them) turned into a
stylize job: the style files checked, the options the worker knows, the preview's schedule.

A new argument that the worker must see: registered in the entry file's `do_create_procedure`,
read here in `stylize_job` (a field of protocol.Options), and placed in the dialog by
dialog.py's `dialog_layout`.
"""

import os

from errors import PluginError
from protocol import Options, SequenceFrame, StyleFile, StylizeJob

# The preview: a small copy, fewer steps; a few CPU seconds, not the draft preset's ~100
# (measured in docs/decisions/gimp.md).
PREVIEW_SIZE = 160  # longest side, px
PREVIEW_STEPS = 15  # per scale


def file_path(config, name):
    """The local path of the file argument `name`; None when none is chosen."""
    gfile = config.get_property(name)
    if gfile is None:
        return None
    path = gfile.get_path()
    if not path:
        raise PluginError(f"The style image {gfile.get_uri()} is not a local file.")
    return path


def style_files(config):
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
    if not (second and blend > 0.0):
        return (StyleFile(style, 1.0),)
    styles = (StyleFile(style, 1.0 - blend), StyleFile(second, blend))
    return tuple(s for s in styles if s.weight > 0.0)


def stylize_job(config, job_id, content, width, height, fmt, preview=False, sequence=None):
    """A stylize job for the raw pixel file `content`; a preview gets the preview schedule;
    `sequence` (id, index): a frame of an animation, with the procedure's temporal weight."""
    max_size = int(config.get_property("max-size"))
    options = Options(
        preset=config.get_property("quality"),
        strength=float(config.get_property("strength")),
        max_size=PREVIEW_SIZE if preview else (max_size if max_size > 0 else None),
        preserve_colors=config.get_property("preserve-colors"),
        device=config.get_property("device"),
        seed=int(config.get_property("seed")),
        steps=PREVIEW_STEPS if preview else None,
    )
    return StylizeJob(
        id=job_id,
        content=content,
        width=width,
        height=height,
        format=fmt,
        output=content[: -len(".raw")] + "-result.raw",
        styles=style_files(config),
        options=options,
        sequence=None if sequence is None else SequenceFrame(*sequence, temporal_weight(config)),
    )


def temporal_weight(config):
    """How much each frame keeps of the previous one (0: frames styled on their own)."""
    return float(config.get_property("temporal-weight"))
