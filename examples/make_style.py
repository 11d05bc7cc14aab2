"""Paint examples/swirls.jpg: brush strokes that follow a few vortices (numpy + Pillow, seeded).

The bundled style image is made by this script, so its licence is the project's own (see LICENSES.md).
Run: python examples/make_style.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 512
PALETTE = np.array(
    [  # night blues, teal, ochre and lamp yellow
        (18, 32, 78),
        (30, 60, 130),
        (52, 98, 170),
        (90, 140, 200),
        (40, 110, 120),
        (200, 170, 60),
        (240, 210, 90),
        (250, 240, 180),
        (20, 20, 40),
    ],
    dtype=np.float64,
)


def flow(x: np.ndarray, y: np.ndarray, vortices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit direction of a swirling field made of a few vortices and a gentle drift."""
    dx, dy = np.full_like(x, 0.35), np.full_like(y, 0.1)
    for vx, vy, strength in vortices:
        rx, ry = x - vx, y - vy
        r2 = rx * rx + ry * ry + 900.0
        dx += -strength * ry / r2 * 60.0
        dy += strength * rx / r2 * 60.0
    norm = np.hypot(dx, dy) + 1e-9
    return dx / norm, dy / norm


def paint(seed: int = 1889) -> Image.Image:
    rng = np.random.default_rng(seed)
    vortices = np.array(
        [(150, 170, 1.0), (360, 120, -0.8), (300, 330, 1.2), (90, 420, -0.6), (450, 440, 0.7)]
    )
    canvas = Image.new("RGB", (SIZE, SIZE), (25, 40, 90))
    draw = ImageDraw.Draw(canvas)
    for count, width, length in [(2200, 9, 26), (3500, 5, 18), (4000, 3, 12)]:
        xs, ys = rng.uniform(0, SIZE, count), rng.uniform(0, SIZE, count)
        for x, y in zip(xs, ys):
            # brighter colours near the vortex centres, dark blues elsewhere
            near = min(np.hypot(x - vx, y - vy) for vx, vy, _ in vortices)
            bright = np.exp(-near / 60.0)
            index = rng.choice(len(PALETTE), p=_weights(bright))
            colour = tuple(int(c) for c in np.clip(PALETTE[index] + rng.normal(0, 12, 3), 0, 255))
            points = [(x, y)]
            for _ in range(int(length / 3)):
                ux, uy = flow(np.array(x), np.array(y), vortices)
                x, y = x + 3 * float(ux), y + 3 * float(uy)
                points.append((x, y))
            draw.line(points, fill=colour, width=width, joint="curve")
    return canvas.filter(ImageFilter.SMOOTH)


def _weights(bright: float) -> np.ndarray:
    dark = np.array([3, 3, 2, 1, 1.2, 0.2, 0.2, 0.1, 1.0])
    light = np.array([0.2, 0.5, 0.8, 1.0, 0.3, 2.5, 3.0, 2.0, 0.0])
    weights = dark * (1 - bright) + light * bright
    return weights / weights.sum()


if __name__ == "__main__":
    out = Path(__file__).with_name("swirls.jpg")
    paint().save(out, quality=88)
    print(out, out.stat().st_size, "bytes")
