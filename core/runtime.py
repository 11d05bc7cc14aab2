"""ONNX Runtime: which package variant is installed, and sessions for a device.

Minimal first version (CPU sessions); the engine issue extends it with providers and IOBinding.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path
from types import ModuleType

from .errors import DeviceUnavailable, ModelError

# The three distributions all install the same `onnxruntime` module; two at once overwrite each other.
VARIANTS = {"onnxruntime": "cpu", "onnxruntime-gpu": "cuda", "onnxruntime-directml": "directml"}


def installed_variants() -> list[str]:
    """Distribution names of the ONNX Runtime variants that are installed."""
    found = []
    for dist in VARIANTS:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        found.append(dist)
    return found


def import_onnxruntime() -> ModuleType:
    """Import onnxruntime, or raise a one-line error naming the extra to install."""
    variants = installed_variants()
    if len(variants) > 1:
        raise DeviceUnavailable(
            f"several ONNX Runtime variants are installed ({', '.join(variants)}); "
            f"keep one: pip uninstall -y {' '.join(variants)} && pip install 'onnxstyle[cpu]' (or [cuda] / [directml])")
    try:
        import onnxruntime
    except ImportError:
        raise DeviceUnavailable(
            "ONNX Runtime is not installed: pip install 'onnxstyle[cpu]' (or [cuda] / [directml])") from None
    return onnxruntime


def make_session(path: Path | str, device: str = "cpu"):
    """An InferenceSession for one model file on the CPU provider."""
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types; the user needs the file and the reason
        raise ModelError(f"cannot load model {path}: {str(exc).splitlines()[0]}") from None
