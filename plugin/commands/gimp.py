"""`onnxstyle gimp install|uninstall|doctor`: the GIMP 3 plug-in's installer and its check of the
worker and the link (onnxstyle.plugin.gimp_install parses its own arguments)."""

from __future__ import annotations

from .delegate import delegate

NAME = "gimp"
HELP = "install, uninstall or check the GIMP 3 plug-in"


def main(argv: list[str]) -> int:
    return delegate(NAME, "onnxstyle.plugin.gimp_install", argv)
