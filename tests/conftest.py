"""Shared fixtures: the committed demo bundle, and a cloud worker + daemon on loopback."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_BUNDLE = REPO / "bundles" / "glyphnet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def bundle():
    from adaptinf.bundle import load_bundle

    return load_bundle(DEMO_BUNDLE)


@pytest.fixture(scope="session")
def glyph_frames():
    from adaptinf.toolchain.glyphs import make_glyphs

    return make_glyphs(64, seed=4242)


@pytest.fixture
def tmp_short():
    """A short temp dir: ipc:// paths must fit in sun_path (108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="ai-") as d:
        yield Path(d)
