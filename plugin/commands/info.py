"""`onnxstyle info`: what a bug report needs — versions, ONNX Runtime's variant and devices, the
model files found."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

from onnxstyle.core import runtime
from onnxstyle.core.errors import ModelError
from onnxstyle.core.graph import PACKAGE_MODELS, Manifest, user_model_dir

NAME = "info"
HELP = "ONNX Runtime, devices, model files and versions"


def add_parser(commands) -> None:
    parser = commands.add_parser(
        NAME,
        help=HELP,
        description="Show ONNX Runtime's variant and devices, the model files found and versions.",
    )
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(f"onnxstyle {version('onnxstyle')} (Python {sys.version.split()[0]}, {sys.platform})")
    variants = runtime.installed_variants()
    found = runtime.onnxruntime_version()
    print(
        f"onnxruntime {found or 'not importable'} (package: {', '.join(variants) or 'none installed'})"
    )
    print("devices:")
    print("\n".join(f"  {line}" for line in runtime.device_lines()))
    print("models:")
    for line in _model_lines():
        print(f"  {line}")
    print(
        "libraries: "
        + ", ".join(
            f"{name} {version(name) or 'not installed'}"
            for name in ("numpy", "pillow", "tqdm", "onnx", "torch")
        )
    )
    return 0


def _model_lines() -> list[str]:
    lines = []
    for label, folder in (("user", user_model_dir()), ("shipped", PACKAGE_MODELS)):
        manifests = sorted(folder.glob("vgg19-*.json")) if folder.is_dir() else []
        if not manifests:
            lines.append(f"{label}: none in {folder}")
        for path in manifests:
            try:
                manifest = Manifest.read(path)
            except ModelError as exc:
                lines.append(f"{label}: {exc}")
                continue
            lines.append(
                f"{label}: {manifest.pooling} pooling, opset {manifest.opset}, {manifest.weights}"
            )
            for file in (manifest.features_path, manifest.grad_path):
                size = f"{file.stat().st_size / 1e6:.1f} MB" if file.is_file() else "MISSING"
                lines.append(f"    {file} ({size})")
    return lines


def version(distribution: str) -> str:
    """An installed distribution's version; "" when it isn't installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""
