"""Drawing a synthetic garment as a small RGB picture (`render_garment`).

The garment's colour, pattern, sleeves and length show; position, scale, rotation, background
tint, pattern phase and pixel noise vary with the random generator passed in.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from shared.data.garments import PALETTE, RGB, Garment, luma

Point = tuple[float, float]
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class _Nuisance:
    scale: float
    dx: float
    dy: float
    angle: float
    background: RGB
    phase: tuple[int, int]


@dataclass(frozen=True)
class _Shapes:
    polygons: list[list[Point]]
    cutouts: list[tuple[Point, Point]]  # ellipses as (top-left, bottom-right)
    collar: list[list[Point]]
    buttons: list[Point]  # centres of small round buttons


def render_garment(garment: Garment, rng: np.random.Generator, *, size: int = 96) -> Image.Image:
    """Draws `garment` as a `size` x `size` RGB picture.

    Nuisance variation (position, scale, rotation, background tint, pattern phase, pixel noise)
    comes from `rng`; the same rng state gives the same pixels. The garment always covers the
    central 12% x 12% of the picture, and pattern marks and buttons cover well under half
    of it, so from 64 px up the patch's median is nearest the garment's PALETTE colour.
    """
    nuisance = _draw_nuisance(rng, size)
    canvas = _draw_supersampled(garment, nuisance, size * _SUPERSAMPLE)
    # Nearest-neighbour rotation at twice the size, then a box reduction: antialiased edges
    # without blurring the pattern into the garment's colour.
    canvas = canvas.rotate(
        nuisance.angle, resample=Image.Resampling.NEAREST, fillcolor=nuisance.background
    )
    return _add_noise(canvas.reduce(_SUPERSAMPLE), rng, amplitude=6)


def _draw_nuisance(rng: np.random.Generator, size: int) -> _Nuisance:
    period = _pattern_period(size * _SUPERSAMPLE)
    background = _rgb(rng.integers(215, 256, size=3))
    return _Nuisance(
        scale=float(rng.uniform(0.85, 1.0)),
        dx=float(rng.uniform(-0.03, 0.03)),
        dy=float(rng.uniform(-0.03, 0.03)),
        angle=float(rng.uniform(-6.0, 6.0)),
        background=background,
        phase=(int(rng.integers(period)), int(rng.integers(period))),
    )


def _draw_supersampled(garment: Garment, nuisance: _Nuisance, side: int) -> Image.Image:
    shapes = _shapes(garment)

    def px(point: Point) -> Point:
        x = ((point[0] - 0.5) * nuisance.scale + 0.5 + nuisance.dx) * side
        y = ((point[1] - 0.5) * nuisance.scale + 0.5 + nuisance.dy) * side
        return (x, y)

    polygons = [[px(p) for p in polygon] for polygon in shapes.polygons]
    cutouts = [(px(top_left), px(bottom_right)) for top_left, bottom_right in shapes.cutouts]
    colour = PALETTE[garment.colour]
    edge = _shade(colour, 0.55)
    box = (0, 0, side, side)
    canvas = Image.new("RGB", (side, side), nuisance.background)
    border = max(_SUPERSAMPLE, round(side / 48))  # 2 px at 96 px, 1 px at 48 px and below
    canvas.paste(edge, box, _silhouette(polygons, cutouts, side=side, border=border))
    mask = _silhouette(polygons, cutouts, side=side, border=0)
    canvas.paste(colour, box, mask)
    if garment.pattern != "solid":
        marks = _pattern_marks(garment.pattern, side, nuisance.phase)
        canvas.paste(_contrast(colour), box, ImageChops.multiply(mask, marks))

    details = ImageDraw.Draw(canvas)
    for polygon in shapes.collar:
        details.polygon([px(p) for p in polygon], fill=colour, outline=edge, width=_SUPERSAMPLE)
    radius = max(1.0, side * 0.012 * nuisance.scale)
    for x, y in (px(p) for p in shapes.buttons):
        details.ellipse([(x - radius, y - radius), (x + radius, y + radius)], fill=edge)
    return canvas


def _silhouette(
    polygons: list[list[Point]], cutouts: list[tuple[Point, Point]], *, side: int, border: int
) -> Image.Image:
    """The garment's mask ("L"), grown by `border` pixels all round when border > 0."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    for polygon in polygons:
        draw.polygon(polygon, fill=255)
        if border:
            draw.line([*polygon, polygon[0]], fill=255, width=2 * border, joint="curve")
    for (x0, y0), (x1, y1) in cutouts:
        inset = min(border, (x1 - x0) / 3, (y1 - y0) / 3)
        draw.ellipse([(x0 + inset, y0 + inset), (x1 - inset, y1 - inset)], fill=0)
    return mask


def _pattern_period(side: int) -> int:
    return max(16, round(side * 0.12))


