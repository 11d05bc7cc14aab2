"""Neural Style (ONNX) on all layers, in a real headless GIMP 3: a 4-layer animation (48 px,
shapes moving across a textured background) styled as frames; a cancel; layers that can't be frames.

Runs tests/gimp/e2e_layers.py the way test_gimp_e2e.py runs its batch (gimp_setup.py: the host's
GIMP 3 or the cached Debian 13 root; skipped without one, a failure under CI=true). The one undo
step that gives every layer back is checked in the window (test_gimp_ui.py): GIMP's procedure
database has no Undo for a batch script to call.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from gimp_setup import batch_folder, gimp_root, run_batch
from helpers import gimp_case
from PIL import Image

SIZE = 48
FRAMES = 4


def make_frames(folder: Path) -> list[Path]:
    """A disc and a square moving over diagonal stripes: texture that flickers if styled alone."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    paths = []
    for t in range(FRAMES):
        rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
        rgb[...] = np.where(((xx + yy) // 6) % 2 == 0, 70, 150)[..., None]
        disc = (xx - 12 - 4 * t) ** 2 + (yy - 16) ** 2 < 64
        square = (abs(xx - 34 + 3 * t) < 6) & (abs(yy - 32) < 6)
        rgb[disc] = (220, 60, 40)
        rgb[square] = (40, 200, 90)
        path = folder / f"frame{t + 1}.png"
        Image.fromarray(rgb).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def gimp_layers(tmp_path_factory):
    root = gimp_root()
    folder = batch_folder(tmp_path_factory, "gimp-layers")
    frames = make_frames(folder)
    style = folder / "style.png"
    stripes = np.sin(np.mgrid[0:48, 0:48][1][..., None] / 2.5 + np.array([0.0, 2.0, 4.0])) + 1
    Image.fromarray((stripes * 120).astype(np.uint8)).save(style)
    params = {
        "ONNXSTYLE_E2E_FRAMES": ":".join(map(str, frames)),
        "ONNXSTYLE_E2E_STYLE": str(style),
        "ONNXSTYLE_E2E_RUN": f"{os.getpid()}-{time.time_ns()}",
    }
    report, log = run_batch(root, "e2e_layers.py", folder, params, timeout=900)
    originals = [np.asarray(Image.open(p).convert("RGBA")) for p in frames]
    return report, originals[::-1], log  # top layer first, as GIMP lists them


def pixels(layer: dict) -> np.ndarray:
    w, h = layer["size"]
    return np.fromfile(layer["raw"], np.uint8).reshape(h, w, 4)


def test_every_layer_is_styled_in_place_and_nothing_is_left(gimp_layers):
    _, originals, log = gimp_layers
    case = gimp_case(gimp_layers, "layers")
    assert case["status"] == "success", case["error"]
    names = [layer["name"] for layer in case["layers"]]
    assert names == [f"frame {n}" for n in range(FRAMES, 0, -1)], "layers added or reordered"
    for layer, original in zip(case["layers"], originals):
        styled = pixels(layer)
        change = np.abs(styled[..., :3].astype(int) - original[..., :3]).mean()
        assert change > 5.0, f"{layer['name']} was not styled (mean change {change:.1f})"
        assert np.array_equal(styled[..., 3], original[..., 3])
    assert case["workers_left"] == [] and case["temp_dirs"] == [], case
    # GIMP's animation order: frame 1 is the bottom layer (the "layers" case runs first)
    order = re.findall(r"frame (\d) of 4: layer 'frame (\d)'", log)[:FRAMES]
    assert order == [(str(n), str(n)) for n in range(1, FRAMES + 1)], order


def test_a_cancel_midway_leaves_every_layer_as_it_was(gimp_layers):
    _, originals, _ = gimp_layers
    case = gimp_case(gimp_layers, "cancel")
    assert case.get("killed"), "the plug-in was not cancelled midway (frame 2's result never came)"
    assert case["status"] != "success", case
    for layer, original in zip(case["layers"], originals, strict=True):
        assert np.array_equal(pixels(layer), original), f"{layer['name']} changed"
    assert case["workers_left"] == [], "the worker outlived the cancelled plug-in"


def test_layers_of_other_sizes_or_places_are_one_line_and_nothing_runs(gimp_layers):
    _, originals, _ = gimp_layers
    case = gimp_case(gimp_layers, "moved-layer")
    assert case["status"] == "execution-error", case
    error = case["error"].strip()
    assert "one size and position" in error and "frame 3" in error and "\n" not in error, error
    for layer, original in zip(case["layers"], originals, strict=True):
        assert np.array_equal(pixels(layer), original)
