"""Make the evaluation set's procedural pictures (numpy + Pillow, fixed seeds; rerun to regenerate).

    python benchmarks/eval/make_eval.py            # writes styles/*.jpg and content/*.jpg here

The pictures cut from public-domain files (content/hopper.jpg, styles/city-lights.jpg,
styles/satellite.jpg) are made with --from DIR, DIR holding those files as LICENSES.md names them;
without it they are left as they are. Sizes: 320 px on the longer side (the judge works at ≤ 256).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
SIZE = 320


def fbm(shape: tuple[int, int], rng: np.random.Generator, beta: float = 2.0) -> np.ndarray:
    """Fractal noise in [0,1]: white noise with a 1/f^beta power spectrum."""
    h, w = shape
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    spectrum[0, 0] = 0
    n = np.fft.irfft2(spectrum, s=(h, w))
    return (n - n.min()) / (n.max() - n.min())


def to_image(a: np.ndarray) -> Image.Image:
    a = np.clip(a, 0, 1)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return Image.fromarray((a * 255 + 0.5).astype(np.uint8))


def voronoi(shape: tuple[int, int], points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest point, distance to the cell's border ≈ (d2 − d1)/2) per pixel."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    d = np.stack([np.hypot(yy - py, xx - px) for py, px in points])
    order = np.argsort(d, axis=0)
    d1 = np.take_along_axis(d, order[:1], 0)[0]
    d2 = np.take_along_axis(d, order[1:2], 0)[0]
    return order[0], (d2 - d1) / 2


# ------------------------------------------------------------------------------------------- styles


def bricks(rng: np.random.Generator) -> Image.Image:
    """Grey texture: a brick wall in running bond, each brick its own tone, mortar lighter."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    bh, bw, m = 22, 50, 4
    row = yy // bh
    x = xx + (row % 2) * (bw // 2)
    col = x // bw
    tone = rng.uniform(0.3, 0.55, (SIZE // bh + 2, SIZE // bw + 3))[row, col]
    mortar = ((yy % bh) < m) | ((x % bw) < m)
    grain = fbm((SIZE, SIZE), rng, 1.0) - 0.5
    wall = np.where(mortar, 0.72, tone) + 0.12 * grain
    return to_image(wall)


def pebbles(rng: np.random.Generator) -> Image.Image:
    """Grey texture: rounded stones (Voronoi cells shaded by the distance to their border)."""
    points = rng.uniform(0, SIZE, (140, 2))
    index, edge = voronoi((SIZE, SIZE), points)
    tone = rng.uniform(0.35, 0.8, len(points))[index]
    dome = np.sqrt(np.clip(edge / 9.0, 0, 1))
    return to_image(tone * dome * (0.9 + 0.2 * fbm((SIZE, SIZE), rng, 1.0)))


def hatching(rng: np.random.Generator) -> Image.Image:
    """High-contrast line art: ink cross-hatching, denser where a smooth tone field is darker."""
    tone = fbm((SIZE, SIZE), rng, 3.5)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    ink = np.zeros((SIZE, SIZE), bool)
    for level, (dx, dy), period in [(0.75, (1, 1), 7), (0.5, (1, -1), 7), (0.3, (1, 0), 5)]:
        lines = ((dx * xx + dy * yy) % period) < 1.6
        ink |= lines & (tone < level)
    return to_image(np.where(ink, 0.05, 0.97))


def contours(rng: np.random.Generator) -> Image.Image:
    """High-contrast line art: thick black contour lines of a fractal height field on white."""
    height = fbm((SIZE, SIZE), rng, 4.0) * 9
    frac = height - np.floor(height)
    slope = np.hypot(*np.gradient(height)) + 1e-6
    line = np.minimum(frac, 1 - frac) / slope < 1.5  # ~3 px wide whatever the slope
    return to_image(np.where(line, 0.0, 1.0))


def stars(rng: np.random.Generator) -> Image.Image:
    """Dark and sparse: a star field, a few hundred points, the bright ones with a glow."""
    sky = np.zeros((SIZE, SIZE, 3))
    n = 400
    ys, xs = rng.integers(0, SIZE, n), rng.integers(0, SIZE, n)
    bright = rng.pareto(2.5, n) * 0.25 + 0.15
    tint = np.array([(1.0, 0.85, 0.7), (0.8, 0.9, 1.0), (1.0, 1.0, 1.0)])[rng.integers(0, 3, n)]
    sky[ys, xs] = np.clip(bright[:, None] * tint, 0, 1)
    glow = np.asarray(to_image(sky).filter(ImageFilter.GaussianBlur(2.0)), np.float32).astype(
        np.float64
    )
    return to_image(np.clip(sky + 3 * glow / 255, 0, 1))


def impasto(rng: np.random.Generator) -> Image.Image:
    """Colourful painting: thousands of thick, saturated strokes following a smooth flow field."""
    canvas = Image.new("RGB", (SIZE, SIZE), (120, 60, 40))
    draw = ImageDraw.Draw(canvas)
    angle = fbm((SIZE, SIZE), rng, 3.0) * 2 * np.pi * 2
    palette = np.array(
        [
            (220, 40, 40),
            (240, 180, 30),
            (30, 90, 200),
            (40, 160, 80),
            (250, 120, 20),
            (140, 40, 160),
        ]
    )
    for count, width, length in [(1500, 10, 24), (2500, 6, 14)]:
        for _ in range(count):
            x, y = rng.uniform(0, SIZE, 2)
            a = angle[int(y) % SIZE, int(x) % SIZE]
            colour = np.clip(palette[rng.integers(len(palette))] + rng.normal(0, 25, 3), 0, 255)
            dx, dy = np.cos(a) * length / 2, np.sin(a) * length / 2
            draw.line(
                [(x - dx, y - dy), (x + dx, y + dy)],
                fill=tuple(int(c) for c in colour),
                width=width,
            )
    return canvas.filter(ImageFilter.SMOOTH)


def stained_glass(rng: np.random.Generator) -> Image.Image:
    """Colourful: saturated Voronoi panes with black leading."""
    points = rng.uniform(0, SIZE, (90, 2))
    index, edge = voronoi((SIZE, SIZE), points)
    hues = rng.uniform(0, 1, len(points))
    rgb = np.stack([np.clip(np.abs((hues * 6 + k) % 6 - 3) - 1, 0, 1) for k in (0, 4, 2)], 1)
    panes = rgb[index] * (0.75 + 0.25 * fbm((SIZE, SIZE), rng, 1.5))[..., None]
    return to_image(np.where((edge < 2.2)[..., None], 0.03, panes))


def watercolour(rng: np.random.Generator) -> Image.Image:
    """Pastel: soft, overlapping translucent blobs in pale colours on textured paper."""
    paper = 0.93 + 0.05 * fbm((SIZE, SIZE), rng, 1.2)
    image = np.repeat(paper[..., None], 3, axis=2)
    pastels = np.array(
        [
            (0.96, 0.76, 0.80),
            (0.72, 0.86, 0.95),
            (0.80, 0.93, 0.78),
            (0.98, 0.90, 0.70),
            (0.85, 0.78, 0.95),
        ]
    )
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for _ in range(28):
        cy, cx = rng.uniform(0, SIZE, 2)
        r = rng.uniform(25, 70)
        wobble = fbm((SIZE, SIZE), rng, 2.5) * 0.6
        mask = np.clip((1 - np.hypot(yy - cy, xx - cx) / r) * 3 + wobble - 0.3, 0, 1)
        image = image * (1 - 0.55 * mask[..., None]) + 0.55 * mask[..., None] * (
            pastels[rng.integers(len(pastels))] * paper[..., None]
        )
    return to_image(image)


# ----------------------------------------------------------------------------------------- contents


def still_life(rng: np.random.Generator, width: int = SIZE, height: int = 240) -> Image.Image:
    """Objects: three shaded spheres and a box on a checked table, ray-traced with shadows."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    d = np.stack([(xx - width / 2) / width, -(yy - height * 0.42) / width, np.ones_like(xx)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    eye = np.array([0.0, 0.9, -3.0])
    light = np.array([-3.0, 5.0, -2.0])
    spheres = [
        (np.array([-0.9, 0.5, 1.2]), 0.5, np.array([0.85, 0.2, 0.15])),
        (np.array([0.35, 0.35, 0.8]), 0.35, np.array([0.2, 0.45, 0.85])),
        (np.array([1.15, 0.7, 2.0]), 0.7, np.array([0.9, 0.8, 0.3])),
    ]
    box_lo, box_hi, box_rgb = (
        np.array([-0.3, 0.0, 1.9]),
        np.array([0.5, 0.8, 2.7]),
        np.array([0.3, 0.7, 0.4]),
    )

    def hit(origin, dirs):
        t = np.full(dirs.shape[:-1], np.inf)
        normal = np.zeros_like(dirs)
        colour = np.zeros_like(dirs)
        for centre, r, rgb in spheres:
            oc = origin - centre
            b = np.sum(dirs * oc, -1)
            disc = b * b - (np.sum(oc * oc, -1) - r * r)
            ts = -b - np.sqrt(np.maximum(disc, 0))
            ok = (disc > 0) & (ts > 1e-4) & (ts < t)
            t = np.where(ok, ts, t)
            p = origin + ts[..., None] * dirs
            normal = np.where(ok[..., None], (p - centre) / r, normal)
            colour = np.where(ok[..., None], rgb, colour)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (box_lo - origin) / dirs, (box_hi - origin) / dirs
        tn, tf = np.nanmax(np.minimum(t1, t2), -1), np.nanmin(np.maximum(t1, t2), -1)
        ok = (tn < tf) & (tn > 1e-4) & (tn < t)
        t = np.where(ok, tn, t)
        face = np.argmax(np.minimum(t1, t2), -1)
        n_box = -np.sign(dirs) * np.eye(3)[face]
        normal = np.where(ok[..., None], n_box, normal)
        colour = np.where(ok[..., None], box_rgb, colour)
        with np.errstate(divide="ignore", invalid="ignore"):
            tp = -origin[..., 1] / dirs[..., 1]
        ok = (tp > 1e-4) & (tp < t)
        t = np.where(ok, tp, t)
        p = origin + tp[..., None] * dirs
        check = (np.floor(p[..., 0] * 2) + np.floor(p[..., 2] * 2)) % 2
        table = np.where(check[..., None] > 0, [0.55, 0.4, 0.3], [0.75, 0.62, 0.5])
        normal = np.where(ok[..., None], [0.0, 1.0, 0.0], normal)
        colour = np.where(ok[..., None], table, colour)
        return t, normal, colour

    origin = np.broadcast_to(eye, d.shape)
    t, normal, colour = hit(origin, d)
    p = origin + np.where(np.isfinite(t), t, 0)[..., None] * d
    to_light = light - p
    to_light /= np.linalg.norm(to_light, axis=-1, keepdims=True)
    ts, _, _ = hit(p + normal * 1e-3, to_light)
    lit = ~np.isfinite(ts)
    diffuse = np.clip(np.sum(normal * to_light, -1), 0, 1) * lit
    half = to_light - d
    half /= np.linalg.norm(half, axis=-1, keepdims=True)
    spec = np.clip(np.sum(normal * half, -1), 0, 1) ** 40 * lit
    shade = colour * (0.25 + 0.75 * diffuse[..., None]) + 0.5 * spec[..., None]
    wall = (0.82 - 0.3 * yy / height)[..., None] * np.array([0.9, 0.88, 0.95])
    return to_image(np.where(np.isfinite(t)[..., None], shade, wall))


def valley(rng: np.random.Generator, width: int = SIZE, height: int = 220) -> Image.Image:
    """Landscape: fractal mountains in aerial perspective over a lake, under a sky with clouds."""
    yy, xx = np.mgrid[0:height, 0:width]
    sky = (
        np.array([0.45, 0.65, 0.92]) * (1 - yy / height * 0.5)[..., None]
        + np.array([0.3, 0.25, 0.1]) * (yy / height)[..., None]
    )
    clouds = (
        np.clip(fbm((height, width), rng, 2.2) * 2 - 1.0, 0, 1)[..., None]
        * (yy < height * 0.4)[..., None]
    )
    image = sky * (1 - clouds) + clouds * 0.97
    for k, (base, rough, rgb) in enumerate(
        [
            (0.38, 45, (0.55, 0.6, 0.72)),
            (0.48, 35, (0.35, 0.45, 0.4)),
            (0.6, 28, (0.25, 0.38, 0.2)),
        ]
    ):
        ridge = base * height - rough * (fbm((1, width), rng, 2.2 + 0.2 * k)[0] - 0.5) * 2
        land = yy >= ridge[None, :]
        shade = (0.8 + 0.4 * fbm((height, width), rng, 1.8))[..., None]
        snow = (yy < ridge[None, :] + 8) & (k == 0)
        colour = np.where(snow[..., None], 0.93, np.array(rgb) * shade)
        image = np.where(land[..., None], colour, image)
    lake = yy > height * 0.75
    mirror = image[np.clip(2 * int(height * 0.75) - yy, 0, height - 1), xx]
    ripple = 0.85 + 0.1 * np.sin(yy * 1.3 + 3 * fbm((height, width), rng, 2.0))
    water = mirror * ripple[..., None] * np.array([0.8, 0.9, 1.0])
    return to_image(np.where(lake[..., None], water, image))


def night_street(rng: np.random.Generator, width: int = SIZE, height: int = 240) -> Image.Image:
    """Night scene: a skyline with lit windows, street lamps with halos, a moon, a dark sky."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.array([0.02, 0.03, 0.09]) + np.array([0.06, 0.05, 0.1]) * (yy / height)[..., None]
    moon = np.hypot(yy - 40, xx - 250) < 16
    image = np.where(moon[..., None], [0.95, 0.93, 0.8], image)
    x = 0
    while x < width:
        w, top = int(rng.integers(25, 60)), int(rng.integers(50, 150))
        tone = rng.uniform(0.05, 0.12)
        block = (xx >= x) & (xx < x + w) & (yy >= top)
        image = np.where(block[..., None], tone, image)
        lit = rng.random((height // 10 + 1, w // 8 + 1)) < 0.35
        win = (
            block
            & ((yy - top) % 10 > 4)
            & ((xx - x) % 8 > 3)
            & lit[(yy - top) // 10, np.clip(xx - x, 0, w - 1) // 8]
        )
        image = np.where(win[..., None], [0.95, 0.8, 0.4], image)
        x += w + int(rng.integers(0, 6))
    road = yy > height * 0.86
    image = np.where(road[..., None], [0.08, 0.08, 0.09], image)
    glow = np.zeros((height, width))
    for lx in range(20, width, 70):
        glow += np.exp(-((yy - 170) ** 2 + (xx - lx) ** 2) / (2 * 12.0**2))
        image = np.where((((xx - lx) ** 2 < 2) & (yy > 170))[..., None], 0.2, image)
    return to_image(image + glow[..., None] * np.array([1.0, 0.75, 0.35]))


PROCEDURAL = {
    "styles/bricks.jpg": bricks,
    "styles/pebbles.jpg": pebbles,
    "styles/hatching.jpg": hatching,
    "styles/contours.jpg": contours,
    "styles/stars.jpg": stars,
    "styles/impasto.jpg": impasto,
    "styles/stained-glass.jpg": stained_glass,
    "styles/watercolour.jpg": watercolour,
    "content/still-life.jpg": still_life,
    "content/valley.jpg": valley,
    "content/night-street.jpg": night_street,
}


def cut_public_domain(source: Path) -> None:
    """The three pictures cut from public-domain files (LICENSES.md names them)."""
    hopper = Image.open(source / "grace_hopper.jpg").convert("RGB")
    hopper.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
    hopper.save(HERE / "content/hopper.jpg", quality=90)
    earth = Image.open(source / "earth.jpg").convert("RGB")
    earth.crop((1100, 250, 1420, 490)).save(HERE / "styles/satellite.jpg", quality=90)
    night = Image.open(source / "night.jpg").convert("RGB")
    night.crop((930, 150, 1250, 390)).save(HERE / "styles/city-lights.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--from", dest="source", type=Path, help="folder with the public-domain files"
    )
    args = parser.parse_args()
    for folder in ("styles", "content"):
        (HERE / folder).mkdir(exist_ok=True)
    for i, (name, make) in enumerate(PROCEDURAL.items()):
        make(np.random.default_rng(1000 + i)).save(HERE / name, quality=90)
        print(name)
    if args.source:
        cut_public_domain(args.source)


if __name__ == "__main__":
    main()
