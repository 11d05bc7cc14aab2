"""The worker record: which command starts the onnxstyle worker, as `onnxstyle gimp install`
wrote it into onnxstyle-worker.json beside these files, and the commands our advice quotes.

A new field of the record is read in `read_record` (plugin/gimp_install.py writes it).
"""

import json
import os

from errors import PluginError

CONFIG_NAME = "onnxstyle-worker.json"
WORKER_ARGS = ["-m", "onnxstyle.plugin.worker"]
FIX_INSTALL = '"{python}" -m pip install "onnxstyle[cpu]"'
FIX_REGISTER = '"{python}" -m onnxstyle.plugin.gimp_install install'


def read_record():
    """(python, command): the recorded worker command, with its Python when it is a local one
    (None for a command of the user's, e.g. ssh to a GPU box); else a PluginError that says how
    to record it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        python = record.get("python")  # None: the record holds only a command (a remote worker)
        args = record.get("args") or WORKER_ARGS
        command = record.get("command") or ([python] + list(args) if python else None)
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
