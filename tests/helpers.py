"""Helpers the tests share (fixtures live in conftest.py)."""

import ast
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from onnxstyle.core.images import fit_size, resize
from onnxstyle.core.loss import layer_grams, style_distance

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# The GIMP plug-in: a folder of modules GIMP's Python runs (the entry file, named as the folder,
# and its siblings). Most import GIMP's own modules, so tests read them with ast.
PLUGIN_DIR = Path(__file__).resolve().parent.parent / "gimp/onnxstyle-neural-style"
PLUGIN = PLUGIN_DIR / "onnxstyle-neural-style.py"
PLUGIN_MODULES = sorted(PLUGIN_DIR.glob("*.py"))


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


def _plugin_trees() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in PLUGIN_MODULES]


def plugin_constants() -> dict:
    """The module-level constants of every module of the plug-in, read with ast (a name defined
    in two modules must have one value)."""
    found: dict = {}
    for path, tree in _plugin_trees():
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id.isupper():
                    try:
                        value = ast.literal_eval(node.value)
                    except ValueError:
                        continue  # not a literal (built from other names)
                    assert found.get(target.id, value) == value, (
                        f"{target.id} differs in {path.name}"
                    )
                    found[target.id] = value
    return found


def plugin_definition(name: str, kind: type = ast.FunctionDef) -> tuple[Path, ast.AST]:
    """The one module-level function (or class) of that name in the plug-in, and its file."""
    found = [
        (path, node)
        for path, tree in _plugin_trees()
        for node in tree.body
        if isinstance(node, kind) and node.name == name
    ]
    assert len(found) == 1, f"{name}: {len(found)} definitions in the plug-in"
    return found[0]


def plugin_function(name: str):
    """A function of the plug-in, compiled on its own."""
    path, node = plugin_definition(name)
    namespace: dict = {}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


def plugin_module(name: str):
    """One of the plug-in's modules that need nothing of GIMP (protocol, errors), imported as GIMP
    imports it: its folder first on sys.path. sys.path and sys.modules are left as they were."""
    names = {path.stem for path in PLUGIN_MODULES}
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    saved = {key: sys.modules.pop(key) for key in names & set(sys.modules)}
    sys.path.insert(0, str(PLUGIN_DIR))
    sys.dont_write_bytecode = True  # no __pycache__ in the folder that ships
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:], sys.dont_write_bytecode = saved_path, saved_bytecode
        for key in names:
            sys.modules.pop(key, None)
        sys.modules.update(saved)


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


def example_clip(width: int, height: int, frames: int, seed: int = 0) -> Iterator[np.ndarray]:
    """The shipped procedural clip (examples/make_clip.py): moving textured shapes, float32 frames."""
    spec = importlib.util.spec_from_file_location("make_clip", EXAMPLES / "make_clip.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_clip(width, height, frames, seed=seed)


def gimp_case(gimp_run: tuple, name: str) -> dict:
    """One case of a GIMP batch run's report (the e2e and the layers tests): it ran, and raised no
    Python exception in GIMP."""
    report, _, log = gimp_run
    assert name in report, f"case {name} did not run:\n{log[-3000:]}"
    case = report[name]
    assert case["status"] != "exception", case["error"]
    return case
