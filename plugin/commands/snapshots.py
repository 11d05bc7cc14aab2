"""`stylize --save-every N`: the image every N steps of each scale, written beside the output
(e.g. result-scale2-step0050.png); snapshots already written are kept when a run is cancelled."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from onnxstyle.core import imageio
from onnxstyle.core.errors import StyleError
from onnxstyle.core.files import same_file
from onnxstyle.core.graph import StyleGraph


class RecordingGraph:
    """The StyleGraph, remembering the image of its latest loss evaluation.

    The engine takes any object with the graph's features/loss_and_grad; this one passes every call
    through, so a snapshot is exactly the image whose loss the progress report shows.
    """

    def __init__(self, graph) -> None:
        self._graph = graph
        self.image = None

    @classmethod
    def load(cls, options) -> RecordingGraph:
        return cls(StyleGraph.load(options.pooling, options.device, options.model_dir))

    def features(self, image):
        return self._graph.features(image)

    def loss_and_grad(self, image, targets, weights):
        self.image = image
        return self._graph.loss_and_grad(image, targets, weights)


def snapshot_path(output: Path, scale: int, step: int) -> Path:
    """Where --save-every writes: beside OUT, e.g. result-scale2-step0050.png."""
    return output.with_name(f"{output.stem}-scale{scale}-step{step:04d}{output.suffix}")


def saving_snapshots(
    show: Callable,
    graph: RecordingGraph,
    output: Path,
    content,
    every: int,
    written: list[Path],
) -> Callable:
    """Progress callback that also writes the current image every `every` steps of each scale
    (appending each path to `written`). Tiled scales are skipped: their current image is one tile,
    not the picture."""

    def on_progress(progress) -> None:
        show(progress)
        if graph.image is None or progress.tiles > 1 or progress.step % every:
            return
        image = np.asarray(graph.image)
        if image.ndim == 4:  # the graphs' [1,3,H,W] layout
            image = image[0].transpose(1, 2, 0)
        path = snapshot_path(output, progress.scale, progress.step)
        imageio.save_image(path, image, like=content)
        written.append(path)

    return on_progress


def check_not_an_input(output: Path, inputs: list[str | None], save_every: int | None) -> None:
    """The output, and every --save-every snapshot name, must be none of the inputs (links and
    hard links resolved): writing it would destroy that input."""
    pattern = re.compile(
        rf"{re.escape(output.stem)}-scale\d+-step\d{{4,}}{re.escape(output.suffix)}", re.IGNORECASE
    )
    for name in filter(None, inputs):
        if same_file(output, name):
            raise StyleError(f"the output {output} is the input {name}; choose another -o")
        real = Path(os.path.realpath(name))
        if (
            save_every
            and real.parent == Path(os.path.realpath(output)).parent
            and pattern.fullmatch(real.name)
        ):
            raise StyleError(
                f"--save-every would overwrite the input {name} (its snapshot names are "
                f"{snapshot_path(output, 1, save_every).name} and the like); choose another -o"
            )
