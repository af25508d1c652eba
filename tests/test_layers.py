"""The layering contract in pyproject.toml ([tool.importlinter]), checked by import-linter.

import-linter builds its graph from the package on disk; this repository maps `adaptinf`
from several top-level directories, so the check runs on a copy installed into a
temporary directory (no dependencies, no build isolation: a second or two)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("import-linter is not installed (it is in the test extra)")
    target = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO)], check=True, capture_output=True)
    return target


def lint(installed, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache", str(config)],
                          capture_output=True, text=True, cwd=installed,
                          env=dict(os.environ, PYTHONPATH=str(installed)))


def test_no_import_runs_back_up_the_layers(installed):
    result = lint(installed, REPO / "pyproject.toml")
    assert result.returncode == 0 and "KEPT" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_contract_catches_an_arrow_back_up(installed, tmp_path):
    """The check can fail: the cloud's wire format importing the daemon breaks it."""
    protocol = installed / "adaptinf" / "cloud" / "protocol.py"
    original = protocol.read_text()
    protocol.write_text(original + "\nimport adaptinf.daemon.config  # an arrow back up\n")
    try:
        result = lint(installed, REPO / "pyproject.toml")
    finally:
        protocol.write_text(original)
    assert result.returncode != 0 and "adaptinf.cloud.protocol -> adaptinf.daemon.config" in result.stdout
