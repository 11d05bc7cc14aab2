"""Helpers the tests share (fixtures live in conftest.py)."""

import ast
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

from onnxstyle.core.images import fit_size, resize
from onnxstyle.core.loss import layer_grams, style_distance

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# The GIMP plug-in file: it imports GIMP's own modules, so tests read it with ast
PLUGIN = (
    Path(__file__).resolve().parent.parent / "gimp/onnxstyle-neural-style/onnxstyle-neural-style.py"
)


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """float32 [1,3,H,W] in [0,1] with some spatial structure (smoothed noise), like a photo."""
    x = rng.random((1, 3, height + 2, width + 2), dtype=np.float32)
    x = (x[:, :, :-2, :-2] + x[:, :, 1:-1, 1:-1] + x[:, :, 2:, 2:] + x[:, :, 1:-1, :-2]) / 4
    return np.ascontiguousarray(x, dtype=np.float32)


def read_messages(data: bytes) -> list[tuple[dict, bytes | None]]:
    """A worker's output split into messages and their frames (every byte accounted for)."""
    messages, at = [], 0
    while at < len(data):
        end = data.index(b"\n", at) + 1
        message = json.loads(data[at:end])
        size = message.get("frame", 0)
        assert len(data) >= end + size, "a frame cut short"
        messages.append((message, data[end : end + size] if size else None))
        at = end + size
    return messages


def example_image(name: str, longer: int) -> np.ndarray:
    """examples/<name> with its longer side at most `longer` px (Lanczos): float32 [H,W,3] in [0,1]."""
    im = Image.open(EXAMPLES / name).convert("RGB")
    im.thumbnail((longer, longer), Image.Resampling.LANCZOS)
    return np.asarray(im, np.float32) / 255


def relative_style_error(graph, image: np.ndarray, style: np.ndarray) -> float:
    """The judge's measure (core/loss.py style_distance) on `graph` (the engine's network), the style
    resized as the engine does: its longer side the image's."""
    h, w = image.shape[:2]
    target = resize(style, *fit_size(*style.shape[:2], max(h, w)))
    return style_distance(layer_grams(graph.features(target)), layer_grams(graph.features(image)))


def plugin_constants() -> dict:
    """The plug-in file's module-level constants, read with ast."""
    tree = ast.parse(PLUGIN.read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id.isupper():
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    pass  # not a literal (built from other names)
    return found


def plugin_function(name: str):
    """A function of the plug-in file, compiled on its own."""
    tree = ast.parse(PLUGIN.read_text(encoding="utf-8"))
    (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace: dict = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(PLUGIN), "exec"), namespace)
    return namespace[name]


def run_until_progress(
    argv: list, seen_file: Path | None = None, timeout: float = 90
) -> tuple[subprocess.Popen, bytes]:
    """Start a CLI run and return once it is under way: its bar shows a loss (or `seen_file`
    exists), asserted, so a signal sent next lands mid-run. Returns the process and its stderr
    read so far."""
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    seen, deadline = b"", time.monotonic() + timeout

    def started() -> bool:
        return seen_file.exists() if seen_file is not None else b"loss" in seen

    while not started() and time.monotonic() < deadline:
        chunk = os.read(process.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    assert started(), seen
    return process, seen
