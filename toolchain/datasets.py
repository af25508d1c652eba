"""Data sets for the toolchain: the glyph set, sklearn's bundled digits, image folders.

All images come back as uint8 NHWC arrays, the form the daemon receives frames in.
Nothing is downloaded: glyphs are rendered, digits ship inside scikit-learn, and an
image folder is the user's own (one sub-directory per class).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adaptinf.toolchain.glyphs import make_glyphs

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp"}


@dataclass(frozen=True)
class ImageData:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]


def glyphs(n: int, seed: int, size: int = 32) -> ImageData:
    g = make_glyphs(n, seed=seed, size=size)
    return ImageData(g.images, g.labels, g.classes)


def glyph_bundle_splits(data: dict, name: str = "bundle") -> tuple[ImageData, ImageData, ImageData]:
    """(train, val, test) of a glyph bundle (`adaptinf build zoo`), regenerated from its
    manifest's data section (n_train, n_val, n_test, seed; size, 32 unless given)."""
    try:
        n_train, n_val, n_test, seed = (int(data[k]) for k in ("n_train", "n_val", "n_test", "seed"))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{name}: its data section does not say how its glyph splits were made "
                         "(n_train, n_val, n_test, seed)") from None
    g = glyphs(n_train + n_val + n_test, seed, int(data.get("size", 32)))
    cuts = (0, n_train, n_train + n_val, None)
    train, val, test = (ImageData(g.images[a:b], g.labels[a:b], g.classes) for a, b in zip(cuts, cuts[1:]))
    return train, val, test


def glyph_bundle_test_split(bundle) -> ImageData:
    """The held-out test split a glyph bundle's accuracies were measured on."""
    return glyph_bundle_splits(bundle.data, f"bundle {bundle.name!r}")[2]


def digits_features() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8x8 digits as (N, 64) float32 in [0, 1] and labels: for FC nets and the MCU."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


def glyph_grey_features(n: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Glyphs as (N, size*size) float32 grey levels in [0, 1] and labels: 1024 features at 32x32,
    the MCU firmware's largest input (FC_MAX_INPUT)."""
    g = glyphs(n, seed, size)
    grey = g.images.astype(np.float32).mean(axis=3) / 255.0
    return grey.reshape(n, -1), g.labels.astype(np.int64)


def digits_images(size: int = 32) -> ImageData:
    """sklearn's digits as RGB images upscaled to size x size (nearest), for the CNN path."""
    x, y = digits_features()
    grey = (x.reshape(-1, 8, 8) * 255).astype(np.uint8)
    scale = size // 8
    big = grey.repeat(scale, axis=1).repeat(scale, axis=2)
    return ImageData(np.repeat(big[..., None], 3, axis=3), y, tuple(str(i) for i in range(10)))


def image_folder(root: Path | str, size: tuple[int, int]) -> ImageData:
    """root/<class>/<image>: every image converted to RGB and resized to (H, W)."""
    from PIL import Image

    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root}: expected one sub-directory per class, found none")
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(path) as im:
                    images.append(np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)))
                labels.append(label)
    if not images:
        raise ValueError(f"{root}: no images with suffixes {sorted(IMAGE_SUFFIXES)}")
    return ImageData(np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int64), tuple(classes))


def split_train_val(data: ImageData, n_val: int, seed: int) -> tuple[ImageData, ImageData]:
    order = np.random.default_rng(seed).permutation(len(data.labels))
    val, train = order[:n_val], order[n_val:]
    pick = lambda idx: ImageData(data.images[idx], data.labels[idx], data.classes)  # noqa: E731
    return pick(train), pick(val)
