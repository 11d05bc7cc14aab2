"""Make a short test clip: a striped disc and a checkered square moving across a textured
background that pans slowly (numpy, seeded; the same arguments give the same frames).

The clip is made by this script, so its licence is the project's own (see LICENSES.md). The
moving shapes hide and show the background, which is what the optical flow's occlusion mask and
the temporal loss of `onnxstyle frames` are about; the textures give the flow something to track.

Run: python examples/make_clip.py OUT [--size 96 | --size 128x72] [--frames 12] [--fps 10]
OUT: .mp4 .mov .mkv .webm (video), .gif .webp (animation), or a folder of numbered PNGs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from onnxstyle.core.clips import ClipInfo, FrameFolder, output_kind, write_clip
from onnxstyle.core.errors import StyleError

SPEED = 0.06  # of the shapes' path per frame: the disc moves 3.6% of the width a frame


def make_clip(width: int, height: int, frames: int, seed: int = 0) -> Iterator[np.ndarray]:
    """`frames` frames, float32 [height, width, 3] RGB in [0,1], made one at a time."""
    rng = np.random.default_rng(seed)
    scale = min(width, height)
    # background: a few coloured gratings of random direction and wavelength
    angles = rng.uniform(0, np.pi, 4)
    wavelengths = scale * rng.uniform(0.08, 0.3, 4)
    phases = rng.uniform(0, 2 * np.pi, 4)
    colours = rng.uniform(0.15, 0.85, (4, 3))
    disc_colours, square_colours = rng.uniform(0, 1, (2, 3)), rng.uniform(0, 1, (2, 3))
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    for t in range(frames):
        # the shapes cross the frame and come back (a triangle wave): each frame moves them by
        # SPEED of their path, as in filmed motion, however many frames the clip has
        progress = (t * SPEED) % 2
        progress = progress if progress <= 1 else 2 - progress
        yield _frame(
            x,
            y,
            scale,
            progress,
            t,
            angles,
            wavelengths,
            phases,
            colours,
            disc_colours,
            square_colours,
        )


def _frame(x, y, scale, progress, t, angles, wavelengths, phases, colours, disc_c, square_c):
    pan = 0.3 * t  # pixels per frame: slow, so the background moves less than the shapes
    image = np.zeros(x.shape + (3,))
    for angle, wavelength, phase, colour in zip(angles, wavelengths, phases, colours):
        along = (x + pan) * np.cos(angle) + y * np.sin(angle)
        image += (
            0.25
            * (0.5 + 0.5 * np.sin(2 * np.pi * along / wavelength + phase))[..., None]
            * (2 * colour)
        )
    # a striped disc crossing left to right, its stripes turning
    cx, cy, radius = (0.2 + 0.6 * progress) * x.shape[1], 0.35 * x.shape[0], 0.22 * scale
    inside = (x - cx) ** 2 + (y - cy) ** 2 < radius**2
    turn = 0.15 * t
    stripes = np.sin(
        ((x - cx) * np.cos(turn) + (y - cy) * np.sin(turn)) * 2 * np.pi / (0.12 * scale)
    )
    image[inside] = np.where(stripes[inside, None] > 0, disc_c[0], disc_c[1])
    # a checkered square moving down and to the left
    side = 0.3 * scale
    sx, sy = (0.75 - 0.5 * progress) * x.shape[1], (0.45 + 0.3 * progress) * x.shape[0]
    inside = (abs(x - sx) < side / 2) & (abs(y - sy) < side / 2)
    cell = side / 4
    checks = (np.floor((x - sx) / cell) + np.floor((y - sy) / cell)) % 2 == 0
    image[inside] = np.where(checks[inside, None], square_c[0], square_c[1])
    return np.clip(image, 0, 1).astype(np.float32)


def save_clip(
    out: Path, width: int, height: int, frames: int, fps: int = 10, seed: int = 0
) -> None:
    """Write the clip to `out` (any kind `onnxstyle frames` reads) through core/clips' writer."""
    source = ClipInfo(out, "video", width, height, frames, Fraction(fps), None, None, False)
    if output_kind(out) == "folder":
        folder = FrameFolder(out)
        for index, image in enumerate(make_clip(width, height, frames, seed)):
            folder.write(index, image)
        return
    with tempfile.TemporaryDirectory() as work:
        folder = FrameFolder(Path(work))
        for index, image in enumerate(make_clip(width, height, frames, seed)):
            folder.write(index, image)
        write_clip(folder, frames, out, source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="96", help="N (square) or WxH, in pixels")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    width, _, height = args.size.partition("x")
    try:
        save_clip(args.out, int(width), int(height or width), args.frames, args.fps, args.seed)
    except StyleError as exc:
        print(f"make_clip: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