def _pattern_marks(pattern: str, side: int, phase: tuple[int, int]) -> Image.Image:
    """Where the pattern's marks are (255) on a side x side canvas, shifted by `phase`.

    Marks cover at most a quarter of the area, so the garment's median colour is its colour.
    """
    tile = _pattern_tile(pattern, side)
    return tile.crop((phase[1], phase[0], phase[1] + side, phase[0] + side))


@functools.lru_cache(maxsize=16)
def _pattern_tile(pattern: str, side: int) -> Image.Image:
    period = _pattern_period(side)
    yy, xx = np.mgrid[0 : side + period, 0 : side + period] % period
    if pattern == "stripes":
        marks = yy < period / 4
    elif pattern == "dots":
        marks = (yy - period / 2) ** 2 + (xx - period / 2) ** 2 < (period / 5) ** 2
    elif pattern == "checks":
        marks = (yy < period / 8) | (xx < period / 8)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return Image.fromarray(marks.astype(np.uint8) * 255, "L")


def _contrast(colour: RGB) -> RGB:
    if luma(colour) < 110:
        return _rgb(c + (255 - c) * 0.45 for c in colour)
    return _shade(colour, 0.6)


def _shade(colour: RGB, factor: float) -> RGB:
    return _rgb(c * factor for c in colour)


def _rgb(channels: Iterable[float]) -> RGB:
    """Three channel values as an RGB triple of ints (truncated)."""
    r, g, b = (int(c) for c in channels)
    return r, g, b


def _add_noise(image: Image.Image, rng: np.random.Generator, *, amplitude: int) -> Image.Image:
    pixels = np.asarray(image, dtype=np.int16)
    noise = rng.integers(-amplitude, amplitude + 1, size=pixels.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), "RGB")


def _mirror(polygon: list[Point]) -> list[Point]:
    return [(1.0 - x, y) for x, y in reversed(polygon)]


def _with_mirror(polygons: list[list[Point]]) -> list[list[Point]]:
    return polygons + [_mirror(p) for p in polygons]


def _shapes(garment: Garment) -> _Shapes:
    builders = {"dress": _dress, "shirt": _shirt, "toptee": _toptee}
    return builders[garment.category](garment)


def _dress(garment: Garment) -> _Shapes:
    bodice = [(0.39, 0.15), (0.61, 0.15), (0.59, 0.40), (0.41, 0.40)]
    hem_y, hem_x = (0.92, 0.22) if garment.length == "long" else (0.68, 0.28)
    skirt = [(0.41, 0.40), (0.59, 0.40), (1.0 - hem_x, hem_y), (hem_x, hem_y)]
    sleeves = {
        "none": [],
        "short": [[(0.40, 0.15), (0.33, 0.18), (0.31, 0.27), (0.405, 0.26)]],
        "long": [[(0.40, 0.15), (0.34, 0.17), (0.27, 0.52), (0.32, 0.53), (0.41, 0.26)]],
    }[garment.sleeve]
    neckline = ((0.44, 0.11), (0.56, 0.19))
    return _Shapes([bodice, skirt, *_with_mirror(sleeves)], [neckline], [], [])


def _shirt(garment: Garment) -> _Shapes:
    torso = [(0.34, 0.19), (0.44, 0.15), (0.56, 0.15), (0.66, 0.19), (0.66, 0.84), (0.34, 0.84)]
    sleeves = {
        "short": [[(0.34, 0.19), (0.25, 0.26), (0.23, 0.37), (0.34, 0.36)]],
        "long": [[(0.34, 0.19), (0.27, 0.23), (0.20, 0.72), (0.27, 0.73), (0.34, 0.38)]],
    }[garment.sleeve]
    collar = _with_mirror([[(0.44, 0.15), (0.50, 0.23), (0.42, 0.21)]])
    buttons = [(0.50, y) for y in (0.32, 0.47, 0.62, 0.77)]
    return _Shapes([torso, *_with_mirror(sleeves)], [], collar, buttons)


def _toptee(garment: Garment) -> _Shapes:
    if garment.sleeve == "none":
        tank = [(0.39, 0.15), (0.44, 0.15), (0.46, 0.22), (0.54, 0.22), (0.56, 0.15)]
        tank += [(0.61, 0.15), (0.63, 0.32), (0.65, 0.80), (0.35, 0.80), (0.37, 0.32)]
        return _Shapes([tank], [], [], [])
    torso = [(0.36, 0.20), (0.44, 0.17), (0.56, 0.17), (0.64, 0.20), (0.65, 0.80), (0.35, 0.80)]
    sleeves = [[(0.36, 0.20), (0.29, 0.25), (0.27, 0.33), (0.355, 0.32)]]
    neckline = ((0.435, 0.135), (0.565, 0.225))
    return _Shapes([torso, *_with_mirror(sleeves)], [neckline], [], [])


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------
