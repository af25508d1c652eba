"""The C client (clients/c): built with make, its own tests run against a real adaptinfd, and
the example built from docs/c-client.md exactly as the page says, against an installed copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import REPO, serve_bundle

SOURCE = REPO / "clients" / "c"
BUNDLE = REPO / "bundles" / "glyphnet"


def _missing() -> str | None:
    for tool in ("cc", "make", "pkg-config"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs the C client's build tools)"
    if subprocess.run(["pkg-config", "--exists", "libzmq", "msgpack"]).returncode != 0:
        return "libzmq3-dev and libmsgpack-dev are not installed (scripts/setup.sh installs them)"
    return None


# CI installs them (scripts/setup.sh): there this never skips
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    build = tmp_path_factory.mktemp("cbuild")
    prefix = tmp_path_factory.mktemp("prefix")
    done = subprocess.run(["make", "-C", str(SOURCE), f"BUILD={build}", f"PREFIX={prefix}", "install"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return build, prefix


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    endpoint, service = serve_bundle(tmp_path_factory, BUNDLE, "c")
    yield endpoint
    service.stop()


def test_the_c_clients_own_tests_pass_against_adaptinfd(built, daemon, glyph_frames, tmp_path):
    build, _ = built
    frame = glyph_frames.images[5]
    (tmp_path / "frame.bin").write_bytes(np.ascontiguousarray(frame).tobytes())
    done = subprocess.run([str(build / "test_client"), daemon, str(tmp_path / "frame.bin"), "32", "32"],
                          capture_output=True, text=True, timeout=120)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not ok" not in done.stdout and re.search(r"^\d+ passed, 0 failed$", done.stdout, re.M)


def test_the_documented_example_builds_from_the_page_and_answers(built, daemon, tmp_path):
    _, prefix = built
    page = (REPO / "docs" / "c-client.md").read_text()
    example = re.search(r"```c\n(.*?)```", page, re.S).group(1)
    assert example == (SOURCE / "examples" / "classify.c").read_text()      # the page cannot drift
    (tmp_path / "classify.c").write_text(example)
    command = re.search(r"^\s*\*\s+(cc classify\.c .*)$", example, re.M).group(1)
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"), LD_LIBRARY_PATH=str(prefix / "lib"))
    built_example = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert built_example.returncode == 0, built_example.stderr
    h, w = 90, 120                                   # a P6 picture of another size than the model's
    pixels = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    (tmp_path / "photo.ppm").write_bytes(f"P6\n{w} {h}\n255\n".encode() + pixels.tobytes())
    done = subprocess.run(["./classify", "photo.ppm", daemon], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.match(r"^\S+ \(\d+\.\d%\) on \S+, \d+\.\d ms, \d+\.\d mJ$", done.stdout.strip()), done.stdout
    bad = subprocess.run(["./classify", "classify.c", daemon], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "not a binary 8-bit PPM" in bad.stderr
