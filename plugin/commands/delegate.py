"""A command whose module parses its own arguments (`onnxstyle export --help` is the exporter's),
imported only when used."""

from __future__ import annotations

import importlib

from onnxstyle.core.errors import StyleError

from .terminal import PROG


def delegate(command: str, module_name: str, argv: list[str]) -> int:
    """Run `module_name`.main(argv); a module this installation lacks is one line."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # the export extra is checked by the export command itself
        if exc.name and module_name.startswith(exc.name):
            raise StyleError(
                f"'{PROG} {command}' is not available in this installation ({module_name} missing)"
            ) from None
        raise
    return int(module.main(argv) or 0)
