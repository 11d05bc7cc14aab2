"""Tiles: grid, feathering, and tiled vs untiled runs (real ONNX Runtime, the shipped graphs)."""

import numpy as np
import pytest
from helpers import example_image

from onnxstyle.core import engine
from onnxstyle.core.engine import StyleOptions, stylize
from onnxstyle.core.graph import StyleGraph
from onnxstyle.core.tiling import Blender, tile_grid, tile_weights


def test_grid_covers_the_image_with_the_overlap():
    tiles = tile_grid(300, 500, 128, 32)
    covered = np.zeros((300, 500), int)
    for t in tiles:
        covered[t.slices] += 1
        assert t.y1 - t.y0 <= 128 and t.x1 - t.x0 <= 128
    assert covered.min() >= 1
    xs = sorted({t.x0 for t in tiles})
    ends = sorted({t.x1 for t in tiles})
    assert all(end - start >= 32 for start, end in zip(xs[1:], ends[:-1]))


def test_feathering_weights_are_a_partition_of_unity():
    tiles = tile_grid(200, 260, 96, 40)
    total = np.zeros((200, 260))
    for t in tiles:
        w = tile_weights(t, tiles)
        assert w.min() > 0 and w.max() <= 1
        total[t.slices] += w
    assert np.allclose(total, 1, atol=1e-5)


def test_blending_a_constant_gives_the_constant():
    tiles = tile_grid(70, 90, 48, 16)
    blender = Blender(70, 90)
    for t in tiles:
        blender.add(
            t, np.full((t.y1 - t.y0, t.x1 - t.x0, 3), 0.25, np.float32), tile_weights(t, tiles)
        )
    assert np.allclose(blender.result(), 0.25)


@pytest.fixture(scope="module")
def images():
    return example_image("chelsea.jpg", 144), example_image("swirls.jpg", 96)  # content 144x96


def test_tiled_and_untiled_runs_agree_away_from_seams(images):
    content, style = images
    opts = dict(steps=12, scales=1, device="cpu", max_size=None, min_size=32)
    untiled = stylize(content, [style], StyleOptions(**opts))
    # 144x96 with 96 px tiles and 48 px overlap: two tiles side by side, seam zone x in [48, 96)
    tiled = stylize(
        content, [style], StyleOptions(**opts, tile_budget_mpx=96 * 96 / 1e6, tile_overlap=48)
    )
    assert (
        len(
            engine._tiles_for(96, 144, StyleOptions(tile_budget_mpx=96 * 96 / 1e6, tile_overlap=48))
        )
        == 2
    )
    interior = np.r_[
        16:48, 96:128
    ]  # columns inside the tiles, away from the image border and the seam zone
    change = np.abs(untiled - content)[16:-16, interior].mean()
    away = np.abs(tiled - untiled)[16:-16, interior].mean()
    seam = np.abs(tiled - untiled)[16:-16, 48:96].mean()
    assert away < 0.35 * change, (away, change)
    assert seam < 0.5 * change, (seam, change)  # and no ghosting where the tiles are blended


def test_style_grams_from_pieces_match_the_whole_image(images):
    _, style = images
    graph = StyleGraph.load("avg", "cpu")
    whole = engine._style_grams(graph, style, budget_px=10**7)
    pieces = engine._style_grams(graph, style, budget_px=48 * 48)  # forces the piecewise path
    for layer in ("relu1_1", "relu2_1", "relu3_1"):
        rel = np.abs(pieces[layer] - whole[layer]).sum() / np.abs(whole[layer]).sum()
        assert rel < 0.15, (layer, rel)
