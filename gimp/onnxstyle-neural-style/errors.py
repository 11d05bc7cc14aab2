"""How the plug-in reports trouble: a PluginError is one line for the user (GIMP shows it and
the image is left unchanged); `log` writes a line to GIMP's terminal for whoever debugs.

A new kind of failure the user must read is a PluginError raised with its one line; an outcome
that is not a failure (like a cancel) gets its own subclass here, handled in the entry file's
`run`.
"""

import sys


class PluginError(Exception):
    """A one-line message for the user; the image is left unchanged."""


class JobCancelled(PluginError):
    """The worker honoured a cancel; the image is left unchanged."""


def log(message):
    sys.stderr.write(f"onnxstyle-neural-style: {message}\n")
    sys.stderr.flush()
