"""Procedural glyph images: rendered digits and letters with controllable difficulty.

Every sample is a size x size x 3 uint8 image of one glyph (32 by default; the 224
demo bundle renders the same scenes at 224), rendered with Pillow's bundled
scalable font (nothing is downloaded), then disturbed by five knobs that all scale
with the sample's difficulty d in [0, 1]:

- rotation   up to +-ROTATION_DEG * d
- scale      glyph height shrinks by up to SCALE_RANGE * d
- noise      additive Gaussian noise, sigma up to NOISE_SIGMA * d (of full range)
- occlusion  with probability d, a rectangle of background colour covering up to
             OCCLUSION_FRACTION * d of each side
- clutter    round(CLUTTER_LINES * d) random strokes in random colours

Foreground/background contrast also falls with d, so "easy" and "hard" inputs really
exist, and each sample carries its difficulty label. Sample i of seed s is the same
image whatever n is: each sample draws from its own generator seeded by (s, i).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CLASSES = tuple("0123456789ACFHKX")
IMAGE_SIZE = 32
_SUPERSAMPLE = 3  # render at 3x and downsample: anti-aliased edges at 32x32

ROTATION_DEG = 40.0
SCALE_RANGE = 0.45
NOISE_SIGMA = 0.10
OCCLUSION_FRACTION = 0.45
CLUTTER_LINES = 6
MIN_CONTRAST = 0.4


@dataclass(frozen=True)
class GlyphSet:
    """Images (N, size, size, 3) uint8 NHWC, labels (N,) int64, difficulty (N,) float32."""

    images: np.ndarray
    labels: np.ndarray
    difficulty: np.ndarray
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return len(self.labels)


@lru_cache(maxsize=4)
def _font(size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size_px)


def render_glyph(char: str, difficulty: float, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """Render one glyph at the given difficulty; returns (size, size, 3) uint8."""
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    d = difficulty
    # small frames are drawn larger and box-filtered down for anti-aliased edges; large ones
    # are drawn at size (Pillow anti-aliases text itself)
    big = size * _SUPERSAMPLE if size < 96 else size

    contrast = 1.0 - (1.0 - MIN_CONTRAST) * d * rng.uniform(0.5, 1.0)
    background = rng.uniform(0.0, 1.0 - contrast, size=3)
    foreground = background + contrast * rng.choice([-1.0, 1.0], size=3).clip(0, 1)
    if rng.random() < 0.5:  # light glyph on dark, or dark on light
        background, foreground = foreground, background
    bg = tuple(int(255 * c) for c in background)
    fg = tuple(int(255 * c) for c in foreground)

    # The glyph on its own transparent layer, so rotation does not drag in corners.
    layer = Image.new("L", (big, big), 0)
    height = int(big * 0.78 * (1.0 - SCALE_RANGE * d * rng.random()))
    font = _font(max(8, height))
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
    w, h = right - left, bottom - top
    slack_x, slack_y = max(0, big - w), max(0, big - h)
    jitter = 0.25 + 0.75 * d  # harder samples wander further from the centre
    x = slack_x / 2 + rng.uniform(-1, 1) * jitter * slack_x / 2 - left
    y = slack_y / 2 + rng.uniform(-1, 1) * jitter * slack_y / 2 - top
    draw.text((x, y), char, fill=255, font=font)
    angle = rng.uniform(-1, 1) * ROTATION_DEG * d
    layer = layer.rotate(angle, resample=Image.BICUBIC)

    canvas = Image.new("RGB", (big, big), bg)
    canvas.paste(Image.new("RGB", (big, big), fg), mask=layer)
    cdraw = ImageDraw.Draw(canvas)
    for _ in range(int(round(CLUTTER_LINES * d * rng.random()))):
        p = rng.uniform(0, big, size=4)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        cdraw.line([(p[0], p[1]), (p[2], p[3])], fill=colour, width=int(rng.integers(2, 5)))
    if rng.random() < d:
        ow, oh = (rng.uniform(0.15, 1.0, size=2) * OCCLUSION_FRACTION * d * big).astype(int)
        ox, oy = rng.integers(0, big - max(ow, 1), size=2) if ow < big else (0, 0)
        cdraw.rectangle([int(ox), int(oy), int(ox + ow), int(oy + oh)], fill=bg)

    small = canvas.resize((size, size), resample=Image.BOX) if big != size else canvas
    image = np.asarray(small, dtype=np.float32) / 255.0
    image += rng.normal(0.0, NOISE_SIGMA * d, size=image.shape)
    return (image.clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_glyphs(
    n: int,
    seed: int = 0,
    difficulty: tuple[float, float] = (0.0, 1.0),
    classes: tuple[str, ...] = CLASSES,
    size: int = IMAGE_SIZE,
) -> GlyphSet:
    """n samples, balanced over classes, difficulty uniform in the given range, size x size."""
    lo, hi = difficulty
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"difficulty range must satisfy 0 <= lo <= hi <= 1, got {difficulty}")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    levels = np.empty(n, dtype=np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        label = int(rng.integers(len(classes)))
        level = float(rng.uniform(lo, hi))
        images[i] = render_glyph(classes[label], level, rng, size)
        labels[i] = label
        levels[i] = level
    return GlyphSet(images, labels, levels, tuple(classes))
