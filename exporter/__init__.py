"""onnxstyle.exporter — installed from the repository's top-level `exporter/` folder (pyproject.toml
maps `onnxstyle.exporter` to `exporter/`).

VGG19 as ONNX feature and feature-and-gradient graphs; the only part that imports torch, which comes
with the optional 'export' extra. See DEVELOPERS.md.
"""

import importlib

from onnxstyle.core.errors import StyleError

EXTRA_HINT = "onnxstyle export needs the 'export' extra: pip install 'onnxstyle[export]'"


def require_export_extra(*modules: str) -> None:
    """The one check that the 'export' extra is installed: StyleError(EXTRA_HINT) if not."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise StyleError(EXTRA_HINT) from None
