"""`onnxstyle export`: write the VGG19 ONNX graphs. The exporter (onnxstyle.exporter.export, which
needs the [export] extra: torch) parses its own arguments; it is imported only when used."""

from __future__ import annotations

from .delegate import delegate

NAME = "export"
HELP = "write the VGG19 ONNX graphs (needs the [export] extra: torch)"


def main(argv: list[str]) -> int:
    return delegate(NAME, "onnxstyle.exporter.export", argv)
