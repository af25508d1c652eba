import numpy as np
import pytest

from adaptinf.toolchain.glyphs import CLASSES, make_glyphs, render_glyph


def test_sample_i_is_the_same_whatever_n():
    a, b = make_glyphs(5, seed=3), make_glyphs(12, seed=3)
    assert np.array_equal(a.images, b.images[:5]) and np.array_equal(a.labels, b.labels[:5])


def test_other_seed_gives_other_images():
    assert not np.array_equal(make_glyphs(4, seed=1).images, make_glyphs(4, seed=2).images)


def test_shape_dtype_labels_and_difficulty_range():
    g = make_glyphs(200, seed=0, difficulty=(0.2, 0.6))
    assert g.images.shape == (200, 32, 32, 3) and g.images.dtype == np.uint8
    assert set(np.unique(g.labels)) <= set(range(len(CLASSES)))
    assert len(np.unique(g.labels)) > len(CLASSES) // 2
    assert g.difficulty.min() >= 0.2 and g.difficulty.max() <= 0.6


def test_hard_samples_are_noisier_than_easy_ones():
    """High-frequency energy (pixel-to-pixel differences) grows with difficulty: noise and clutter."""
    def roughness(images):
        x = images.astype(np.float32)
        return np.abs(np.diff(x, axis=1)).mean()

    easy = make_glyphs(64, seed=7, difficulty=(0.0, 0.05)).images
    hard = make_glyphs(64, seed=7, difficulty=(0.95, 1.0)).images
    assert roughness(hard) > 1.5 * roughness(easy)


def test_bad_difficulty_is_refused():
    with pytest.raises(ValueError):
        render_glyph("A", 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError):
        make_glyphs(2, difficulty=(0.8, 0.2))


def test_grey_features_are_the_mcus_largest_input():
    from adaptinf.toolchain.datasets import glyph_grey_features, glyphs

    x, y = glyph_grey_features(20, seed=3)
    assert x.shape == (20, 1024) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    g = glyphs(20, 3)
    np.testing.assert_allclose(x[5].reshape(32, 32), g.images[5].mean(axis=2) / 255.0, rtol=1e-6)
    assert list(y) == list(g.labels)
