"""Tiles: grid, feathering, and tiled vs untiled runs (real ONNX Runtime, the shipped graphs)."""

import pickle

import numpy as np
import pytest
from helpers import example_image

from onnxstyle.core import scale
from onnxstyle.core.engine import StyleOptions, optimise_tile, stylize
from onnxstyle.core.errors import Cancelled
from onnxstyle.core.graph import StyleGraph
from onnxstyle.core.tiled import tiles_for
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
        len(tiles_for(96, 144, StyleOptions(tile_budget_mpx=96 * 96 / 1e6, tile_overlap=48))) == 2
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
    whole = scale.style_grams(graph, style, budget_px=10**7)
    pieces = scale.style_grams(graph, style, budget_px=48 * 48)  # forces the piecewise path
    for layer in ("relu1_1", "relu2_1", "relu3_1"):
        rel = np.abs(pieces[layer] - whole[layer]).sum() / np.abs(whole[layer]).sum()
        assert rel < 0.15, (layer, rel)


def test_a_tile_map_running_the_tasks_elsewhere_gives_the_same_picture(style_graph_avg):
    """The tile seam (core/tiled.py): the tasks pickle, run in any order on another graph, and the
    engine blends their results as it blends its own."""
    content, style = example_image("chelsea.jpg", 96), example_image("swirls.jpg", 64)  # 96x64
    options = StyleOptions(
        steps=8, scales=1, device="cpu", max_size=None, tile_budget_mpx=64 * 64 / 1e6
    )
    assert len(tiles_for(*content.shape[:2], options)) == 2
    here = stylize(content, [style], options, graph=style_graph_avg)
    elsewhere = StyleGraph.load("avg", "cpu")  # another machine's graph
    seen = []

    def reversed_map(tasks):
        seen.append(len(tasks))
        shipped = [pickle.loads(pickle.dumps(task)) for task in tasks]
        results = [optimise_tile(elsewhere, task) for task in reversed(shipped)]
        return results[::-1]

    mapped = stylize(content, [style], options, graph=style_graph_avg, tile_map=reversed_map)
    assert seen == [2]
    assert np.abs(mapped - here).max() < 1e-5
    assert np.abs(here - content).mean() > 0.01  # the tiles did change the picture


def test_a_tile_task_reports_its_evaluations_and_honours_a_cancel(style_graph_avg):
    content, style = example_image("chelsea.jpg", 96), example_image("swirls.jpg", 64)
    options = StyleOptions(
        steps=3, scales=1, device="cpu", max_size=None, tile_budget_mpx=64 * 64 / 1e6
    )
    tasks = []

    def keep(given):
        tasks.extend(given)
        return [task.start for task in given]

    stylize(content, [style], options, graph=style_graph_avg, tile_map=keep)
    reports = []
    optimise_tile(style_graph_avg, tasks[0], progress=lambda k, loss: reports.append((k, loss)))
    assert [k for k, _ in reports] == [1, 2, 3] and all(loss > 0 for _, loss in reports)
    with pytest.raises(Cancelled):
        optimise_tile(style_graph_avg, tasks[1], cancel=lambda: True)
